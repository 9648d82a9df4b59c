#include "materializer/base/json.h"

namespace mat {

Result<nlohmann::json> parse_json(std::string_view text, const std::string& what,
                                  const DocLimits& limits, Code code, const std::string& hint) {
  MAT_RETURN_IF_ERROR(check_doc_limits(text, DocFormat::kJson, what, limits, code, hint));
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    // e.what() reads "[json.exception.parse_error.101] parse error at line 1, column 2: ...".
    std::string why = e.what();
    if (size_t b = why.find("] "); b != std::string::npos) why.erase(0, b + 2);
    if (why.size() > 200) why = why.substr(0, 200) + "...";
    return Status(code, what + ": not valid JSON (" + why + ")" + (hint.empty() ? "" : "; " + hint));
  }
  return j;
}

std::string dump_json(const nlohmann::json& j, int indent, bool ensure_ascii) {
  return j.dump(indent, ' ', ensure_ascii, nlohmann::json::error_handler_t::replace);
}

}  // namespace mat
