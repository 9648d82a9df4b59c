// PEP 508 environment markers: a recursive-descent parser over packaging's token rules
// (packaging/_tokenizer.py, _parser.py), then evaluation against TargetPython::markers.
//
//   marker  := and_expr ('or' and_expr)*
//   and_expr:= atom ('and' atom)*
//   atom    := '(' marker ')' | value op value      (exactly one side a variable)
//   value   := VARIABLE | '...' | "..."             (no escapes inside quotes)
//   op      := === | == | ~= | != | <= | >= | < | > | in | not in
//
// The whole marker is parsed before anything is evaluated, so a syntax error is reported even
// where short-circuiting would have skipped it.
#include <algorithm>
#include <cctype>
#include <memory>
#include <optional>

#include "materializer/pypi.h"
#include "materializer/pypi_internal.h"

namespace mat::pypi {
namespace {

// Variables whose values are PEP 440 versions: compared with specifier semantics when both
// sides parse, as text otherwise (platform_release is often "6.1.0-18-amd64").
bool is_version_variable(const std::string& name) {
  return name == "python_version" || name == "python_full_version" ||
         name == "implementation_version" || name == "platform_release";
}

// Canonical variable for a spelling packaging accepts (legacy dotted aliases included), or ""
// if `word` is not a marker variable.
std::string canonical_variable(std::string_view word) {
  static const char* const kNames[] = {"python_version",
                                       "python_full_version",
                                       "os_name",
                                       "sys_platform",
                                       "platform_release",
                                       "platform_system",
                                       "platform_version",
                                       "platform_machine",
                                       "platform_python_implementation",
                                       "implementation_name",
                                       "implementation_version",
                                       "extra",
                                       "extras",
                                       "dependency_groups"};
  for (const char* n : kNames) {
    if (word == n) return n;
  }
  if (word == "os.name") return "os_name";
  if (word == "sys.platform") return "sys_platform";
  if (word == "platform.version") return "platform_version";
  if (word == "platform.machine") return "platform_machine";
  if (word == "platform.python_implementation" || word == "python_implementation") {
    return "platform_python_implementation";
  }
  return "";
}

struct Operand {
  bool is_variable = false;
  std::string text;  // variable name (canonical) or the string's contents
};

struct Node {
  enum Kind { kCompare, kAnd, kOr } kind = kCompare;
  Operand lhs, rhs;                             // kCompare
  std::string op;                               // kCompare: "==", ..., "in", "not in"
  std::vector<std::unique_ptr<Node>> children;  // kAnd / kOr
};

class Parser {
 public:
  explicit Parser(std::string_view text) : s_(text) {}

  Result<std::unique_ptr<Node>> parse() {
    MAT_ASSIGN_OR_RETURN(auto node, parse_or());
    skip_ws();
    if (pos_ != s_.size()) {
      return error(s_[pos_] == ')' ? "unmatched ')'" : "expected 'and', 'or' or end of marker");
    }
    return node;
  }

 private:
  Status error(const std::string& what) const {
    return InvalidInput("invalid marker '" + std::string(s_) + "': " + what + " at position " +
                        std::to_string(pos_));
  }

  void skip_ws() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t')) ++pos_;
  }

  static bool is_word_char(char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.';
  }

  // The run of identifier characters at pos_ (without consuming it).
  std::string_view peek_word() const {
    size_t end = pos_;
    while (end < s_.size() && is_word_char(s_[end])) ++end;
    return s_.substr(pos_, end - pos_);
  }

  bool accept_word(std::string_view w) {
    skip_ws();
    if (peek_word() != w) return false;
    pos_ += w.size();
    return true;
  }

  Result<std::unique_ptr<Node>> parse_or() {
    MAT_ASSIGN_OR_RETURN(auto first, parse_and());
    if (!peek_bool("or")) return first;
    auto node = std::make_unique<Node>();
    node->kind = Node::kOr;
    node->children.push_back(std::move(first));
    while (accept_word("or")) {
      MAT_ASSIGN_OR_RETURN(auto next, parse_and());
      node->children.push_back(std::move(next));
    }
    return node;
  }

  Result<std::unique_ptr<Node>> parse_and() {
    MAT_ASSIGN_OR_RETURN(auto first, parse_atom());
    if (!peek_bool("and")) return first;
    auto node = std::make_unique<Node>();
    node->kind = Node::kAnd;
    node->children.push_back(std::move(first));
    while (accept_word("and")) {
      MAT_ASSIGN_OR_RETURN(auto next, parse_atom());
      node->children.push_back(std::move(next));
    }
    return node;
  }

  bool peek_bool(std::string_view w) {
    skip_ws();
    return peek_word() == w;
  }

  Result<std::unique_ptr<Node>> parse_atom() {
    skip_ws();
    if (pos_ < s_.size() && s_[pos_] == '(') {
      ++pos_;
      MAT_ASSIGN_OR_RETURN(auto inner, parse_or());
      skip_ws();
      if (pos_ >= s_.size() || s_[pos_] != ')') return error("expected ')'");
      ++pos_;
      return inner;
    }
    auto node = std::make_unique<Node>();
    size_t item_start = pos_;
    MAT_ASSIGN_OR_RETURN(node->lhs, parse_operand());
    MAT_ASSIGN_OR_RETURN(node->op, parse_op());
    MAT_ASSIGN_OR_RETURN(node->rhs, parse_operand());
    if (node->lhs.is_variable == node->rhs.is_variable) {
      pos_ = item_start;
      return error(node->lhs.is_variable
                       ? "comparison of two variables"
                       : "comparison of two strings (one side must be a variable)");
    }
    return node;
  }

  Result<Operand> parse_operand() {
    skip_ws();
    if (pos_ >= s_.size()) return error("expected a variable or a quoted string");
    char q = s_[pos_];
    if (q == '\'' || q == '"') {
      size_t close = s_.find(q, pos_ + 1);
      if (close == std::string_view::npos) return error("unterminated string");
      Operand o{false, std::string(s_.substr(pos_ + 1, close - pos_ - 1))};
      pos_ = close + 1;
      return o;
    }
    std::string_view word = peek_word();
    std::string name = canonical_variable(word);
    if (name.empty()) {
      return error(word.empty() ? "expected a variable or a quoted string"
                                : "unknown variable '" + std::string(word) + "'");
    }
    pos_ += word.size();
    return Operand{true, name};
  }

  Result<std::string> parse_op() {
    skip_ws();
    static const char* const kOps[] = {"===", "==", "~=", "!=", "<=", ">=", "<", ">"};
    for (const char* op : kOps) {
      std::string_view o(op);
      if (s_.substr(pos_, o.size()) == o) {
        pos_ += o.size();
        return std::string(op);
      }
    }
    if (accept_word("in")) return std::string("in");
    size_t save = pos_;
    if (accept_word("not")) {
      // "not" and "in" must be separate words ("notin" is not an operator).
      if (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t') && accept_word("in")) {
        return std::string("not in");
      }
      pos_ = save;
    }
    return error("expected an operator (<, <=, ==, !=, >=, >, ~=, ===, in, not in)");
  }

  std::string_view s_;
  size_t pos_ = 0;
};

struct Env {
  const TargetPython& target;
  const std::string& extra;                // this evaluation's `extra` ("" if none)
  const std::vector<std::string>& extras;  // normalised, for `'x' in extras`
  const std::vector<std::string>& groups;  // normalised, for `'g' in dependency_groups`
};

std::string lookup(const Env& env, const std::string& var) {
  if (var == "extra") return env.extra;
  auto it = env.target.markers.find(var);
  return it == env.target.markers.end() ? std::string() : it->second;
}

Result<bool> compare_strings(const std::string& l, const std::string& op, const std::string& r) {
  if (op == "==" || op == "===") return l == r;
  if (op == "!=") return l != r;
  if (op == "<") return l < r;
  if (op == "<=") return l <= r;
  if (op == ">") return l > r;
  if (op == ">=") return l >= r;
  return InvalidInput("'" + op + "' needs PEP 440 versions on both sides, got '" + l + "' and '" +
                      r + "'");
}

Result<bool> eval_compare(const Node& n, const Env& env, std::string_view marker) {
  const std::string& var = n.lhs.is_variable ? n.lhs.text : n.rhs.text;
  auto ctx = [&](Status s) { return s.with_context("marker '" + std::string(marker) + "'"); };
  if (var == "extras" || var == "dependency_groups") {
    // Set-valued (PEP 751): only "'name' in extras" / "not in" make sense.
    if (n.lhs.is_variable || (n.op != "in" && n.op != "not in")) {
      return ctx(InvalidInput("'" + var + "' is a set: use \"'name' in " + var + "\""));
    }
    std::string want = normalize_name(n.lhs.text);
    const std::vector<std::string>& set = var == "extras" ? env.extras : env.groups;
    bool found = std::find(set.begin(), set.end(), want) != set.end();
    return n.op == "in" ? found : !found;
  }
  std::string l = n.lhs.is_variable ? lookup(env, n.lhs.text) : n.lhs.text;
  std::string r = n.rhs.is_variable ? lookup(env, n.rhs.text) : n.rhs.text;
  if (var == "extra") {
    l = normalize_name(l);
    r = normalize_name(r);
  }
  if (n.op == "in") return r.find(l) != std::string::npos;
  if (n.op == "not in") return r.find(l) == std::string::npos;
  if (is_version_variable(var)) {
    // As packaging: Specifier(op + rhs).contains(lhs, prereleases=True).
    Result<internal::Specifier> spec = internal::parse_specifier(n.op + r);
    std::optional<internal::Version> v = internal::parse_version(l);
    if (spec.ok() && v) return internal::specifier_contains(*spec, *v);
  }
  Result<bool> b = compare_strings(l, n.op, r);
  if (!b.ok()) return ctx(b.status());
  return b;
}

// Evaluates every comparison (no short-circuit), so an undefined comparison is reported
// whatever the other clauses say.
Result<bool> eval(const Node& n, const Env& env, std::string_view marker) {
  if (n.kind == Node::kCompare) return eval_compare(n, env, marker);
  bool acc = n.kind == Node::kAnd;
  for (const auto& child : n.children) {
    MAT_ASSIGN_OR_RETURN(bool v, eval(*child, env, marker));
    acc = n.kind == Node::kAnd ? (acc && v) : (acc || v);
  }
  return acc;
}

// ---- Partial evaluation: a tri-state fold over the tree.

struct Partial {
  enum State { kFalse, kTrue, kResidual } state = kResidual;
  const Node* node = nullptr;     // kResidual, nothing decided below: the node as parsed
  std::vector<Partial> children;  // kResidual of a rebuilt and/or: the surviving children
  Node::Kind kind = Node::kCompare;
};

std::string quote(const std::string& literal) {
  char q = literal.find('\'') == std::string::npos ? '\'' : '"';
  return q + literal + q;
}

std::string render_node(const Node& n, bool nested);

std::string render_compare(const Node& n) {
  auto side = [](const Operand& o) { return o.is_variable ? o.text : quote(o.text); };
  return side(n.lhs) + " " + n.op + " " + side(n.rhs);
}

std::string render_node(const Node& n, bool nested) {
  if (n.kind == Node::kCompare) return render_compare(n);
  std::string out;
  for (const auto& c : n.children) {
    out += (out.empty() ? "" : n.kind == Node::kAnd ? " and " : " or ") + render_node(*c, true);
  }
  return nested ? "(" + out + ")" : out;
}

std::string render_partial(const Partial& p, bool nested) {
  if (p.node) return render_node(*p.node, nested);
  std::string out;
  for (const Partial& c : p.children) {
    out += (out.empty() ? "" : p.kind == Node::kAnd ? " and " : " or ") + render_partial(c, true);
  }
  return nested ? "(" + out + ")" : out;
}

bool is_symmetric(const std::string& op) { return op == "==" || op == "!=" || op == "==="; }

Partial fold(const Node& n,
             const std::function<std::optional<bool>(const MarkerComparison&)>& decide,
             bool& decided_any) {
  Partial out;
  if (n.kind == Node::kCompare) {
    std::optional<bool> v;
    if (n.lhs.is_variable) {
      v = decide(MarkerComparison{n.lhs.text, n.op, n.rhs.text});
    } else if (is_symmetric(n.op)) {
      v = decide(MarkerComparison{n.rhs.text, n.op, n.lhs.text});
    }
    if (v) {
      decided_any = true;
      out.state = *v ? Partial::kTrue : Partial::kFalse;
    } else {
      out.node = &n;
    }
    return out;
  }
  // and: false absorbs, true drops out; or: the other way round.
  const bool is_and = n.kind == Node::kAnd;
  const Partial::State absorbing = is_and ? Partial::kFalse : Partial::kTrue;
  const Partial::State neutral = is_and ? Partial::kTrue : Partial::kFalse;
  bool changed = false;
  std::vector<Partial> kept;
  for (const auto& c : n.children) {
    Partial p = fold(*c, decide, decided_any);
    if (p.state == absorbing) {
      out.state = absorbing;
      return out;
    }
    if (p.state == neutral || !p.node) changed = true;
    if (p.state != neutral) kept.push_back(std::move(p));
  }
  if (kept.empty()) {
    out.state = neutral;
  } else if (!changed) {
    out.node = &n;
  } else if (kept.size() == 1) {
    out = std::move(kept.front());
  } else {
    out.kind = n.kind;
    out.children = std::move(kept);
  }
  return out;
}

}  // namespace

Result<bool> evaluate_marker(std::string_view marker, const TargetPython& target,
                             const std::vector<std::string>& extras,
                             const std::vector<std::string>& groups) {
  // PackageRef::marker uses "" for "always"; packaging would reject it, we accept it.
  if (marker.find_first_not_of(" \t") == std::string_view::npos) return true;
  MAT_ASSIGN_OR_RETURN(std::unique_ptr<Node> root, Parser(marker).parse());
  std::vector<std::string> normalized;
  for (const std::string& e : extras) normalized.push_back(normalize_name(e));
  std::vector<std::string> norm_groups;
  for (const std::string& g : groups) norm_groups.push_back(normalize_name(g));
  // pip evaluates a requirement's marker once per requested extra (and once with extra=""
  // when there is none); the marker holds if any evaluation does.
  if (normalized.empty()) {
    const std::string none;
    return eval(*root, Env{target, none, normalized, norm_groups}, marker);
  }
  bool any = false;
  for (const std::string& e : normalized) {
    MAT_ASSIGN_OR_RETURN(bool v, eval(*root, Env{target, e, normalized, norm_groups}, marker));
    any = any || v;
  }
  return any;
}

Result<std::optional<std::string>> partially_evaluate_marker(
    std::string_view marker,
    const std::function<std::optional<bool>(const MarkerComparison&)>& decide) {
  if (marker.find_first_not_of(" \t") == std::string_view::npos) {
    return std::optional<std::string>(std::string());
  }
  MAT_ASSIGN_OR_RETURN(std::unique_ptr<Node> root, Parser(marker).parse());
  bool decided_any = false;
  Partial p = fold(*root, decide, decided_any);
  if (p.state == Partial::kFalse) return std::optional<std::string>();
  if (p.state == Partial::kTrue) return std::optional<std::string>(std::string());
  if (!decided_any) return std::optional<std::string>(std::string(marker));
  return std::optional<std::string>(render_partial(p, false));
}

}  // namespace mat::pypi
