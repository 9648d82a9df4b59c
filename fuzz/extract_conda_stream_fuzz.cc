// A .conda extracted as its bytes arrive (cache/extract.h: extract_conda_stream): the outer zip
// read in order through libarchive's streaming reader, handed out in blocks of varying size as
// a download would, then checked against the central directory of the same bytes on disk.
// The stream may refuse what the file path accepts (the caller falls back to the file), but
// what it accepts must be what the file path gives: the same manifest (issue 11, defect 4:
// one archive, one tree).
#include <cstddef>
#include <cstdint>

#include "fuzz/extract_util.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  mat::fuzz::extract_init();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mat;
  static cache::ExtractScratch scratch;
  const std::string_view input = fuzz::as_text(data, size);
  fuzz::ExtractPaths p = fuzz::prepare_extract(input, "pkg-1.0-0.conda", "stream");
  // Block sizes cycle through a few values, from the input's length, so seeds are cut at
  // different places.
  static constexpr size_t kSizes[] = {1, 3, 64, 1000, 4096, 65536};
  size_t pos = 0, turn = size % 6;
  cache::ByteSource next = [&]() -> Result<std::span<const char>> {
    size_t n = std::min(kSizes[turn++ % 6], input.size() - pos);
    std::span<const char> block(input.data() + pos, n);
    pos += n;
    return block;
  };
  fuzz::capped_fs().reset();
  Result<cache::Manifest> streamed = Internal("not run");
  fuzz::serial_arena().execute([&] {
    streamed = cache::extract_conda_stream(next, p.archive, p.out, fuzz::capped_fs(), scratch);
  });
  fuzz::check_nothing_outside({"stream"});
  fuzz::check_extract_result(streamed, p.out);
  if (!streamed.ok()) return 0;

  const std::string file_out = fuzz::scratch_dir() + "/a/b/file";
  remove_all(file_out).ignore();
  ::mkdir(file_out.c_str(), 0755);
  fuzz::capped_fs().reset();
  Result<cache::Manifest> from_file = Internal("not run");
  fuzz::serial_arena().execute([&] {
    from_file = cache::extract_archive(p.archive, cache::ArchiveFormat::kConda, file_out,
                                       fuzz::capped_fs(), scratch);
  });
  fuzz::check_nothing_outside({"stream", "file"});
  MAT_FUZZ_CHECK(from_file.ok(),
                 "streamed, but the file path says: " + from_file.status().to_string());
  MAT_FUZZ_CHECK(*from_file == *streamed, "the streamed tree differs from the file's");
  remove_all(file_out).ignore();
  return 0;
}
