// A conda package's metadata as the link stage reads it from a cache tree
// (link_internal::load_package_plan): info/index.json, info/paths.json (simdjson),
// info/link.json (noarch python entry points), and the legacy info/files, has_prefix, no_link
// and no_softlink. The input holds those files as slots (fuzz_util.h: split_slots), in the
// order of kSlots; the tree is reused across executions.
#include <sys/stat.h>

#include <cstddef>
#include <cstdint>

#include "fuzz/fuzz_util.h"
#include "materializer/link_internal.h"

namespace {

constexpr const char* kSlots[] = {"index.json", "paths.json", "link.json",  "files",
                                  "has_prefix", "no_link",    "no_softlink"};
constexpr size_t kSlotCount = sizeof(kSlots) / sizeof(kSlots[0]);

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mat;
  using namespace mat::link_internal;
  static const std::string tree = [] {
    std::string t = fuzz::scratch_dir() + "/pkg";
    ::mkdir(t.c_str(), 0755);
    ::mkdir((t + "/info").c_str(), 0755);
    ::mkdir((t + "/bin").c_str(), 0755);  // a directory for legacy info/files to name
    return t;
  }();
  const std::vector<std::string_view> slots =
      fuzz::split_slots(fuzz::as_text(data, size), kSlotCount);
  for (size_t i = 0; i < kSlotCount; ++i) fuzz::put_slot(slots, i, tree + "/info/" + kSlots[i]);

  for (const char* python : {"3.11", ""}) {
    PlanContext ctx{"/opt/env", python};
    Result<PackagePlan> plan = load_package_plan(tree, ctx);
    if (!plan.ok()) {
      Code c = plan.status().code();
      MAT_FUZZ_CHECK(
          c == Code::kCorrupt || c == Code::kInvalidInput || c == Code::kNotFound || c == Code::kIo,
          plan.status().to_string());
      continue;
    }
    MAT_FUZZ_CHECK(plan->index.is_object(), plan->label);
    for (const PathEntry& e : plan->paths) {
      // Every path the plan links lies inside the prefix.
      MAT_FUZZ_CHECK(!e.target.empty() && e.target[0] != '/', e.target);
      MAT_FUZZ_CHECK(lexical_normal(e.target) == e.target && !e.target.starts_with(".."), e.target);
    }
  }
  HasPrefixLine hp;
  if (size < 4096) (void)parse_has_prefix_line(std::string(fuzz::as_text(data, size)), &hp);
  return 0;
}
