// The zip layout check (cache/zip_layout.h) on any bytes, both ways the binary reads a zip:
// check_zip_layout on the file (wheels, a .conda from disk: before libzip sees it) and
// ZipStreamReader front to back in blocks of varying size (a .conda while it downloads), then
// check_streamed_layout comparing the two, as extract_conda_stream does once the file is whole.
// Beyond "no crash": every error is kCorrupt, an accepted layout tiles the file as documented
// (entries in offset order from 0, each ending where the next begins, the last where the central
// directory begins; names unique), and a member read in order never yields more or fewer bytes
// than its declared size.
#include <fcntl.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <set>

#include "cache/zip_layout.h"
#include "fuzz/fuzz_util.h"

namespace {

using mat::Code;
using mat::Result;
using mat::cache::ZipEntry;
using mat::cache::ZipLayout;

void check_layout(const ZipLayout& l, int64_t file_size) {
  std::set<std::string> names;
  int64_t at = 0;
  for (const ZipEntry& e : l.entries) {
    MAT_FUZZ_CHECK(e.offset == at, e.name + ": does not begin where the previous entry ended");
    MAT_FUZZ_CHECK(e.offset < e.data_offset && e.data_offset + e.comp_size <= e.end,
                   e.name + ": data outside its entry");
    MAT_FUZZ_CHECK(e.comp_size >= 0 && e.size >= 0, e.name + ": negative size");
    MAT_FUZZ_CHECK(names.insert(e.name).second, e.name + ": listed twice");
    at = e.end;
  }
  MAT_FUZZ_CHECK(at == l.cd_offset, "the entries do not end where the central directory begins");
  MAT_FUZZ_CHECK(l.cd_offset <= file_size, "central directory past the end of the file");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mat;
  const std::string_view input = fuzz::as_text(data, size);
  const std::string path = fuzz::scratch_file("in.zip", input);
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  MAT_FUZZ_CHECK(fd.valid(), path);
  Result<ZipLayout> layout =
      cache::check_zip_layout(fd.get(), static_cast<int64_t>(size), "in.zip");
  if (layout.ok()) {
    check_layout(*layout, static_cast<int64_t>(size));
  } else {
    MAT_FUZZ_CHECK(layout.status().code() == Code::kCorrupt, layout.status().to_string());
  }

  static constexpr size_t kSizes[] = {1, 7, 64, 1000, 4096, 65536};
  size_t pos = 0, turn = size % 6;
  cache::ByteSource next = [&]() -> Result<std::span<const char>> {
    size_t n = std::min(kSizes[turn++ % 6], input.size() - pos);
    std::span<const char> block(input.data() + pos, n);
    pos += n;
    return block;
  };
  cache::ZipStreamReader stream(next, "in.zip");
  constexpr int64_t kMaxOutput = int64_t{64} << 20;  // deflate expands up to 1032x
  int64_t total = 0;
  Status failed;
  while (failed.ok() && total < kMaxOutput) {
    Result<std::optional<ZipEntry>> e = stream.next_entry();
    if (!e.ok()) {
      failed = e.status();
      break;
    }
    if (!e->has_value()) break;  // the central directory
    int64_t got = 0;
    for (;;) {
      Result<std::span<const char>> block = stream.read();
      if (!block.ok()) {
        failed = block.status();
        break;
      }
      if (block->empty()) {
        const ZipEntry& read = stream.seen().back();
        MAT_FUZZ_CHECK(got == read.size, read.name + ": bytes read differ from its size");
        break;
      }
      got += static_cast<int64_t>(block->size());
      total += static_cast<int64_t>(block->size());
      if (total >= kMaxOutput) break;
    }
  }
  if (!failed.ok()) {
    MAT_FUZZ_CHECK(failed.code() == Code::kCorrupt, failed.to_string());
    return 0;
  }
  if (total >= kMaxOutput || !layout.ok()) return 0;
  Status same = cache::check_streamed_layout(stream, *layout, "in.zip");
  MAT_FUZZ_CHECK(same.ok() || same.code() == Code::kCorrupt, same.to_string());
  if (same.ok()) {
    MAT_FUZZ_CHECK(stream.seen().size() == layout->entries.size(), "member counts differ");
    for (size_t i = 0; i < layout->entries.size(); ++i) {
      const ZipEntry& a = stream.seen()[i];
      const ZipEntry& b = layout->entries[i];
      MAT_FUZZ_CHECK(a.name == b.name && a.size == b.size && a.crc == b.crc,
                     a.name + ": read in order differently from the central directory");
    }
  }
  return 0;
}
