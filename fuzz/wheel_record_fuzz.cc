// A wheel's RECORD (cache/wheel_record.h): parse_record as pip reads it, and the round trip
// through format_record (csv.writer's quoting): rows without line breaks must come back as
// they were written.
#include <cstddef>
#include <cstdint>

#include "cache/wheel_record.h"
#include "fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mat;
  const std::string_view text = fuzz::as_text(data, size);
  std::vector<cache::RecordRow> rows = cache::parse_record(text);
  // splitlines() runs before the csv reader, so a field holding a line break cannot survive a
  // round trip (in pip either); an all-empty row formats as ",," and comes back.
  std::erase_if(rows, [](const cache::RecordRow& r) {
    return (r.path + r.hash + r.size).find_first_of("\r\n") != std::string::npos;
  });
  const std::string written = cache::format_record(rows);
  const std::vector<cache::RecordRow> again = cache::parse_record(written);
  MAT_FUZZ_CHECK(again == rows, "RECORD round trip changed the rows:\n" + written);
  // "sha256=" + 43 characters of base64 for 32 bytes, or "" for anything but 64 hex digits.
  const std::string h = cache::record_hash_from_hex(text.substr(0, 64));
  MAT_FUZZ_CHECK(h.empty() || h.size() == 7 + 43, h);
  (void)cache::urlsafe_b64_nopad(text);
  return 0;
}
