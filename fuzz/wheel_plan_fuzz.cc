// A wheel's cache tree as the installer plans it (wheel_internal::plan_wheel, then the
// installed RECORD rows): *.dist-info/METADATA, WHEEL, RECORD and entry_points.txt, a
// .data/scripts file (the #!python rewrite), and the wheel's file name from the lock. The input
// holds them as slots (fuzz_util.h: split_slots) in the order of kSlots; the last slot is the
// file name, not a file. The tree is reused across executions.
#include <sys/stat.h>

#include <cstddef>
#include <cstdint>

#include "fuzz/fuzz_util.h"
#include "materializer/lock.h"
#include "materializer/wheel_internal.h"

namespace {

constexpr const char* kSlots[] = {"pkg-1.0.dist-info/METADATA", "pkg-1.0.dist-info/WHEEL",
                                  "pkg-1.0.dist-info/RECORD", "pkg-1.0.dist-info/entry_points.txt",
                                  "pkg-1.0.data/scripts/tool"};
constexpr size_t kFiles = sizeof(kSlots) / sizeof(kSlots[0]);

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mat;
  using namespace mat::wheel_internal;
  static const std::string tree = [] {
    std::string t = fuzz::scratch_dir() + "/wheel";
    for (const char* d :
         {"", "/pkg-1.0.dist-info", "/pkg-1.0.data", "/pkg-1.0.data/scripts", "/pkg"}) {
      ::mkdir((t + d).c_str(), 0755);
    }
    fuzz::write_whole(t + "/pkg/__init__.py", "");
    return t;
  }();
  const std::vector<std::string_view> slots =
      fuzz::split_slots(fuzz::as_text(data, size), kFiles + 1);
  for (size_t i = 0; i < kFiles; ++i) fuzz::put_slot(slots, i, tree + "/" + kSlots[i]);

  PackageRef ref;
  ref.kind = PackageKind::kPypi;
  ref.file_name = slots.size() > kFiles && slots[kFiles] != fuzz::kAbsent
                      ? std::string(slots[kFiles])
                      : "pkg-1.0-py3-none-any.whl";
  WheelInput in{&ref, tree};
  PlanOptions opts{"3.11", "/opt/env/bin/python3.11"};
  Result<WheelPlan> plan = plan_wheel(in, opts);
  if (!plan.ok()) {
    Code c = plan.status().code();
    MAT_FUZZ_CHECK(c == Code::kCorrupt || c == Code::kNotFound || c == Code::kIo,
                   plan.status().to_string());
  } else {
    MAT_FUZZ_CHECK(plan->generated_begin <= plan->files.size(), plan->label);
    (void)installed_record_rows(*plan, {{"pkg/__pycache__/x.pyc", "", ""}});
  }
  Status st = check_wheel_tree(tree, ref.file_name);
  MAT_FUZZ_CHECK(st.ok() || st.code() == Code::kCorrupt || st.code() == Code::kNotFound ||
                     st.code() == Code::kIo,
                 st.to_string());
  return 0;
}
