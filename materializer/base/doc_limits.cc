// Depth scanners for JSON, YAML and TOML. See doc_limits.h for the contract.
#include "materializer/base/doc_limits.h"

#include <algorithm>
#include <vector>

namespace mat {
namespace {

// JSON: brackets outside strings. Exact for well-formed text.
int json_depth(std::string_view s, int stop_after) {
  int depth = 0, max_depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      max_depth = std::max(max_depth, ++depth);
      if (max_depth > stop_after) return max_depth;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return max_depth;
}

bool is_blank(char c) { return c == ' ' || c == '\t'; }

// ---- YAML -------------------------------------------------------------------------------
//
// Block structure from indentation (a stack of the columns of open collections; a sequence
// may sit at its parent key's column, "key:\n- a", and is then one level deeper), compact
// nesting within a line ("- - a", "- key: v"), and flow collections ("[", "{") anywhere, which
// may span lines. Quoted scalars (which may span lines), comments and block scalars ("|", ">")
// are skipped. A quote starts a quoted scalar only where a scalar may start, so "don't" in a
// plain scalar is not one.
class YamlScanner {
 public:
  YamlScanner(std::string_view s, int stop_after) : s_(s), stop_after_(stop_after) {}

  int run() {
    size_t pos = 0;
    while (pos < s_.size() && max_ <= stop_after_) {
      size_t nl = s_.find('\n', pos);
      if (nl == std::string_view::npos) nl = s_.size();
      line(s_.substr(pos, nl - pos));
      pos = nl + 1;
    }
    return max_;
  }

 private:
  struct Level {
    size_t indent;
    bool seq;
  };

  void note(int depth) { max_ = std::max(max_, depth); }

  void line(std::string_view l) {
    if (!l.empty() && l.back() == '\r') l.remove_suffix(1);
    size_t indent = 0;
    while (indent < l.size() && l[indent] == ' ') ++indent;
    if (block_scalar_indent_ >= 0) {
      // Inside a block scalar: lines more indented than its parent (and blank lines) are text.
      if (indent == l.size() || static_cast<int64_t>(indent) > block_scalar_indent_) return;
      block_scalar_indent_ = -1;
    }
    size_t i = indent;
    if (quote_ == 0 && flow_ == 0) {
      while (i < l.size() && is_blank(l[i])) ++i;
      if (i == l.size() || l[i] == '#') return;  // blank or comment line
      if (indent == 0 && (l.starts_with("---") || l.starts_with("...") || l[0] == '%')) {
        stack_.clear();  // a new document (or a directive)
        return;
      }
      open_block(indent, l[i] == '-' && (i + 1 == l.size() || is_blank(l[i + 1])));
    }
    scan_inline(l, i, indent);
  }

  // The block collection a line at column `indent` belongs to.
  void open_block(size_t indent, bool dash) {
    while (!stack_.empty() && stack_.back().indent > indent) stack_.pop_back();
    if (!stack_.empty() && stack_.back().indent == indent) {
      if (dash && !stack_.back().seq) {
        stack_.push_back({indent, true});  // "key:\n- a": the sequence is the key's value
      } else if (!dash && stack_.back().seq) {
        stack_.pop_back();  // the sequence at this column ended; back in its mapping
        if (stack_.empty() || stack_.back().indent < indent) stack_.push_back({indent, false});
      }
    } else {
      stack_.push_back({indent, dash});
    }
    note(static_cast<int>(stack_.size()));
  }

  // The rest of the line: compact nesting, flow brackets, quotes, comments, block scalars.
  void scan_inline(std::string_view l, size_t i, size_t indent) {
    const int base = static_cast<int>(stack_.size());
    int extra = 0;             // compact levels opened on this line ("- - a", "- k: v")
    bool value_start = true;   // where a scalar (and so a quote) may start
    bool after_dash = false;   // this line's content began with "- "
    for (; i < l.size(); ++i) {
      const char c = l[i];
      if (quote_ != 0) {
        if (quote_ == '"' && c == '\\') {
          ++i;
        } else if (c == quote_) {
          if (quote_ == '\'' && i + 1 < l.size() && l[i + 1] == '\'') {
            ++i;  // '' inside a single-quoted scalar
          } else {
            quote_ = 0;
            value_start = false;
          }
        }
        continue;
      }
      if (c == '#' && (i == 0 || is_blank(l[i - 1]))) return;  // comment
      if (is_blank(c)) continue;
      if (flow_ == 0 && c == '-' && value_start && (i + 1 == l.size() || is_blank(l[i + 1]))) {
        if (after_dash || i != first_content(l, indent)) note(base + ++extra);
        after_dash = true;
        continue;
      }
      if (c == '"' || c == '\'') {
        if (value_start) quote_ = c;
        value_start = false;
        continue;
      }
      if (c == '[' || c == '{') {
        ++flow_;
        note(base + extra + flow_);
        value_start = true;
        continue;
      }
      if ((c == ']' || c == '}') && flow_ > 0) {
        --flow_;
        value_start = false;
        continue;
      }
      if (c == ',' && flow_ > 0) {
        value_start = true;
        continue;
      }
      if (c == ':' && (i + 1 == l.size() || is_blank(l[i + 1]) || flow_ > 0)) {
        // "- key: v" opens a mapping inside the sequence item on the same line.
        if (flow_ == 0 && after_dash && !map_in_item_) {
          note(base + ++extra);
          map_in_item_ = true;
        }
        value_start = true;
        continue;
      }
      if (flow_ == 0 && value_start && (c == '|' || c == '>') && block_scalar_header(l, i)) {
        block_scalar_indent_ = static_cast<int64_t>(indent);
        break;
      }
      value_start = false;
    }
    map_in_item_ = false;
  }

  static size_t first_content(std::string_view l, size_t indent) {
    size_t i = indent;
    while (i < l.size() && is_blank(l[i])) ++i;
    return i;
  }

  // "|", ">", with optional chomping/indentation indicators, then only a comment.
  static bool block_scalar_header(std::string_view l, size_t i) {
    for (++i; i < l.size(); ++i) {
      const char c = l[i];
      if (c == '+' || c == '-' || (c >= '1' && c <= '9')) continue;
      if (is_blank(c)) {
        while (i < l.size() && is_blank(l[i])) ++i;
        return i == l.size() || l[i] == '#';
      }
      return false;
    }
    return true;
  }

  std::string_view s_;
  int stop_after_;
  int max_ = 0;
  std::vector<Level> stack_;
  int flow_ = 0;
  char quote_ = 0;  // '"' or '\'' while inside a quoted scalar (may span lines)
  int64_t block_scalar_indent_ = -1;
  bool map_in_item_ = false;
};

// ---- TOML -------------------------------------------------------------------------------
//
// Counted as the JSON equivalent: the root table is 1, each header component and each dotted
// key component a table one deeper ([[x]] an array, then a table), each array and inline table
// one deeper than the table or array holding it. Dots count only in
// keys (headers, and before '=' at the top level or in an inline table), never in values
// (floats, dates, strings). Strings of all four kinds and comments are skipped.
class TomlScanner {
 public:
  TomlScanner(std::string_view s, int stop_after) : s_(s), stop_after_(stop_after) {}

  int run() {
    for (i_ = 0; i_ < s_.size() && max_ <= stop_after_; ++i_) step(s_[i_]);
    return max_;
  }

 private:
  struct Container {
    bool table;  // inline table (keys inside); else array
    int depth;   // depth of the container itself
  };

  void note(int d) { max_ = std::max(max_, d); }
  bool top_level() const { return stack_.empty(); }
  int key_base() const { return top_level() ? table_depth_ : stack_.back().depth; }
  bool in_key() const { return top_level() ? top_key_ : (stack_.back().table && key_pos_); }

  void step(char c) {
    if (c == '"' || c == '\'') return skip_string(c);
    if (c == '#') {
      while (i_ < s_.size() && s_[i_] != '\n') ++i_;
      --i_;  // let the newline be seen
      return;
    }
    if (c == '\n') {
      if (top_level()) {
        top_key_ = true;
        line_start_ = true;
        dots_ = 0;
      }
      return;
    }
    if (is_blank(c) || c == '\r') return;
    const bool at_line_start = line_start_;
    line_start_ = false;
    if (top_level() && top_key_ && at_line_start && c == '[') return header();
    if (in_key()) {
      if (c == '.') {
        ++dots_;
      } else if (c == '=') {
        value_depth_ = key_base() + dots_;
        note(value_depth_);
        dots_ = 0;
        if (top_level()) {
          top_key_ = false;
        } else {
          key_pos_ = false;
        }
      } else if (c == '}' && !top_level()) {
        close();
      }
      return;
    }
    // A value (or the space between values).
    if (c == '[' || c == '{') {
      const int d = (top_level() || stack_.back().table ? value_depth_ : stack_.back().depth) + 1;
      note(d);
      stack_.push_back({c == '{', d});
      key_pos_ = c == '{';
      dots_ = 0;
    } else if (c == ']' || c == '}') {
      close();
    } else if (c == ',' && !top_level() && stack_.back().table) {
      key_pos_ = true;
      dots_ = 0;
    }
  }

  void close() {
    if (stack_.empty()) return;
    stack_.pop_back();
    key_pos_ = false;  // after a nested value, an inline table expects ',' or '}'
  }

  // "[a.b.c]" or "[[a.b]]": sets the depth of the keys that follow.
  void header() {
    const bool array = i_ + 1 < s_.size() && s_[i_ + 1] == '[';
    int dots = 0;
    for (++i_; i_ < s_.size() && s_[i_] != '\n'; ++i_) {
      const char c = s_[i_];
      if (c == '"' || c == '\'') {
        skip_string(c);
      } else if (c == '.') {
        ++dots;
      } else if (c == ']') {
        break;
      }
    }
    while (i_ < s_.size() && s_[i_] != '\n') ++i_;
    --i_;
    table_depth_ = dots + 2 + (array ? 1 : 0);  // the root, each component, the array
    note(table_depth_);
  }

  // Leaves i_ on the closing quote (or the end).
  void skip_string(char q) {
    const bool multi = s_.substr(i_, 3) == std::string_view(q == '"' ? "\"\"\"" : "'''");
    i_ += multi ? 3 : 1;
    for (; i_ < s_.size(); ++i_) {
      const char c = s_[i_];
      if (q == '"' && c == '\\') {
        ++i_;
      } else if (c == q) {
        if (!multi) return;
        if (s_.substr(i_, 3) == std::string_view(q == '"' ? "\"\"\"" : "'''")) {
          // Up to two more quotes may belong to the string ("""a""""").
          while (i_ + 3 < s_.size() && s_[i_ + 3] == q) ++i_;
          i_ += 2;
          return;
        }
      } else if (c == '\n' && !multi) {
        --i_;  // unterminated: the parser reports it
        return;
      }
    }
  }

  std::string_view s_;
  int stop_after_;
  size_t i_ = 0;
  int max_ = 0;
  std::vector<Container> stack_;
  int table_depth_ = 1;     // depth of the table the top-level keys are in (the root: 1)
  bool top_key_ = true;     // top level: before the '=' of this line
  bool line_start_ = true;  // nothing but blanks seen on this line yet
  bool key_pos_ = false;    // innermost inline table: in a key
  int dots_ = 0;            // dots in the key being read
  int value_depth_ = 0;     // depth of the value after the latest '='
};

std::string human(int64_t bytes) {
  if (bytes >= (int64_t{1} << 20) && bytes % (int64_t{1} << 20) == 0) {
    return std::to_string(bytes >> 20) + " MiB";
  }
  return std::to_string(bytes) + " bytes";
}

}  // namespace

const char* doc_format_name(DocFormat f) {
  switch (f) {
    case DocFormat::kJson:
      return "JSON";
    case DocFormat::kYaml:
      return "YAML";
    case DocFormat::kToml:
      return "TOML";
  }
  return "?";
}

int doc_depth(std::string_view text, DocFormat format, int stop_after) {
  switch (format) {
    case DocFormat::kJson:
      return json_depth(text, stop_after);
    case DocFormat::kYaml:
      return YamlScanner(text, stop_after).run();
    case DocFormat::kToml:
      return TomlScanner(text, stop_after).run();
  }
  return 0;
}

Status check_doc_limits(std::string_view text, DocFormat format, const std::string& what,
                        const DocLimits& limits, Code code, const std::string& hint) {
  const std::string tail = hint.empty() ? "" : "; " + hint;
  const char* fmt = doc_format_name(format);
  if (static_cast<int64_t>(text.size()) > limits.max_bytes) {
    return Status(code, what + ": " + fmt + " document of " +
                            std::to_string(text.size()) + " bytes is larger than the limit of " +
                            human(limits.max_bytes) + tail);
  }
  if (doc_depth(text, format, limits.max_depth) > limits.max_depth) {
    return Status(code, what + ": " + fmt + " nested deeper than " +
                            std::to_string(limits.max_depth) + " levels (the limit)" + tail);
  }
  return Status::Ok();
}

}  // namespace mat
