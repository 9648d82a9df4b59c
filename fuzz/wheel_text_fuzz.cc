// The wheel installer's text kernels (materializer/wheel_internal.h): entry_points.txt, pip's
// console-script variants and launchers, #!python script fixing, METADATA/WHEEL header fields,
// wheel file names and PEP 503/440 normalisation.
#include <cstddef>
#include <cstdint>

#include "fuzz/fuzz_util.h"
#include "materializer/wheel_internal.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mat;
  using namespace mat::wheel_internal;
  const std::string_view text = fuzz::as_text(data, size);
  const std::string exe = "/opt/env/bin/python3.11";

  Result<EntryPoints> eps = parse_entry_points(text);
  if (eps.ok()) {
    for (const EntryPoint& ep : console_script_specs(eps->console, "3.11")) {
      MAT_FUZZ_CHECK(!ep.module.empty() || !ep.attr.empty() || !ep.name.empty(), "empty entry");
      (void)launcher_script(exe, ep);
    }
    for (const EntryPoint& ep : eps->gui) (void)launcher_script(exe, ep);
  } else {
    MAT_FUZZ_CHECK(eps.status().code() == Code::kCorrupt, eps.status().to_string());
  }
  if (auto fixed = fix_script(text, exe)) {
    MAT_FUZZ_CHECK(fixed->starts_with("#!"), *fixed);
  }
  (void)script_shebang(std::string(text.substr(0, 512)));
  for (const char* field : {"Name", "Version", "Wheel-Version", "Root-Is-Purelib"}) {
    (void)metadata_field(text, field);
  }
  if (size < 1024) {
    (void)parse_wheel_file_name(text);
    (void)normalize_name(text);
    (void)normalize_version(text);
    const std::string s(text);
    (void)relative_to(s, "lib/python3.11/site-packages");
    (void)relative_to("bin/x", s);
  }
  return 0;
}
