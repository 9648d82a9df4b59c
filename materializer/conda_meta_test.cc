// conda-meta records: the text written without a JSON document (prefix_record_text) is byte
// for byte the document's pretty dump.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "materializer/base/json.h"
#include "materializer/link_internal.h"
#include "materializer/lock.h"

namespace mat::link_internal {
namespace {

using nlohmann::json;

std::string via_document(const RecordInput& in) {
  return dump_json(build_prefix_record(in), 2, /*ensure_ascii=*/true) + "\n";
}

TEST(CondaMetaRecord, TextIsTheDocumentsDump) {
  PackageRef ref;
  ref.url = "https://user:secret@conda.example.org/ch/linux-64/pkg-1.0-0.conda";
  ref.channel = "https://conda.example.org/ch";
  ref.file_name = "pkg-1.0-0.conda";
  LinkInput li{&ref, "/cache/trees/k/pkg", "/cache/archives/k.conda", 1234};
  PackagePlan plan;
  plan.name = "pkg";
  plan.version = "1.0";
  plan.build = "0";
  plan.index = json::parse(R"({"name": "pkg", "version": "1.0", "build": "0", "build_number": 0,
      "depends": ["python >=3.8", "libλ"], "license": "MIT \"quoted\"", "timestamp": 1700000000123,
      "nested": {"b": [1, 2, {"c": null}], "a": {}}, "empty": [], "noarch": "python",
      "ünïcode": "❤ \u0001 tab\t"})");
  PathEntry file{.path = "bin/tool", .target = "bin/tool", .sha256 = std::string(64, 'a'),
                 .size = 18};
  PathEntry text{.path = "etc/conf", .target = "etc/conf", .file_mode = FileMode::kText,
                 .placeholder = "/opt/anaconda1anaconda2anaconda3",
                 .sha256 = std::string(64, 'b'), .size = 7};
  PathEntry binary{.path = "lib/l.so", .target = "lib/l.so", .file_mode = FileMode::kBinary,
                   .placeholder = "/home/build/_h_env_placehold", .sha256 = std::string(64, 'c'),
                   .size = 4096};
  PathEntry link{.path = "lib/l.so.1", .target = "lib/l.so.1", .type = PathType::kSoftlink};
  PathEntry dir{.path = "share/empty", .target = "share/empty", .type = PathType::kDirectory};
  PathEntry legacy{.path = "share/\"odd\" λ\\name", .target = "share/\"odd\" λ\\name"};
  PathEntry entry_point{.path = "bin/run", .target = "bin/run", .type = PathType::kEntryPoint,
                        .script = "#!/prefix/bin/python\nimport sys\n"};
  plan.paths = {file, text, binary, link, dir, legacy, entry_point};
  std::vector<std::string> in_prefix = {"", std::string(64, 'd'), "", "", "", "", ""};
  for (LinkMode mode : {LinkMode::kHardlink, LinkMode::kCopy}) {
    RecordInput in{&li, &plan, &in_prefix, "md5md5", std::string(64, 'e'), 1234, mode};
    EXPECT_EQ(prefix_record_text(in), via_document(in));
  }
  // No paths; no lock entry; an index.json without depends/constrains.
  PackagePlan bare;
  bare.index = json::parse(R"({"name": "bare"})");
  std::vector<std::string> none;
  LinkInput no_ref{nullptr, "/t", "/a", -1};
  RecordInput in{&no_ref, &bare, &none, "", "", -1, LinkMode::kHardlink};
  EXPECT_EQ(prefix_record_text(in), via_document(in));
}

// Invalid UTF-8 (in a field no check covers) never throws: written as U+FFFD, as dump_json
// writes every other JSON document.
TEST(CondaMetaRecord, InvalidUtf8IsReplacedNotThrown) {
  PackagePlan plan;
  plan.index = json::parse(R"({"name": "bad"})");
  plan.index["license"] = std::string("MIT \xff\xfe");
  PathEntry odd{.path = "share/\xc3", .target = "share/\xc3"};
  plan.paths = {odd};
  std::vector<std::string> in_prefix = {""};
  LinkInput li{nullptr, "/t", "/a", -1};
  RecordInput in{&li, &plan, &in_prefix, "", "", -1, LinkMode::kHardlink};
  std::string text;
  ASSERT_NO_THROW(text = prefix_record_text(in));
  EXPECT_EQ(text, via_document(in));
  EXPECT_NE(text.find("MIT \\ufffd\\ufffd"), std::string::npos) << text;
}

}  // namespace
}  // namespace mat::link_internal
