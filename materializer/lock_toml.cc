// Field readers shared by the TOML lock parsers (lock_pylock.cc, lock_uv.cc, lock_poetry.cc).
// toml++ lookups never throw; these add the type checks and the "file:line: field" messages.
#include "materializer/lock_toml_internal.h"

namespace mat::lock_internal {

int toml_line(const toml::node& node) {
  const toml::source_position& p = node.source().begin;
  return p ? static_cast<int>(p.line) : 0;
}

Status TomlField::error(const toml::node* node, int fallback_line, std::string_view key,
                        const std::string& what) const {
  int line = node ? toml_line(*node) : 0;
  if (line == 0) line = fallback_line;
  std::string msg = subject.empty() ? "" : subject + ": ";
  msg += "field '" + prefix + std::string(key) + "' " + what;
  return input_error(path, line, msg);
}

TomlField TomlField::nested(std::string_view key) const {
  return TomlField{path, subject, prefix + std::string(key) + "."};
}

TomlField TomlField::element(std::string_view key, size_t i) const {
  return TomlField{path, subject, prefix + std::string(key) + "[" + std::to_string(i) + "]."};
}

namespace {

const char* type_name(const toml::node& n) {
  switch (n.type()) {
    case toml::node_type::table:
      return "a table";
    case toml::node_type::array:
      return "a list";
    case toml::node_type::string:
      return "a string";
    case toml::node_type::integer:
      return "an integer";
    case toml::node_type::floating_point:
      return "a number";
    case toml::node_type::boolean:
      return "a boolean";
    default:
      return "a date/time";
  }
}

Status wrong_type(const toml::node& n, const TomlField& f, std::string_view key, const char* want) {
  return f.error(&n, 0, key, std::string("must be ") + want + ", not " + type_name(n));
}

}  // namespace

Status toml_string(const toml::table& t, std::string_view key, const TomlField& f, int line,
                   std::string& out, bool required) {
  const toml::node* n = t.get(key);
  if (!n) return required ? f.error(nullptr, line, key, "is missing") : Status::Ok();
  const auto* s = n->as_string();
  if (!s) return wrong_type(*n, f, key, "a string");
  out = s->get();
  return Status::Ok();
}

Status toml_int(const toml::table& t, std::string_view key, const TomlField& f, int line,
                int64_t& out) {
  (void)line;
  const toml::node* n = t.get(key);
  if (!n) return Status::Ok();
  const auto* v = n->as_integer();
  if (!v) return wrong_type(*n, f, key, "an integer");
  if (v->get() < 0) return f.error(n, 0, key, "must not be negative");
  out = v->get();
  return Status::Ok();
}

Status toml_bool(const toml::table& t, std::string_view key, const TomlField& f, int line,
                 bool& out) {
  (void)line;
  const toml::node* n = t.get(key);
  if (!n) return Status::Ok();
  const auto* v = n->as_boolean();
  if (!v) return wrong_type(*n, f, key, "true or false");
  out = v->get();
  return Status::Ok();
}

Status toml_strings(const toml::table& t, std::string_view key, const TomlField& f, int line,
                    std::vector<std::string>& out) {
  const toml::array* a = nullptr;
  MAT_RETURN_IF_ERROR(toml_array(t, key, f, line, a));
  if (!a) return Status::Ok();
  for (size_t i = 0; i < a->size(); ++i) {
    const toml::node& e = *a->get(i);
    const auto* s = e.as_string();
    if (!s) {
      return f.error(&e, line, std::string(key) + "[" + std::to_string(i) + "]",
                     std::string("must be a string, not ") + type_name(e));
    }
    out.push_back(s->get());
  }
  return Status::Ok();
}

Status toml_table(const toml::table& t, std::string_view key, const TomlField& f, int line,
                  const toml::table*& out) {
  (void)line;
  out = nullptr;
  const toml::node* n = t.get(key);
  if (!n) return Status::Ok();
  out = n->as_table();
  return out ? Status::Ok() : wrong_type(*n, f, key, "a table");
}

Status toml_array(const toml::table& t, std::string_view key, const TomlField& f, int line,
                  const toml::array*& out) {
  (void)line;
  out = nullptr;
  const toml::node* n = t.get(key);
  if (!n) return Status::Ok();
  out = n->as_array();
  return out ? Status::Ok() : wrong_type(*n, f, key, "a list");
}

Status parse_prefixed_sha256(const std::string& value, const TomlField& f, const toml::node* node,
                             int line, std::string_view key, std::string& out) {
  size_t colon = value.find(':');
  if (colon == std::string::npos) {
    return f.error(node, line, key, "is not '<algorithm>:<hex>': '" + value + "'");
  }
  if (value.compare(0, colon, "sha256") != 0) return Status::Ok();
  std::optional<std::string> hex = lower_hex(std::string_view(value).substr(colon + 1), 64);
  if (!hex) return f.error(node, line, key, "is not sha256:<64 hex digits>: '" + value + "'");
  out = *hex;
  return Status::Ok();
}

}  // namespace mat::lock_internal
