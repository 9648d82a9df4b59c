// Tests for materializer/pypi.h. Expected tag lists, specifier and marker results were produced
// by hand with packaging 24.1 (pip 24.2's vendored copy) on Debian 12 (glibc 2.36) and are
// embedded here; no Python runs at test time except the probe_interpreter() cases.
#include "materializer/pypi.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <iterator>
#include <optional>
#include <string>
#include <vector>

#include "materializer/pypi_internal.h"

namespace mat::pypi {
namespace {

TargetPython Linux311() {
  Result<TargetPython> t = make_target("3.11", "3.11.2", "linux-64", "/usr/bin/python3", "2.36");
  EXPECT_TRUE(t.ok()) << t.status().to_string();
  return *t;
}

// ---------------------------------------------------------------------------------------------
// Tags

// First 40 of sys_tags() (packaging 24.1, /usr/bin/python3 3.11, glibc 2.36, x86_64).
const char* const kHost311First40[] = {
    "cp311-cp311-manylinux_2_36_x86_64", "cp311-cp311-manylinux_2_35_x86_64",
    "cp311-cp311-manylinux_2_34_x86_64", "cp311-cp311-manylinux_2_33_x86_64",
    "cp311-cp311-manylinux_2_32_x86_64", "cp311-cp311-manylinux_2_31_x86_64",
    "cp311-cp311-manylinux_2_30_x86_64", "cp311-cp311-manylinux_2_29_x86_64",
    "cp311-cp311-manylinux_2_28_x86_64", "cp311-cp311-manylinux_2_27_x86_64",
    "cp311-cp311-manylinux_2_26_x86_64", "cp311-cp311-manylinux_2_25_x86_64",
    "cp311-cp311-manylinux_2_24_x86_64", "cp311-cp311-manylinux_2_23_x86_64",
    "cp311-cp311-manylinux_2_22_x86_64", "cp311-cp311-manylinux_2_21_x86_64",
    "cp311-cp311-manylinux_2_20_x86_64", "cp311-cp311-manylinux_2_19_x86_64",
    "cp311-cp311-manylinux_2_18_x86_64", "cp311-cp311-manylinux_2_17_x86_64",
    "cp311-cp311-manylinux2014_x86_64",  "cp311-cp311-manylinux_2_16_x86_64",
    "cp311-cp311-manylinux_2_15_x86_64", "cp311-cp311-manylinux_2_14_x86_64",
    "cp311-cp311-manylinux_2_13_x86_64", "cp311-cp311-manylinux_2_12_x86_64",
    "cp311-cp311-manylinux2010_x86_64",  "cp311-cp311-manylinux_2_11_x86_64",
    "cp311-cp311-manylinux_2_10_x86_64", "cp311-cp311-manylinux_2_9_x86_64",
    "cp311-cp311-manylinux_2_8_x86_64",  "cp311-cp311-manylinux_2_7_x86_64",
    "cp311-cp311-manylinux_2_6_x86_64",  "cp311-cp311-manylinux_2_5_x86_64",
    "cp311-cp311-manylinux1_x86_64",     "cp311-cp311-linux_x86_64",
    "cp311-abi3-manylinux_2_36_x86_64",  "cp311-abi3-manylinux_2_35_x86_64",
    "cp311-abi3-manylinux_2_34_x86_64",  "cp311-abi3-manylinux_2_33_x86_64",
};
// Last 20 of the same list.
const char* const kHost311Last20[] = {
    "py30-none-manylinux_2_8_x86_64",
    "py30-none-manylinux_2_7_x86_64",
    "py30-none-manylinux_2_6_x86_64",
    "py30-none-manylinux_2_5_x86_64",
    "py30-none-manylinux1_x86_64",
    "py30-none-linux_x86_64",
    "cp311-none-any",
    "py311-none-any",
    "py3-none-any",
    "py310-none-any",
    "py39-none-any",
    "py38-none-any",
    "py37-none-any",
    "py36-none-any",
    "py35-none-any",
    "py34-none-any",
    "py33-none-any",
    "py32-none-any",
    "py31-none-any",
    "py30-none-any",
};

TEST(PypiTags, Linux311MatchesPackagingSysTags) {
  TargetPython t = Linux311();
  // 36 platforms (manylinux_2_36..2_5, three legacy aliases, linux_x86_64) x (3 cp311 ABIs +
  // 9 older abi3 + 13 py3 interpreters) + 14 "-any" tags.
  ASSERT_EQ(t.tags.size(), 914u);
  for (size_t i = 0; i < std::size(kHost311First40); ++i) {
    EXPECT_EQ(t.tags[i], kHost311First40[i]) << "index " << i;
  }
  size_t base = t.tags.size() - std::size(kHost311Last20);
  for (size_t i = 0; i < std::size(kHost311Last20); ++i) {
    EXPECT_EQ(t.tags[base + i], kHost311Last20[i]) << "index " << base + i;
  }
}

TEST(PypiTags, Linux311SectionBoundaries) {
  TargetPython t = Linux311();
  auto at = [&](const std::string& tag) {
    return std::find(t.tags.begin(), t.tags.end(), tag) - t.tags.begin();
  };
  EXPECT_EQ(at("cp311-abi3-manylinux_2_36_x86_64"), 36);
  EXPECT_EQ(at("cp311-none-manylinux_2_36_x86_64"), 72);
  EXPECT_EQ(at("cp310-abi3-manylinux_2_36_x86_64"), 108);
  EXPECT_EQ(at("cp32-abi3-linux_x86_64"), 431);
  EXPECT_EQ(at("py311-none-manylinux_2_36_x86_64"), 432);
  EXPECT_EQ(at("py3-none-manylinux_2_36_x86_64"), 468);
  EXPECT_EQ(at("py30-none-linux_x86_64"), 899);
  EXPECT_EQ(at("cp311-none-any"), 900);
  EXPECT_EQ(at("py311-none-any"), 901);
  EXPECT_EQ(at("py3-none-any"), 902);
  EXPECT_EQ(t.abi, "cp311");
  EXPECT_EQ(t.glibc, "2.36");
}

TEST(PypiTags, Aarch64StopsAtManylinux2014) {
  Result<TargetPython> t = make_target("3.12", "", "linux-aarch64", "/p/bin/python3.12", "2.28");
  ASSERT_TRUE(t.ok()) << t.status().to_string();
  // packaging 24.1, cpython_tags((3,12)) + compatible_tags(..., "cp312") for aarch64/glibc 2.28.
  ASSERT_EQ(t->tags.size(), 393u);
  const std::vector<std::string> head = {
      "cp312-cp312-manylinux_2_28_aarch64", "cp312-cp312-manylinux_2_27_aarch64",
      "cp312-cp312-manylinux_2_26_aarch64", "cp312-cp312-manylinux_2_25_aarch64",
      "cp312-cp312-manylinux_2_24_aarch64", "cp312-cp312-manylinux_2_23_aarch64",
      "cp312-cp312-manylinux_2_22_aarch64", "cp312-cp312-manylinux_2_21_aarch64",
      "cp312-cp312-manylinux_2_20_aarch64", "cp312-cp312-manylinux_2_19_aarch64",
      "cp312-cp312-manylinux_2_18_aarch64", "cp312-cp312-manylinux_2_17_aarch64",
      "cp312-cp312-manylinux2014_aarch64",  "cp312-cp312-linux_aarch64",
      "cp312-abi3-manylinux_2_28_aarch64"};
  EXPECT_EQ(std::vector<std::string>(t->tags.begin(), t->tags.begin() + 15), head);
  EXPECT_EQ(t->tags.back(), "py30-none-any");
  EXPECT_EQ(t->markers.at("platform_machine"), "aarch64");
  EXPECT_EQ(t->full_version, "3.12.0");
}

TEST(PypiTags, FreeThreadedHasNoAbi3) {
  Result<TargetPython> t = make_target("3.13t", "3.13.1", "linux-64", "/p/bin/python3.13t", "2.17");
  ASSERT_TRUE(t.ok()) << t.status().to_string();
  EXPECT_EQ(t->abi, "cp313t");
  EXPECT_EQ(t->version, "3.13");
  ASSERT_EQ(t->tags.size(), 305u);  // packaging 24.1 with abis=["cp313t"]
  EXPECT_EQ(t->tags[0], "cp313-cp313t-manylinux_2_17_x86_64");
  EXPECT_EQ(t->tags[1], "cp313-cp313t-manylinux2014_x86_64");
  EXPECT_EQ(t->tags[16], "cp313-cp313t-linux_x86_64");
  EXPECT_EQ(t->tags[17], "cp313-none-manylinux_2_17_x86_64");
  for (const std::string& tag : t->tags) EXPECT_EQ(tag.find("abi3"), std::string::npos) << tag;
  EXPECT_EQ(t->markers.at("python_version"), "3.13");
}

TEST(PypiTags, OldPythonUsesPymallocAbi) {
  Result<TargetPython> t = make_target("3.7", "3.7.16", "linux-64", "/p/bin/python3.7", "2.36");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->abi, "cp37m");
  EXPECT_EQ(t->tags[0], "cp37-cp37m-manylinux_2_36_x86_64");
  EXPECT_EQ(t->tags.size(), 622u);  // = probe of pyenv 3.7.16 vs its sys_tags() + cp37-none-any
}

TEST(PypiTags, NotGlibcOnlyLinuxArch) {
  Result<TargetPython> t = make_target("3.9", "", "linux-64", "/p", "none");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->glibc, "");
  ASSERT_EQ(t->tags.size(), 33u);
  EXPECT_EQ(t->tags[0], "cp39-cp39-linux_x86_64");
  EXPECT_EQ(t->tags[1], "cp39-abi3-linux_x86_64");
}

TEST(PypiTags, HostGlibcByDefault) {
  Result<TargetPython> t = make_target("3.11", "", "linux-64", "/p");
  ASSERT_TRUE(t.ok());
#if defined(__GLIBC__)
  EXPECT_EQ(t->tags[0], "cp311-cp311-manylinux_" +
                            std::string(t->glibc).replace(t->glibc.find('.'), 1, "_") + "_x86_64");
  EXPECT_FALSE(t->glibc.empty());
#endif
}

TEST(PypiTags, MacArm64) {
  Result<TargetPython> t = make_target("3.12", "3.12.1", "osx-arm64", "/p", "14.0");
  ASSERT_TRUE(t.ok()) << t.status().to_string();
  ASSERT_EQ(t->tags.size(), 582u);  // packaging 24.1 mac_platforms((14, 0), "arm64")
  const std::vector<std::string> head = {
      "cp312-cp312-macosx_14_0_arm64", "cp312-cp312-macosx_14_0_universal2",
      "cp312-cp312-macosx_13_0_arm64", "cp312-cp312-macosx_13_0_universal2",
      "cp312-cp312-macosx_12_0_arm64", "cp312-cp312-macosx_12_0_universal2",
      "cp312-cp312-macosx_11_0_arm64", "cp312-cp312-macosx_11_0_universal2"};
  EXPECT_EQ(std::vector<std::string>(t->tags.begin(), t->tags.begin() + 8), head);
  EXPECT_EQ(t->tags[20], "cp312-cp312-macosx_10_4_universal2");
  EXPECT_EQ(t->markers.at("sys_platform"), "darwin");
  EXPECT_EQ(t->markers.at("platform_machine"), "arm64");
  EXPECT_EQ(t->macos, "14.0");
  EXPECT_EQ(t->glibc, "");
}

TEST(PypiTags, MacX86_64) {
  Result<TargetPython> t = make_target("3.11", "", "osx-64", "/p", "12.0");
  ASSERT_TRUE(t.ok());
  const std::vector<std::string> head = {
      "cp311-cp311-macosx_12_0_x86_64",     "cp311-cp311-macosx_12_0_intel",
      "cp311-cp311-macosx_12_0_fat64",      "cp311-cp311-macosx_12_0_fat32",
      "cp311-cp311-macosx_12_0_universal2", "cp311-cp311-macosx_12_0_universal",
      "cp311-cp311-macosx_11_0_x86_64",     "cp311-cp311-macosx_11_0_intel"};
  EXPECT_EQ(std::vector<std::string>(t->tags.begin(), t->tags.begin() + 8), head);
  Result<TargetPython> d = make_target("3.11", "", "osx-64", "/p");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->macos, "11.0");
}

TEST(PypiTags, Windows64Complete) {
  Result<TargetPython> t = make_target("3.13", "3.13.0", "win-64", "C:/Python313/python.exe");
  ASSERT_TRUE(t.ok());
  const std::vector<std::string> want = {
      "cp313-cp313-win_amd64", "cp313-abi3-win_amd64", "cp313-none-win_amd64",
      "cp312-abi3-win_amd64",  "cp311-abi3-win_amd64", "cp310-abi3-win_amd64",
      "cp39-abi3-win_amd64",   "cp38-abi3-win_amd64",  "cp37-abi3-win_amd64",
      "cp36-abi3-win_amd64",   "cp35-abi3-win_amd64",  "cp34-abi3-win_amd64",
      "cp33-abi3-win_amd64",   "cp32-abi3-win_amd64",  "py313-none-win_amd64",
      "py3-none-win_amd64",    "py312-none-win_amd64", "py311-none-win_amd64",
      "py310-none-win_amd64",  "py39-none-win_amd64",  "py38-none-win_amd64",
      "py37-none-win_amd64",   "py36-none-win_amd64",  "py35-none-win_amd64",
      "py34-none-win_amd64",   "py33-none-win_amd64",  "py32-none-win_amd64",
      "py31-none-win_amd64",   "py30-none-win_amd64",  "cp313-none-any",
      "py313-none-any",        "py3-none-any",         "py312-none-any",
      "py311-none-any",        "py310-none-any",       "py39-none-any",
      "py38-none-any",         "py37-none-any",        "py36-none-any",
      "py35-none-any",         "py34-none-any",        "py33-none-any",
      "py32-none-any",         "py31-none-any",        "py30-none-any"};
  EXPECT_EQ(t->tags, want);
  EXPECT_EQ(t->markers.at("os_name"), "nt");
  EXPECT_EQ(t->markers.at("sys_platform"), "win32");
  EXPECT_EQ(t->markers.at("platform_machine"), "AMD64");
  EXPECT_EQ(t->markers.at("platform_system"), "Windows");
}

TEST(PypiTags, LinuxMarkers) {
  TargetPython t = Linux311();
  const std::map<std::string, std::string> want = {{"os_name", "posix"},
                                                   {"sys_platform", "linux"},
                                                   {"platform_machine", "x86_64"},
                                                   {"platform_system", "Linux"},
                                                   {"platform_release", ""},
                                                   {"platform_version", ""},
                                                   {"python_version", "3.11"},
                                                   {"python_full_version", "3.11.2"},
                                                   {"implementation_name", "cpython"},
                                                   {"implementation_version", "3.11.2"},
                                                   {"platform_python_implementation", "CPython"}};
  EXPECT_EQ(t.markers, want);
  EXPECT_EQ(t.executable, "/usr/bin/python3");
  EXPECT_EQ(t.platform, "linux-64");
}

TEST(PypiTags, RejectsBadTargets) {
  const char* const bad[][4] = {{"3", "", "linux-64", ""},          {"3.11.2", "", "linux-64", ""},
                                {"2.7", "", "linux-64", ""},        {"3.x", "", "linux-64", ""},
                                {"3.11", "", "linux-32", ""},       {"3.11", "", "noarch", ""},
                                {"3.11", "3.10.1", "linux-64", ""}, {"3.11", "", "linux-64", "2"},
                                {"3.11", "", "linux-64", "3.1"},    {"3.12t", "", "linux-64", ""},
                                {"3.11", "", "osx-arm64", "x"},     {"", "", "linux-64", ""}};
  for (const auto& b : bad) {
    Result<TargetPython> t = make_target(b[0], b[1], b[2], "/p", b[3]);
    ASSERT_FALSE(t.ok()) << b[0] << " " << b[1] << " " << b[2] << " " << b[3];
    EXPECT_EQ(t.status().code(), Code::kInvalidInput);
  }
}

// ---------------------------------------------------------------------------------------------
// probe_interpreter

TEST(PypiProbe, SystemPython) {
  const char* python = "/usr/bin/python3";
  if (access(python, X_OK) != 0) GTEST_SKIP() << python << " not present";
  Result<TargetPython> t = probe_interpreter(python);
  ASSERT_TRUE(t.ok()) << t.status().to_string();
  EXPECT_EQ(t->executable, python);
  EXPECT_EQ(t->implementation, "cpython");
  EXPECT_EQ(t->version.rfind("3.", 0), 0u) << t->version;
  EXPECT_EQ(t->full_version.rfind(t->version + ".", 0), 0u) << t->full_version;
  EXPECT_EQ(t->markers.at("python_version"), t->version);
  ASSERT_FALSE(t->tags.empty());
  EXPECT_EQ(t->tags.back(), "py30-none-any");
  EXPECT_NE(std::find(t->tags.begin(), t->tags.end(), "py3-none-any"), t->tags.end());
#if defined(__GLIBC__) && defined(__x86_64__)
  EXPECT_EQ(t->platform, "linux-64");
  EXPECT_FALSE(t->glibc.empty());
  // Same target as make_target() with the probed facts.
  Result<TargetPython> m = make_target(t->version, t->full_version, "linux-64", python, "");
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(t->tags, m->tags);
#endif
}

TEST(PypiProbe, NotPythonIsInvalidInput) {
  if (access("/bin/true", X_OK) != 0) GTEST_SKIP() << "/bin/true not present";
  Result<TargetPython> t = probe_interpreter("/bin/true");
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), Code::kInvalidInput) << t.status().to_string();
  EXPECT_NE(t.status().message().find("/bin/true"), std::string::npos);

  Result<TargetPython> f = probe_interpreter("/bin/false");
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.status().code(), Code::kInvalidInput) << f.status().to_string();
}

TEST(PypiProbe, NonExecutableIsInvalidInput) {
  Result<TargetPython> t = probe_interpreter("/etc/hostname");
  if (access("/etc/hostname", F_OK) != 0) GTEST_SKIP();
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), Code::kInvalidInput) << t.status().to_string();
  Result<TargetPython> d = probe_interpreter("/");
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().code(), Code::kInvalidInput) << d.status().to_string();
}

TEST(PypiProbe, MissingFileIsNotFound) {
  Result<TargetPython> t = probe_interpreter("/nonexistent/bin/python3");
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), Code::kNotFound) << t.status().to_string();
  Result<TargetPython> e = probe_interpreter("");
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.status().code(), Code::kNotFound);
}

// ---------------------------------------------------------------------------------------------
// Names and wheels

TEST(PypiNames, Normalize) {
  EXPECT_EQ(normalize_name("Django"), "django");
  EXPECT_EQ(normalize_name("zope.interface"), "zope-interface");
  EXPECT_EQ(normalize_name("ruamel.yaml.clib"), "ruamel-yaml-clib");
  EXPECT_EQ(normalize_name("Foo__Bar--baz._.qux"), "foo-bar-baz-qux");
  EXPECT_EQ(normalize_name("typing_extensions"), "typing-extensions");
  EXPECT_EQ(normalize_name(""), "");
}

TEST(PypiWheelName, Valid) {
  std::optional<WheelName> w =
      parse_wheel_name("numpy-1.26.4-cp311-cp311-manylinux_2_17_x86_64.whl");
  ASSERT_TRUE(w);
  EXPECT_EQ(w->name, "numpy");
  EXPECT_EQ(w->version, "1.26.4");
  EXPECT_EQ(w->build, "");
  EXPECT_EQ(w->tags, std::vector<std::string>{"cp311-cp311-manylinux_2_17_x86_64"});

  w = parse_wheel_name("typing_extensions-4.9.0-py3-none-any.whl");
  ASSERT_TRUE(w);
  EXPECT_EQ(w->name, "typing_extensions");
  EXPECT_EQ(w->tags, std::vector<std::string>{"py3-none-any"});

  w = parse_wheel_name("torch-2.1.0+cu121-cp311-cp311-linux_x86_64.whl");
  ASSERT_TRUE(w);
  EXPECT_EQ(w->version, "2.1.0+cu121");
}

TEST(PypiWheelName, CompressedTagSets) {
  std::optional<WheelName> w = parse_wheel_name("six-1.16.0-py2.py3-none-any.whl");
  ASSERT_TRUE(w);
  EXPECT_EQ(w->tags, (std::vector<std::string>{"py2-none-any", "py3-none-any"}));

  w = parse_wheel_name("numpy-1.26.4-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl");
  ASSERT_TRUE(w);
  EXPECT_EQ(w->tags, (std::vector<std::string>{"cp311-cp311-manylinux_2_17_x86_64",
                                               "cp311-cp311-manylinux2014_x86_64"}));

  // interpreters x abis x platforms, in packaging.tags.parse_tag order; tags are lowercased.
  w = parse_wheel_name("x-1.0-CP38.cp39-abi3.none-Linux_x86_64.any.whl");
  ASSERT_TRUE(w);
  EXPECT_EQ(w->tags, (std::vector<std::string>{"cp38-abi3-linux_x86_64", "cp38-abi3-any",
                                               "cp38-none-linux_x86_64", "cp38-none-any",
                                               "cp39-abi3-linux_x86_64", "cp39-abi3-any",
                                               "cp39-none-linux_x86_64", "cp39-none-any"}));
}

TEST(PypiWheelName, BuildTag) {
  std::optional<WheelName> w = parse_wheel_name("pkg-1.0-1-py3-none-any.whl");
  ASSERT_TRUE(w);
  EXPECT_EQ(w->build, "1");
  EXPECT_EQ(w->tags, std::vector<std::string>{"py3-none-any"});
  w = parse_wheel_name("pkg-1.0-20240101abc-py3-none-any.whl");
  ASSERT_TRUE(w);
  EXPECT_EQ(w->build, "20240101abc");
  EXPECT_FALSE(parse_wheel_name("pkg-1.0-abc-py3-none-any.whl"));  // must start with a digit
}

TEST(PypiWheelName, Invalid) {
  const char* const bad[] = {
      "numpy-1.26.4.tar.gz",
      "numpy-1.26.4-cp311-cp311-manylinux_2_17_x86_64.zip",
      "numpy-1.26.4-cp311-manylinux_2_17_x86_64.whl",  // too few parts
      "a-1.0-1-2-py3-none-any.whl",                    // too many parts
      "numpy-notaversion-py3-none-any.whl",
      "foo__bar-1.0-py3-none-any.whl",  // "__" in the name
      "foo+bar-1.0-py3-none-any.whl",
      "-1.0-py3-none-any.whl",          // empty name
      "pkg-1.0-py3..py2-none-any.whl",  // empty tag in a set
      "pkg-1.0-py3-none-.whl",
      "pkg-1.0-py3-none-any!.whl",
      ".whl",
      "pkg-1.0-py3-none-any.WHL",
      "",
  };
  for (const char* name : bad) EXPECT_FALSE(parse_wheel_name(name)) << name;
}

TEST(PypiWheelRank, ManylinuxBeatsAnyAndRanksFollowTags) {
  TargetPython t = Linux311();
  auto rank = [&](const char* file) {
    std::optional<WheelName> w = parse_wheel_name(file);
    EXPECT_TRUE(w) << file;
    return w ? wheel_rank(*w, t) : std::nullopt;
  };
  EXPECT_EQ(rank("a-1-cp311-cp311-manylinux_2_36_x86_64.whl"), 0u);
  EXPECT_EQ(rank("a-1-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"), 19u);
  EXPECT_EQ(rank("a-1-cp311-cp311-manylinux2014_x86_64.whl"), 20u);
  EXPECT_EQ(rank("a-1-cp39-abi3-manylinux_2_17_x86_64.whl"), 163u);  // 4 blocks of 36 + 19
  EXPECT_EQ(rank("a-1-py3-none-any.whl"), 902u);
  EXPECT_EQ(rank("a-1-py2.py3-none-any.whl"), 902u);
  EXPECT_EQ(rank("a-1-cp312-cp312-manylinux_2_17_x86_64.whl"), std::nullopt);
  EXPECT_EQ(rank("a-1-cp311-cp311-manylinux_2_38_x86_64.whl"), std::nullopt);  // glibc too new
  EXPECT_EQ(rank("a-1-cp311-cp311-manylinux_2_17_aarch64.whl"), std::nullopt);
  EXPECT_EQ(rank("a-1-cp311-cp311-win_amd64.whl"), std::nullopt);
  EXPECT_EQ(rank("a-1-py2-none-any.whl"), std::nullopt);
  EXPECT_EQ(rank("a-1-cp311-cp311-musllinux_1_1_x86_64.whl"), std::nullopt);
}

WheelCandidate Cand(const std::string& file) {
  WheelCandidate c;
  c.file_name = file;
  c.url = "https://files.example/" + file;
  return c;
}

TEST(PypiPickWheel, PrefersBestRankAndSkipsNonWheels) {
  TargetPython t = Linux311();
  std::vector<WheelCandidate> c = {
      Cand("numpy-1.26.4.tar.gz"),
      Cand("numpy-1.26.4-cp311-cp311-win_amd64.whl"),
      Cand("numpy-1.26.4-py3-none-any.whl"),
      Cand("numpy-1.26.4-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"),
      Cand("numpy-1.26.4-cp311-cp311-macosx_11_0_arm64.whl"),
      Cand("numpy-1.26.4-cp310-cp310-manylinux_2_17_x86_64.whl"),
  };
  std::optional<WheelCandidate> w = pick_wheel(c, t);
  ASSERT_TRUE(w);
  EXPECT_EQ(w->file_name,
            "numpy-1.26.4-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl");
}

TEST(PypiPickWheel, Abi3BeatsPureButLosesToExactAbi) {
  TargetPython t = Linux311();
  std::vector<WheelCandidate> c = {Cand("c-42.0-py3-none-any.whl"),
                                   Cand("c-42.0-cp37-abi3-manylinux_2_28_x86_64.whl")};
  ASSERT_TRUE(pick_wheel(c, t));
  EXPECT_EQ(pick_wheel(c, t)->file_name, "c-42.0-cp37-abi3-manylinux_2_28_x86_64.whl");
  c.push_back(Cand("c-42.0-cp311-cp311-manylinux_2_5_x86_64.manylinux1_x86_64.whl"));
  EXPECT_EQ(pick_wheel(c, t)->file_name,
            "c-42.0-cp311-cp311-manylinux_2_5_x86_64.manylinux1_x86_64.whl");
}

TEST(PypiPickWheel, TiesGoToFirstListed) {
  TargetPython t = Linux311();
  std::vector<WheelCandidate> c = {Cand("a-1.0-py3-none-any.whl"),
                                   Cand("a-1.0-1-py3-none-any.whl")};
  EXPECT_EQ(pick_wheel(c, t)->file_name, "a-1.0-py3-none-any.whl");
}

TEST(PypiPickWheel, IncompatibleIsNullopt) {
  TargetPython t = Linux311();
  EXPECT_FALSE(pick_wheel({}, t));
  EXPECT_FALSE(pick_wheel({Cand("a-1.0.tar.gz"), Cand("a-1.0.zip")}, t));
  EXPECT_FALSE(pick_wheel({Cand("a-1.0-cp312-cp312-manylinux_2_17_x86_64.whl"),
                           Cand("a-1.0-cp311-cp311-macosx_11_0_arm64.whl"),
                           Cand("a-1.0-cp311-cp311-manylinux_2_17_aarch64.whl")},
                          t));
}

// ---------------------------------------------------------------------------------------------
// Specifiers

enum Expect { kNo, kYes, kBad };

struct SpecCase {
  const char* version;
  const char* spec;
  Expect want;
};

// Each row checked by hand against packaging 24.1:
// SpecifierSet(spec).contains(Version(version), prereleases=True); kBad = InvalidSpecifier or
// InvalidVersion.
const SpecCase kSpecCases[] = {
    {"3.11", ">=3.8", kYes},
    {"3.7", ">=3.8", kNo},
    {"3.11", ">=3.8,<4", kYes},
    {"4.0", ">=3.8,<4", kNo},
    {"3.11.7", "==3.11.*", kYes},
    {"3.12.0", "==3.11.*", kNo},
    {"3.11", "==3.11.*", kYes},
    {"3", "==3.0.*", kYes},
    {"3.11.0rc1", "==3.11.*", kYes},
    {"3.11.0", "!=3.11.*", kNo},
    {"3.10.2", "!=3.11.*", kYes},
    {"3.9.1", "~=3.9", kYes},
    {"4.0", "~=3.9", kNo},
    {"3.9.5", "~=3.9.2", kYes},
    {"3.10.0", "~=3.9.2", kNo},
    {"3.9.1", "~=3.9.2", kNo},
    {"3.10", "!=3.10", kNo},
    {"3.10.0", "!=3.10", kNo},
    {"3.10.1", "!=3.10", kYes},
    {"1.0", "==1.0.0", kYes},
    {"1.0+local", "==1.0", kYes},
    {"1.0+local", "==1.0+local", kYes},
    {"1.0", "==1.0+local", kNo},
    {"1.0+abc", "!=1.0", kNo},
    {"3.0a1", "<3.0", kNo},
    {"2.9", "<3.0", kYes},
    {"3.0a1", "<3.0rc1", kYes},
    {"3.0.post1", ">3.0", kNo},
    {"3.1", ">3.0", kYes},
    {"3.0+local", ">3.0", kNo},
    {"3.0.post2", ">3.0.post1", kYes},
    {"3.0.post1", ">=3.0", kYes},
    {"3.0+local", "<=3.0", kYes},
    {"1.0.dev1", "<1.0", kNo},
    {"1.0.dev1", ">=1.0a1", kNo},
    {"1.0a1", ">1.0.dev1", kYes},
    {"1!1.0", ">=2.0", kYes},
    {"1!1.0", "==1!1.*", kYes},
    {"2.0", "==1!2.0", kNo},
    {"1.0", "===1.0", kYes},
    {"1.0.0", "===1.0", kNo},
    {"v1.0", "===1.0", kYes},
    {"1.0", "===foo", kNo},
    {"1.0rc1", "==1.0c1", kYes},
    {"1.0-1", "==1.0.post1", kYes},
    {"1.0.ALPHA2", "==1.0a2", kYes},
    {"3.11", "", kYes},
    {"3.11", ">=3.8,", kYes},
    {"3.11", " >= 3.8 , < 3.12 ", kYes},
    {"3.11", "=>3.8", kBad},
    {"3.11", ">=", kBad},
    {"3.11", ">=3.8.*", kBad},
    {"3.11", "~=3", kBad},
    {"3.11", "~=3.*", kBad},
    {"3.11", "<3.0+local", kBad},
    {"3.11", "==3.11.*+x", kBad},
    {"3.11", "==3.1a.*", kBad},
    {"notaversion", ">=3.8", kBad},
    {"3.11", ">=3.8;", kBad},
    {"3.11", ">=3 .8", kBad},
    {"1.0", "==1.0.0.0.0", kYes},
    {"1.2.3", "~=1.2.3a1", kYes},
    {"1.2.3a2", "~=1.2.3a1", kYes},
    {"1.2.4", "~=1.2.3.post1", kYes},
    {"3.11", ">=3.8,<3.10|3.12", kBad},
    {"3.11", ">=3.8 <4", kBad},
    {"1.0.post1", "==1.0.*", kYes},
    {"1.0", "==1.*", kYes},
    {"0!1.0", "==1.0", kYes},
    {"3.6", ">=2.7, !=3.0.*, !=3.1.*, !=3.2.*, !=3.3.*, !=3.4.*", kYes},
    {"3.3.1", ">=2.7, !=3.0.*, !=3.1.*, !=3.2.*, !=3.3.*, !=3.4.*", kNo},
    {"1.0.dev0", ">1.0.dev0", kNo},
    {"1.0", "<1.0.post1", kYes},
    {"1.0.post1.dev1", ">1.0", kNo},
    {"1.0", ">1.0.dev0", kYes},
    {"10.0", ">9.99999999999999999999", kYes},
};

TEST(PypiSpecifier, TableMatchesPackaging) {
  for (const SpecCase& c : kSpecCases) {
    Result<bool> r = version_satisfies(c.version, c.spec);
    if (c.want == kBad) {
      ASSERT_FALSE(r.ok()) << c.version << " in '" << c.spec << "'";
      EXPECT_EQ(r.status().code(), Code::kInvalidInput);
    } else {
      ASSERT_TRUE(r.ok()) << c.version << " in '" << c.spec << "': " << r.status().to_string();
      EXPECT_EQ(*r, c.want == kYes) << c.version << " in '" << c.spec << "'";
    }
  }
}

// PEP 440 ordering, checked pair by pair: sorted(l, key=packaging.version.Version) == l with
// packaging 24.1 (pip 24.2's vendored copy). Numbers compare as numbers in every segment
// (rc2 < rc10, a12 > a2, post10 > post2), dev sorts before its pre/post, local after public.
TEST(PypiVersion, OrderingMatchesPackaging) {
  const char* const kSorted[] = {
      "1.0.dev456",    "1.0a1",         "1.0a2.dev456",   "1.0a12.dev456",
      "1.0a12",        "1.0b1.dev456",  "1.0b2",          "1.0b2.post345.dev456",
      "1.0b2.post345", "1.0rc1.dev456", "1.0rc1",         "1.0rc2",
      "1.0rc10",       "1.0",           "1.0+abc.5",      "1.0+abc.7",
      "1.0+5",         "1.0+5.1",       "1.0.post2.dev1", "1.0.post2",
      "1.0.post10",    "1.0.post10+x",  "1.1.dev1",       "1.1a1",
      "1.1",           "1.10",          "2!0.1"};
  const size_t n = std::size(kSorted);
  for (size_t i = 0; i < n; ++i) {
    std::optional<internal::Version> a = internal::parse_version(kSorted[i]);
    ASSERT_TRUE(a) << kSorted[i];
    for (size_t j = 0; j < n; ++j) {
      std::optional<internal::Version> b = internal::parse_version(kSorted[j]);
      ASSERT_TRUE(b) << kSorted[j];
      int want = i < j ? -1 : (i > j ? 1 : 0);
      EXPECT_EQ(internal::compare(*a, *b), want) << kSorted[i] << " vs " << kSorted[j];
    }
  }
  // Spellings of one version compare equal.
  for (auto [x, y] :
       {std::pair{"1.0rc1", "1.0c1"}, std::pair{"1.0RC2", "1.0rc2"}, std::pair{"1.0.0", "1.0"},
        std::pair{"1.0-1", "1.0.post1"}, std::pair{"1.0alpha1", "1.0a1"},
        std::pair{"1.0.dev", "1.0.dev0"}, std::pair{"v1.0", "1.0"}, std::pair{"0!1.0", "1.0"}}) {
    EXPECT_EQ(internal::compare(*internal::parse_version(x), *internal::parse_version(y)), 0)
        << x << " vs " << y;
  }
  // The same through the public specifier API, as requires-python and pins use it.
  EXPECT_TRUE(*version_satisfies("1.0rc10", ">1.0rc2"));
  EXPECT_FALSE(*version_satisfies("1.0rc2", ">1.0rc10"));
  EXPECT_TRUE(*version_satisfies("1.0rc10", "<=1.0"));
  EXPECT_FALSE(*version_satisfies("1.0rc10", "<1.0"));  // PEP 440: no pre-release of V in <V
  EXPECT_TRUE(*version_satisfies("1.0.post10", ">1.0.post2"));
  EXPECT_TRUE(*version_satisfies("1.0.dev10", ">1.0.dev2"));
  EXPECT_TRUE(*version_satisfies("1.0a12", ">1.0a2"));
}

TEST(PypiSpecifier, ErrorNamesTheClause) {
  Result<bool> r = version_satisfies("3.11", ">=3.8, ~=3");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("~=3"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find(">=3.8, ~=3"), std::string::npos);
  // A malformed clause is reported even when an earlier clause already failed.
  EXPECT_FALSE(version_satisfies("2.7", ">=3.8,>>4").ok());
}

TEST(PypiSpecifier, HugeNumbersAndLongInput) {
  EXPECT_TRUE(*version_satisfies("1.99999999999999999999999", ">1.9999999999999999999999"));
  EXPECT_FALSE(version_satisfies(std::string(5000, '1'), ">=1").ok());
}

// ---------------------------------------------------------------------------------------------
// Markers

struct MarkerCase {
  const char* extras;  // comma-separated
  const char* marker;
  Expect want;
};

// Each row checked by hand against packaging 24.1 Marker(marker).evaluate(env) with env = this
// file's Linux311() markers, evaluated once per extra (or with extra="") as pip does.
const MarkerCase kMarkerCases[] = {
    {"", "python_version >= \"3.8\"", kYes},
    {"", "python_version < \"3.8\"", kNo},
    {"", "python_version < '3.12'", kYes},
    {"", "python_full_version >= \"3.11.1\"", kYes},
    {"", "python_full_version == \"3.11.*\"", kYes},
    {"", "python_version == \"3.11.*\"", kYes},
    {"", "python_version ~= \"3.10\"", kYes},
    {"", "python_version ~= \"3.12\"", kNo},
    {"", "python_version in \"3.10 3.11\"", kYes},
    {"", "python_version not in \"3.10 3.11\"", kNo},
    {"", "\"3.8\" < python_version", kYes},
    {"", "os_name == \"posix\"", kYes},
    {"", "os_name == \"nt\"", kNo},
    {"", "sys_platform == \"linux\"", kYes},
    {"", "sys_platform == \"win32\" or sys_platform == \"darwin\"", kNo},
    {"", "sys_platform != \"win32\" and platform_machine == \"x86_64\"", kYes},
    {"", "platform_machine == \"aarch64\"", kNo},
    {"", "platform_system == \"Linux\"", kYes},
    {"", "implementation_name == \"cpython\"", kYes},
    {"", "platform_python_implementation == \"CPython\"", kYes},
    {"", "platform_python_implementation != \"PyPy\"", kYes},
    {"", "implementation_version >= \"3.11\"", kYes},
    {"", "os_name == \"nt\" or os_name == \"posix\" and python_version < \"3\"", kNo},
    {"", "(os_name == \"nt\" or os_name == \"posix\") and python_version < \"3\"", kNo},
    {"", "os_name == \"posix\" or os_name == \"nt\" and python_version < \"3\"", kYes},
    {"", "((python_version >= \"3.8\"))", kYes},
    {"",
     "(sys_platform == \"linux\" and (python_version < \"3.9\" or platform_machine == \"x86_64\"))",
     kYes},
    {"", "'linux' in sys_platform", kYes},
    {"", "\"lin\" in sys_platform", kYes},
    {"", "\"x86\" not in platform_machine", kNo},
    {"", "sys_platform=='linux'and python_version>'3'", kYes},
    {"", "os.name == \"posix\"", kYes},
    {"", "sys.platform == \"linux\"", kYes},
    {"", "platform.machine == \"x86_64\"", kYes},
    {"", "python_implementation == \"CPython\"", kYes},
    {"", "extra == \"test\"", kNo},
    {"test", "extra == \"test\"", kYes},
    {"Test_Ext", "extra == \"test-ext\"", kYes},
    {"a,b", "extra == \"b\"", kYes},
    {"a,b", "extra == \"c\"", kNo},
    {"a,b", "extra == \"a\" and extra == \"b\"", kNo},
    {"", "platform_release == \"\"", kYes},
    {"", "platform_version == \"\"", kYes},
    {"", "python_version > \"3.11\"", kNo},
    {"", "python_version <= \"3.11\"", kYes},
    {"", "python_full_version < \"3.11.2\"", kNo},
    {"", "python_version == \"3.11.0\"", kYes},
    {"", "python_version === \"3.11\"", kYes},
    {"", "os_name < \"z\"", kYes},
    {"", "os_name ~= \"posix\"", kBad},
    {"", "python_version >= \"3.8\" and", kBad},
    {"", "python_version >=", kBad},
    {"", "python_version", kBad},
    {"", "(python_version >= \"3.8\"", kBad},
    {"", "python_version >= \"3.8\")", kBad},
    {"", "python_version >= 3.8", kBad},
    {"", "python_version = \"3.8\"", kBad},
    {"", "foo == \"bar\"", kBad},
    {"", "\"a\" == \"a\"", kBad},
    // packaging compares "posix" with the text "os_name" here; two variables are rejected.
    {"", "os_name == os_name", kBad},
    {"", "python_version >= \"3.8\" xor os_name == \"posix\"", kBad},
    {"", "python_version >= \"3.8\" or", kBad},
    {"", "os_name == \"posix", kBad},
    {"", "os_name notin \"posix\"", kBad},
    {"", "os_name not  in \"nt\"", kYes},
    {"", "os_name    ==    'posix'   ", kYes},
    {"", "python_version >= \"3.8\" and (os_name == \"nt\" or )", kBad},
};

std::vector<std::string> SplitExtras(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start < s.size()) {
    size_t comma = s.find(',', start);
    if (comma == std::string::npos) comma = s.size();
    out.push_back(s.substr(start, comma - start));
    start = comma + 1;
  }
  return out;
}

TEST(PypiMarker, TableMatchesPackaging) {
  TargetPython t = Linux311();
  for (const MarkerCase& c : kMarkerCases) {
    Result<bool> r = evaluate_marker(c.marker, t, SplitExtras(c.extras));
    if (c.want == kBad) {
      ASSERT_FALSE(r.ok()) << c.marker;
      EXPECT_EQ(r.status().code(), Code::kInvalidInput);
    } else {
      ASSERT_TRUE(r.ok()) << c.marker << ": " << r.status().to_string();
      EXPECT_EQ(*r, c.want == kYes) << c.marker << " extras=" << c.extras;
    }
  }
}

TEST(PypiMarker, DependencyGroupsAreTheSelectedGroups) {
  TargetPython t = Linux311();
  const char* m = "\"default\" in dependency_groups and python_version < \"3.12\"";
  EXPECT_FALSE(*evaluate_marker(m, t));
  EXPECT_TRUE(*evaluate_marker(m, t, {}, {"default"}));
  EXPECT_FALSE(*evaluate_marker(m, t, {}, {"dev"}));
  EXPECT_TRUE(*evaluate_marker("'Dev_Tools' in dependency_groups", t, {}, {"dev-tools"}));
  EXPECT_TRUE(*evaluate_marker("'dev' not in dependency_groups", t, {"dev"}, {}));
}

TEST(PypiMarker, OtherPlatforms) {
  Result<TargetPython> win = make_target("3.12", "3.12.1", "win-64", "C:/py/python.exe");
  Result<TargetPython> mac = make_target("3.8", "3.8.18", "osx-arm64", "/p", "13.0");
  ASSERT_TRUE(win.ok() && mac.ok());
  EXPECT_TRUE(*evaluate_marker("sys_platform == 'win32' and platform_machine == 'AMD64'", *win));
  EXPECT_TRUE(*evaluate_marker("os_name == 'nt' and platform_system == 'Windows'", *win));
  EXPECT_TRUE(*evaluate_marker("sys_platform == 'darwin' and platform_machine == 'arm64'", *mac));
  EXPECT_TRUE(*evaluate_marker("python_version < '3.9'", *mac));
  EXPECT_FALSE(*evaluate_marker("platform_system == 'Linux'", *mac));
}

TEST(PypiMarker, ErrorNamesMarkerAndPosition) {
  TargetPython t = Linux311();
  Result<bool> r = evaluate_marker("python_version >= '3.8' and os_name ~ 'posix'", t);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kInvalidInput);
  const std::string& m = r.status().message();
  EXPECT_NE(m.find("python_version >= '3.8' and os_name ~ 'posix'"), std::string::npos) << m;
  EXPECT_NE(m.find("position 36"), std::string::npos) << m;

  r = evaluate_marker("platform_machine == 'x86_64' and weird_var == '1'", t);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("weird_var"), std::string::npos);
  EXPECT_NE(r.status().message().find("position 33"), std::string::npos);
}

TEST(PypiMarker, EmptyMarkerIsTrue) {
  TargetPython t = Linux311();
  EXPECT_TRUE(*evaluate_marker("", t));
  EXPECT_TRUE(*evaluate_marker("  ", t));
}

TEST(PypiMarker, VersionVariablesFallBackToText) {
  TargetPython t = Linux311();
  t.markers["platform_release"] = "6.1.0-18-amd64";  // not PEP 440: text comparison
  EXPECT_TRUE(*evaluate_marker("platform_release == '6.1.0-18-amd64'", t));
  EXPECT_TRUE(*evaluate_marker("'amd64' in platform_release", t));
  t.markers["platform_release"] = "6.1.0";
  EXPECT_TRUE(*evaluate_marker("platform_release >= '6.0'", t));
  EXPECT_TRUE(*evaluate_marker("platform_release >= '6'", t));
  t.markers["python_full_version"] = "3.13.0rc1";
  EXPECT_TRUE(*evaluate_marker("python_full_version >= '3.13'", t) == false);
  EXPECT_TRUE(*evaluate_marker("python_full_version >= '3.13.0rc1'", t));
  EXPECT_TRUE(*evaluate_marker("python_full_version < '3.13'", t) == false);  // < excludes own pre
}

TEST(PypiMarker, ExtrasSetVariable) {
  TargetPython t = Linux311();
  EXPECT_TRUE(*evaluate_marker("'Socks' in extras", t, {"socks"}));
  EXPECT_FALSE(*evaluate_marker("'socks' in extras", t, {}));
  EXPECT_TRUE(*evaluate_marker("'dev' not in dependency_groups", t));
  EXPECT_FALSE(evaluate_marker("extras == 'socks'", t).ok());
}

// ---- Partial evaluation

// Decides `extra` comparisons only: == 'on' and == 'yes' hold, any other extra does not.
std::optional<bool> DecideExtra(const MarkerComparison& c) {
  if (c.variable != "extra" || (c.op != "==" && c.op != "!=")) return std::nullopt;
  bool eq = c.value == "on" || c.value == "yes";
  return c.op == "==" ? eq : !eq;
}

std::string Residual(std::string_view marker) {
  Result<std::optional<std::string>> r = partially_evaluate_marker(marker, DecideExtra);
  if (!r.ok()) return "<error: " + r.status().message() + ">";
  return *r ? **r : "<false>";
}

TEST(PypiPartialMarker, DecidesAndSimplifies) {
  // Nothing decided: verbatim, spacing and quotes included.
  EXPECT_EQ(Residual("sys_platform==\"win32\""), "sys_platform==\"win32\"");
  EXPECT_EQ(Residual(""), "");
  EXPECT_EQ(Residual("extra == 'on'"), "");
  EXPECT_EQ(Residual("extra == 'off'"), "<false>");
  EXPECT_EQ(Residual("extra != 'off'"), "");
  EXPECT_EQ(Residual("'on' == extra"), "");  // symmetric operator: reversed is offered too
  // and: true drops out, false absorbs. or: false drops out, true absorbs.
  EXPECT_EQ(Residual("sys_platform == 'win32' and extra == 'on'"), "sys_platform == 'win32'");
  EXPECT_EQ(Residual("sys_platform == 'win32' and extra == 'off'"), "<false>");
  EXPECT_EQ(Residual("sys_platform == 'win32' or extra == 'off'"), "sys_platform == 'win32'");
  EXPECT_EQ(Residual("sys_platform == 'win32' or extra == 'on'"), "");
  // uv's conflict-marker shape (docker -> pywin32 in pydantic-ai's uv.lock).
  EXPECT_EQ(Residual("sys_platform == 'win32' or (extra == 'off' and extra == 'on') or "
                     "(extra == 'other' and extra == 'yes')"),
            "sys_platform == 'win32'");
  EXPECT_EQ(Residual("(python_version < '3.11' or extra == 'off') and (os_name == 'nt' or "
                     "extra == 'off') and extra == 'yes'"),
            "python_version < '3.11' and os_name == 'nt'");
  // Survivors are re-rendered: groups parenthesised, canonical names, quotes kept safe.
  EXPECT_EQ(Residual("(os.name == 'nt' and python_version < '3.9') or platform_machine == "
                     "\"it's\" or extra == 'off'"),
            "(os_name == 'nt' and python_version < '3.9') or platform_machine == \"it's\"");
  // An untouched group left alone is the whole residue: no parentheses needed.
  EXPECT_EQ(Residual("extra == 'on' and (sys_platform == 'linux' or sys_platform == 'darwin')"),
            "sys_platform == 'linux' or sys_platform == 'darwin'");
  EXPECT_EQ(Residual("extra == 'on' and (sys_platform == 'linux' or sys_platform == 'darwin') "
                     "and python_version < '3.12'"),
            "(sys_platform == 'linux' or sys_platform == 'darwin') and python_version < '3.12'");
  // Asymmetric reversed forms and undecided comparisons stay.
  EXPECT_EQ(Residual("'3.8' < python_version and extra == 'on'"), "'3.8' < python_version");
  EXPECT_EQ(Residual("'on' in extras and extra == 'yes'"), "'on' in extras");
}

TEST(PypiPartialMarker, ResidueEvaluatesLikeTheOriginal) {
  TargetPython linux = Linux311();
  auto win = make_target("3.11", "", "win-64", "");
  ASSERT_TRUE(win.ok());
  const char* m = "sys_platform == 'win32' or (extra == 'off' and python_version >= '3')";
  std::string rest = Residual(m);
  EXPECT_EQ(rest, "sys_platform == 'win32'");
  EXPECT_FALSE(*evaluate_marker(rest, linux));
  EXPECT_TRUE(*evaluate_marker(rest, *win));
}

TEST(PypiPartialMarker, MalformedMarkerIsAnError) {
  auto r = partially_evaluate_marker("extra == 'on' and", DecideExtra);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kInvalidInput);
  EXPECT_FALSE(partially_evaluate_marker("weird == 'x'", DecideExtra).ok());
}

}  // namespace
}  // namespace mat::pypi
