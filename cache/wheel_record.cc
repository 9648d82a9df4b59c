#include "cache/wheel_record.h"

#include "materializer/base/hash.h"

namespace mat::cache {
namespace {

// Python's str.splitlines() for the line breaks RECORD files use in practice.
std::vector<std::string_view> split_lines(std::string_view text) {
  std::vector<std::string_view> lines;
  size_t start = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '\n' && text[i] != '\r') continue;
    lines.push_back(text.substr(start, i - start));
    if (text[i] == '\r' && i + 1 < text.size() && text[i + 1] == '\n') ++i;
    start = i + 1;
  }
  if (start < text.size()) lines.push_back(text.substr(start));
  return lines;
}

// csv.reader (excel dialect) on one line.
std::vector<std::string> split_csv(std::string_view line) {
  std::vector<std::string> fields(1);
  bool quoted = false;
  for (size_t i = 0; i < line.size(); ++i) {
    char c = line[i];
    if (quoted) {
      if (c != '"') {
        fields.back().push_back(c);
      } else if (i + 1 < line.size() && line[i + 1] == '"') {
        fields.back().push_back('"');
        ++i;
      } else {
        quoted = false;
      }
    } else if (c == ',') {
      fields.emplace_back();
    } else if (c == '"' && fields.back().empty()) {
      quoted = true;
    } else {
      fields.back().push_back(c);
    }
  }
  return fields;
}

void append_csv_field(std::string* out, const std::string& f) {
  if (f.find_first_of(",\"\r\n") == std::string::npos) {
    out->append(f);
    return;
  }
  out->push_back('"');
  for (char c : f) {
    if (c == '"') out->push_back('"');
    out->push_back(c);
  }
  out->push_back('"');
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

std::vector<RecordRow> parse_record(std::string_view text) {
  std::vector<RecordRow> rows;
  for (std::string_view line : split_lines(text)) {
    if (line.empty()) continue;
    std::vector<std::string> f = split_csv(line);
    f.resize(3);
    rows.push_back(RecordRow{std::move(f[0]), std::move(f[1]), std::move(f[2])});
  }
  return rows;
}

std::string format_record(const std::vector<RecordRow>& rows) {
  std::string out;
  for (const RecordRow& r : rows) {
    append_csv_field(&out, r.path);
    out.push_back(',');
    append_csv_field(&out, r.hash);
    out.push_back(',');
    append_csv_field(&out, r.size);
    out.append("\r\n");
  }
  return out;
}

std::string urlsafe_b64_nopad(std::string_view bytes) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    uint32_t v = (static_cast<uint8_t>(bytes[i]) << 16) |
                 (static_cast<uint8_t>(bytes[i + 1]) << 8) | static_cast<uint8_t>(bytes[i + 2]);
    for (int s = 18; s >= 0; s -= 6) out.push_back(kAlphabet[(v >> s) & 63]);
  }
  size_t rest = bytes.size() - i;
  if (rest > 0) {
    uint32_t v = static_cast<uint8_t>(bytes[i]) << 16;
    if (rest == 2) v |= static_cast<uint8_t>(bytes[i + 1]) << 8;
    out.push_back(kAlphabet[(v >> 18) & 63]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    if (rest == 2) out.push_back(kAlphabet[(v >> 6) & 63]);
  }
  return out;
}

std::string record_hash_from_hex(std::string_view sha256_hex) {
  if (sha256_hex.size() != 64) return "";
  return record_hash_from_hex("sha256", sha256_hex);
}

std::string record_hash_from_hex(std::string_view algo, std::string_view hex) {
  if (hex.empty() || hex.size() % 2 != 0) return "";
  std::string raw(hex.size() / 2, '\0');
  for (size_t i = 0; i < raw.size(); ++i) {
    int hi = hex_value(hex[2 * i]), lo = hex_value(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return "";
    raw[i] = static_cast<char>((hi << 4) | lo);
  }
  return std::string(algo) + "=" + urlsafe_b64_nopad(raw);
}

std::string record_hash_of(std::string_view data) { return record_hash_from_hex(sha256_hex(data)); }

}  // namespace mat::cache
