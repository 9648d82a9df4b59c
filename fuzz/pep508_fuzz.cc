// The PEP 440 / PEP 508 / PEP 427 string rules applied to lock and index values (markers,
// requires-python, versions, wheel file names): materializer/pypi.h and pypi_internal.h.
// The input is split at the first NUL: the marker or specifier, then a version.
#include <cstddef>
#include <cstdint>

#include "fuzz/fuzz_util.h"
#include "materializer/pypi.h"
#include "materializer/pypi_index_internal.h"
#include "materializer/pypi_internal.h"

namespace {

const mat::pypi::TargetPython& target() {
  static const mat::pypi::TargetPython t = [] {
    auto r = mat::pypi::make_target("3.11", "3.11.7", "linux-64", "/p/bin/python3.11", "2.28");
    if (!r.ok()) mat::fuzz::fail(__FILE__, __LINE__, "make_target", r.status().to_string());
    return *r;
  }();
  return t;
}

void check_input_error(const mat::Status& st) {
  MAT_FUZZ_CHECK(st.ok() || st.code() == mat::Code::kInvalidInput, st.to_string());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mat;
  std::string_view all = fuzz::as_text(data, size);
  std::string_view text = all.substr(0, all.find('\0'));
  std::string_view version =
      text.size() < all.size() ? all.substr(text.size() + 1) : std::string_view("3.11.7");

  check_input_error(pypi::evaluate_marker(text, target()).status());
  check_input_error(pypi::evaluate_marker(text, target(), {"Test", "dev"}, {"docs"}).status());
  size_t asked = 0;
  auto partial = pypi::partially_evaluate_marker(
      text, [&asked](const pypi::MarkerComparison& c) -> std::optional<bool> {
        // Settle every other comparison, by a rule that depends only on the comparison.
        if (++asked % 2 == 0) return std::nullopt;
        return c.variable.size() % 2 == 0;
      });
  check_input_error(partial.status());
  if (partial.ok() && partial->has_value() && !(*partial)->empty()) {
    // The residue is a marker again.
    check_input_error(pypi::evaluate_marker(**partial, target()).status());
  }

  check_input_error(pypi::version_satisfies(version, text).status());
  if (auto v = pypi::internal::parse_version(version)) {
    (void)pypi::internal::to_string(*v);
    if (auto w = pypi::internal::parse_version(text)) (void)pypi::internal::compare(*v, *w);
  }
  (void)pypi::internal::canonical_version(text);
  (void)pypi::internal::same_version(text, version);
  (void)pypi::normalize_name(text);
  if (auto wheel = pypi::parse_wheel_name(text)) (void)pypi::wheel_rank(*wheel, target());
  (void)pypi::internal::is_sdist_of(text, "pkg", version);
  return 0;
}
