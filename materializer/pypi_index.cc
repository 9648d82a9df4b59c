// Package-index resolution: pinned name==version + allowed hashes -> one file URL.
//
// Three steps, each over every package at once:
//   1. fetch: one page per (project, index) plus each find-links page, all submitted to one
//      Fetcher, so 300 requirements cost about one round trip of latency, not 300;
//      find-links directories are listed with opendir() meanwhile.
//   2. parse: every page in a TBB loop (PEP 691 JSON with nlohmann_json, PEP 503 HTML with
//      libxml2); a large project's page (thousands of files) takes tens of milliseconds.
//   3. choose: per package, in a TBB loop (it may hash local files): keep files of this project
//      and version whose sha256 is allowed, whose requires-python admits the target, and
//      (wheels) whose tags fit; pick_wheel() picks the best.
//
// Which hash vouches for a file, in order (the rule for pages without hashes):
//   a. the page's sha256 (#sha256= fragment, or "hashes": {"sha256"}) — it must be allowed, and
//      must equal the lock's own hash for that file name when the lock lists one;
//   b. else the lock's per-file hash (poetry.lock names files with their hashes), if allowed;
//   c. else, for a local file (file:// index or find-links directory), its sha256 computed
//      here: reading a local file is the same check the download would make;
//   d. else the file is refused ("no sha256 on the page"): we never pick a remote file we
//      cannot tie to an allowed hash before downloading it.
// The allowed set is ref.allowed_sha256 plus the lock's per-file hashes.
//
// Yanked files (PEP 592): every ref here is an exact pin, and pip installs a yanked file for an
// exact pin when nothing else fits, so yanked files are kept but chosen only when no
// non-yanked wheel fits.
#include "materializer/pypi_index.h"

#include <dirent.h>
#include <sys/stat.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <set>
#include <string_view>

#include "fetch/fetcher.h"
#include "materializer/base/fs.h"
#include "materializer/base/hash.h"
#include "materializer/base/url.h"
#include "materializer/local_files.h"
#include "materializer/pypi_index_internal.h"

namespace mat::pypi {
namespace {

using internal::IndexFile;

constexpr const char* kAcceptHeader =
    "Accept: application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, "
    "text/html;q=0.01";
// A page larger than this is refused (kCorrupt) rather than held in memory: PyPI's largest
// project pages (thousands of files) are ~20 MB of HTML.
constexpr int64_t kMaxPageBytes = int64_t{256} << 20;
// How many refused files a not-found message lists by name.
constexpr size_t kMaxFilesListed = 10;

// One page to fetch (or directory already listed) and what came of it.
struct Page {
  std::string url;            // as requested; may carry credentials
  std::string label;          // redacted, for messages
  int index = -1;             // position in IndexOptions::index_urls; -1 for find-links
  bool fetched = false;       // false: a directory listing or a skipped request (status says which)
  bool offline_skip = false;  // not requested: --offline and not a file:// URL
  // Written on the fetch thread, read after Fetcher::finish() (which orders the two).
  Status status;
  long http_status = 0;
  std::string body;
  std::string content_type;
  // Filled by the parse step.
  std::vector<IndexFile> files;
};

// Collects a page body in memory.
class StringSink final : public fetch::Sink {
 public:
  explicit StringSink(std::string* out) : out_(out) {}
  Status reset() override {
    out_->clear();
    return Status::Ok();
  }
  Status write(const char* data, size_t len) override {
    if (static_cast<int64_t>(out_->size() + len) > kMaxPageBytes) {
      return Corrupt("index page larger than " + std::to_string(kMaxPageBytes >> 20) + " MiB");
    }
    out_->append(data, len);
    return Status::Ok();
  }
  Status finish() override { return Status::Ok(); }
  void abort() override { out_->clear(); }

 private:
  std::string* out_;  // owned by the Page, which outlives the Fetcher
};

std::string strip_trailing_slashes(std::string s) {
  while (s.size() > 1 && s.back() == '/') s.pop_back();
  return s;
}

// A find-links entry may be a URL or a plain local path.
std::string as_url(const std::string& s) {
  if (s.starts_with("/")) return path_to_file_url(s);
  return s;
}

// Lists a find-links directory: every regular file, sorted by name so the outcome never
// depends on readdir order.
Status list_directory(const std::string& path, std::vector<IndexFile>& out) {
  DIR* dir = ::opendir(path.c_str());
  if (dir == nullptr) return ErrnoStatus(path + ": cannot list find-links directory", errno);
  std::unique_ptr<DIR, int (*)(DIR*)> closer(dir, ::closedir);
  while (const dirent* e = ::readdir(dir)) {
    if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0) continue;
    struct stat st {};
    if (::fstatat(::dirfd(dir), e->d_name, &st, 0) != 0 || !S_ISREG(st.st_mode)) continue;
    IndexFile f;
    f.file_name = e->d_name;
    f.url = path_to_file_url(path + "/" + e->d_name);
    f.size = static_cast<int64_t>(st.st_size);
    out.push_back(std::move(f));
  }
  std::sort(out.begin(), out.end(),
            [](const IndexFile& a, const IndexFile& b) { return a.file_name < b.file_name; });
  return Status::Ok();
}

// The pages of one run: per normalised project name, its page on each index; plus find-links.
struct PagePlan {
  std::vector<Page> pages;
  std::map<std::string, std::vector<size_t>> project_pages;  // normalised name -> page ids
  std::vector<size_t> find_link_pages;
  std::vector<bool> index_reachable;  // per index: false if a file:// root does not exist
};

PagePlan plan_pages(const std::vector<PackageRef>& refs, const IndexOptions& opts) {
  PagePlan plan;
  std::vector<std::string> roots;
  for (const std::string& u : opts.index_urls) {
    roots.push_back(strip_trailing_slashes(u));
    plan.index_reachable.push_back(!is_file_url(u) || is_dir(file_url_to_path(roots.back())));
  }
  for (const PackageRef& ref : refs) {
    if (!ref.needs_index) continue;
    const std::string name = normalize_name(ref.name);
    auto [it, fresh] = plan.project_pages.try_emplace(name);
    if (!fresh) continue;
    for (size_t k = 0; k < roots.size(); ++k) {
      Page p;
      p.index = static_cast<int>(k);
      p.url = roots[k] + "/" + name + "/";
      p.label = shown_url(p.url);
      // A static file:// index keeps each project page as <dir>/index.html.
      if (is_file_url(p.url)) p.url += "index.html";
      if (!plan.index_reachable[k]) {
        p.status = NotFound(shown_url(roots[k]) + ": index directory does not exist");
      } else if (opts.offline && !is_file_url(p.url)) {
        p.status = InvalidInput(p.label + ": offline: only file:// indexes are read");
        p.offline_skip = true;
      } else {
        p.fetched = true;
      }
      it->second.push_back(plan.pages.size());
      plan.pages.push_back(std::move(p));
    }
  }
  for (const std::string& entry : opts.find_links) {
    Page p;
    p.url = as_url(entry);
    p.label = shown_url(p.url);
    const std::string local = is_file_url(p.url) ? file_url_to_path(p.url) : "";
    if (!local.empty() && is_dir(local)) {
      p.status = list_directory(local, p.files);
    } else if (opts.offline && !is_file_url(p.url)) {
      p.status = InvalidInput(p.label + ": offline: only local find-links are read");
      p.offline_skip = true;
    } else {
      p.fetched = true;
    }
    plan.find_link_pages.push_back(plan.pages.size());
    plan.pages.push_back(std::move(p));
  }
  return plan;
}

Status fetch_pages(std::vector<Page>& pages, const IndexOptions& opts) {
  fetch::Options fo;
  fo.max_parallel = std::max(1, opts.max_parallel);
  fo.max_retries = opts.max_retries;
  fo.max_host_connections = opts.max_host_connections;
  fo.stall_timeout_s = opts.stall_timeout_s;
  fo.ca_bundle = opts.ca_bundle;
  fo.offline = opts.offline;
  auto on_done = [&pages](fetch::FetchResult&& r) {
    Page& p = pages[r.id];  // one id per page; the vector is not resized meanwhile
    p.status = std::move(r.status);
    p.http_status = r.http_status;
    p.content_type = std::move(r.content_type);
  };
  MAT_ASSIGN_OR_RETURN(std::unique_ptr<fetch::Fetcher> fetcher,
                       fetch::Fetcher::create(std::move(fo), on_done));
  for (size_t i = 0; i < pages.size(); ++i) {
    if (!pages[i].fetched) continue;
    fetch::Request req;
    req.url = pages[i].url;
    req.sink = std::make_unique<StringSink>(&pages[i].body);
    req.want_sha256 = false;
    req.id = i;
    req.headers = {kAcceptHeader};
    fetcher->submit(std::move(req));
  }
  fetcher->finish();
  return Status::Ok();
}

void parse_pages(std::vector<Page>& pages) {
  internal::init_html_parser();  // before the parallel loop: libxml2's rule for threads
  tbb::parallel_for(size_t{0}, pages.size(), [&pages](size_t i) {
    Page& p = pages[i];
    if (!p.fetched || !p.status.ok()) return;
    Result<std::vector<IndexFile>> files =
        internal::parse_simple_page(p.body, p.content_type, p.url);
    if (files.ok()) {
      p.files = std::move(files).value();
    } else {
      p.status = files.status().with_context(p.label);
    }
    std::string().swap(p.body);  // pages can be megabytes; drop them once parsed
  });
}

// Did this page's index answer (with the page, or with "no such project")?
bool answered(const Page& p, const PagePlan& plan) {
  if (p.status.ok()) return true;
  if (p.status.code() != Code::kNotFound) return false;
  return p.index >= 0 && plan.index_reachable[static_cast<size_t>(p.index)];
}

// ---- choosing a file for one ref ----

struct Choice {
  std::vector<WheelCandidate> wheels, yanked_wheels, sdists, yanked_sdists;
  std::vector<std::pair<std::string, std::string>> refused;  // file name, reason
  std::set<std::string> refused_names;
  int64_t other_versions = 0;

  void refuse(const std::string& file, std::string reason) {
    if (refused_names.insert(file).second) refused.emplace_back(file, std::move(reason));
  }
};

class RefResolver {
 public:
  RefResolver(PackageRef& ref, const TargetPython& target, const LocalFiles* local_files)
      : ref_(ref), target_(target), local_files_(local_files), name_(normalize_name(ref.name)) {
    for (const std::string& h : ref.allowed_sha256) allowed_.insert(internal::ascii_lower(h));
    for (const auto* list : {&ref.wheels, &ref.sdists}) {
      for (const WheelCandidate& c : *list) {
        if (c.sha256.empty() || c.file_name.empty()) continue;
        lock_hashes_[c.file_name] = internal::ascii_lower(c.sha256);
        allowed_.insert(internal::ascii_lower(c.sha256));
      }
    }
  }

  bool has_allowed_hashes() const { return !allowed_.empty(); }

  void consider(const IndexFile& f) {
    const std::optional<WheelName> wheel = parse_wheel_name(f.file_name);
    bool sdist = false;
    if (wheel) {
      if (normalize_name(wheel->name) != name_) return;  // another project (find-links)
      if (!internal::same_version(wheel->version, ref_.version)) {
        ++choice_.other_versions;
        return;
      }
    } else {
      sdist = internal::is_sdist_of(f.file_name, name_, ref_.version);
      if (!sdist) {
        if (is_other_version_sdist(f.file_name)) ++choice_.other_versions;
        return;
      }
    }
    std::string sha256;
    std::string why;
    std::string url = f.url;
    if (url_scheme_is_file(url)) {
      // A local file named by a page (a file:// index, a find-links folder, or a remote page
      // linking file://): only inside the allowed folders, and read as resolved.
      if (!is_file_url(url)) return choice_.refuse(f.file_name, "malformed file: URL");
      if (local_files_ != nullptr) {
        Result<std::string> allowed = local_files_->check_url(url);
        if (!allowed.ok()) {
          return choice_.refuse(f.file_name, "file:// URL outside the allowed folders "
                                             "(--allow-file-urls DIR)");
        }
        url = *allowed;
      }
    }
    if (!vouch(f, sha256, why)) return choice_.refuse(f.file_name, why);
    if (!f.requires_python.empty() && !python_fits(f.requires_python)) {
      return choice_.refuse(f.file_name, "requires-python " + f.requires_python);
    }
    if (wheel && !wheel_rank(*wheel, target_)) {
      return choice_.refuse(f.file_name, "incompatible tags");
    }
    int64_t size = f.size;
    if (sha256.empty()) {  // rule c: a local file without a page hash
      if (!hash_local(url, sha256, size, why)) return choice_.refuse(f.file_name, why);
    }
    WheelCandidate c{url, f.file_name, sha256, size};
    if (wheel) {
      (f.yanked ? choice_.yanked_wheels : choice_.wheels).push_back(std::move(c));
    } else {
      (f.yanked ? choice_.yanked_sdists : choice_.sdists).push_back(std::move(c));
    }
  }

  // Fills the ref, or returns why nothing fits.
  Status finish(const std::vector<const Page*>& searched) {
    for (const auto* list : {&choice_.wheels, &choice_.yanked_wheels}) {
      if (std::optional<WheelCandidate> best = pick_wheel(*list, target_)) {
        ref_.url = best->url;
        ref_.file_name = best->file_name;
        ref_.sha256 = best->sha256;
        ref_.size = best->size;
        return Status::Ok();
      }
    }
    if (!choice_.sdists.empty() || !choice_.yanked_sdists.empty()) {
      ref_.sdists = !choice_.sdists.empty() ? choice_.sdists : choice_.yanked_sdists;
      return Status::Ok();  // the driver reports sdist-only packages as out of scope
    }
    return not_found(searched);
  }

 private:
  // Rules a, b and the refusal half of d (see the top of this file). On success `sha256` is
  // the vouching hash, or "" when only hashing the local file can tell (rule c).
  bool vouch(const IndexFile& f, std::string& sha256, std::string& why) const {
    auto lock = lock_hashes_.find(f.file_name);
    if (!f.sha256.empty()) {
      if (lock != lock_hashes_.end() && lock->second != f.sha256) {
        why = "sha256 on the page differs from the lock's";
        return false;
      }
      if (!allowed_.contains(f.sha256)) {
        why = "hash not allowed";
        return false;
      }
      sha256 = f.sha256;
      return true;
    }
    if (lock != lock_hashes_.end()) {
      sha256 = lock->second;
      return true;
    }
    if (is_file_url(f.url)) return true;
    why = "no sha256 on the page";
    return false;
  }

  bool hash_local(const std::string& url, std::string& sha256, int64_t& size,
                  std::string& why) const {
    const std::string path = file_url_to_path(url);
    Result<std::string> digest = hash_file(path, HashKind::kSha256);
    if (!digest.ok()) {
      why = "unreadable: " + digest.status().message();
      return false;
    }
    if (!allowed_.contains(*digest)) {
      why = "hash not allowed";
      return false;
    }
    struct stat st {};
    if (size < 0 && ::stat(path.c_str(), &st) == 0) size = static_cast<int64_t>(st.st_size);
    sha256 = std::move(digest).value();
    return true;
  }

  // pip ignores a requires-python it cannot parse; so do we.
  bool python_fits(const std::string& spec) const {
    const std::string& v = target_.full_version.empty() ? target_.version : target_.full_version;
    Result<bool> fits = version_satisfies(v, spec);
    return !fits.ok() || *fits;
  }

  // "<this project>-<some version>.tar.gz": counted, not listed, in messages.
  bool is_other_version_sdist(const std::string& file_name) const {
    const std::string n = internal::ascii_lower(file_name);
    const size_t dash = n.rfind('-');
    return dash != std::string::npos && normalize_name(n.substr(0, dash)) == name_ &&
           (n.ends_with(".tar.gz") || n.ends_with(".zip"));
  }

  Status not_found(const std::vector<const Page*>& searched) const {
    std::string msg = ref_.name + "==" + ref_.version + ": no file with an allowed hash fits ";
    for (size_t i = 0; i < std::min<size_t>(3, target_.tags.size()); ++i) {
      msg += (i ? ", " : "") + target_.tags[i];
    }
    if (target_.tags.size() > 3) msg += "...";
    msg += "; files seen: ";
    const bool any_page =
        std::any_of(searched.begin(), searched.end(), [](const Page* p) { return p->status.ok(); });
    if (choice_.refused.empty()) msg += any_page ? "none of this version" : "none (no page found)";
    for (size_t i = 0; i < std::min(kMaxFilesListed, choice_.refused.size()); ++i) {
      msg += (i ? ", " : "") + choice_.refused[i].first + " (" + choice_.refused[i].second + ")";
    }
    if (choice_.refused.size() > kMaxFilesListed) {
      msg += ", ... (" + std::to_string(choice_.refused.size() - kMaxFilesListed) + " more)";
    }
    if (choice_.other_versions > 0) {
      msg += "; other versions: " + std::to_string(choice_.other_versions) +
             (choice_.other_versions == 1 ? " file" : " files") + " ignored";
    }
    // Which pages were looked at and how they answered: the evidence for "not on this index".
    Status first_failure;
    std::string pages;
    for (const Page* p : searched) {
      if (!pages.empty()) pages += ", ";
      pages += p->label;
      if (p->offline_skip) {
        pages += " (skipped: offline)";
      } else if (p->status.code() == Code::kNotFound && p->http_status != 0) {
        pages += " (HTTP " + std::to_string(p->http_status) + ")";
      } else if (!p->status.ok()) {
        pages += " (" + std::string(code_name(p->status.code())) + ")";
        if (p->status.code() != Code::kNotFound && first_failure.ok()) first_failure = p->status;
      }
    }
    if (!pages.empty()) msg += "; searched " + pages;
    if (!first_failure.ok()) {
      // An index that failed might have had the file: retrying may help, so the code is the
      // failure's, not kNotFound.
      return Status(first_failure.code(), msg + "; " + first_failure.message());
    }
    return NotFound(msg + "; check the version and hashes in the lock, or the index URLs");
  }

  PackageRef& ref_;
  const TargetPython& target_;
  const LocalFiles* local_files_;
  const std::string name_;
  std::set<std::string> allowed_;
  std::map<std::string, std::string> lock_hashes_;  // lock-listed file name -> sha256
  Choice choice_;
};

Status resolve_one(PackageRef& ref, const TargetPython& target, const PagePlan& plan,
                   const LocalFiles* local_files) {
  const std::string subject = ref.name + "==" + ref.version;
  if (ref.version.empty()) return InvalidInput(ref.name + ": no pinned version to look up");
  RefResolver r(ref, target, local_files);
  if (!r.has_allowed_hashes()) {
    return InvalidInput(subject +
                        ": the lock lists no hash for it, so no file can be verified; "
                        "re-lock with hashes (pip-compile --generate-hashes)");
  }
  std::vector<const Page*> searched;
  auto it = plan.project_pages.find(normalize_name(ref.name));
  if (it != plan.project_pages.end()) {
    for (size_t id : it->second) searched.push_back(&plan.pages[id]);
  }
  for (size_t id : plan.find_link_pages) searched.push_back(&plan.pages[id]);
  for (const Page* p : searched) {
    for (const IndexFile& f : p->files) r.consider(f);
  }
  return r.finish(searched);
}

// The first failure among pages whose index did not answer, for the run-wide error.
Status unreachable_error(const PagePlan& plan) {
  for (const Page& p : plan.pages) {
    if (!p.status.ok()) return p.status;
  }
  return Internal("no index answered, yet no page failed");
}

}  // namespace

Result<std::vector<Status>> resolve_on_index(std::vector<PackageRef>& refs,
                                             const TargetPython& target, const IndexOptions& opts) {
  std::vector<Status> statuses(refs.size());
  const bool any =
      std::any_of(refs.begin(), refs.end(), [](const PackageRef& r) { return r.needs_index; });
  if (!any) return statuses;
  if (opts.index_urls.empty() && opts.find_links.empty()) {
    return InvalidInput(
        "packages must be looked up on a package index, but none is set; "
        "pass --index-url or --find-links");
  }

  PagePlan plan = plan_pages(refs, opts);
  MAT_RETURN_IF_ERROR(fetch_pages(plan.pages, opts));
  parse_pages(plan.pages);

  // Run-wide failure: not one index answered and find-links gave no file, so every package
  // would fail the same way; one message says it better than N.
  const bool reached = std::any_of(plan.pages.begin(), plan.pages.end(), [&plan](const Page& p) {
    return p.index >= 0 ? answered(p, plan) : p.status.ok();
  });
  if (!reached) {
    return unreachable_error(plan).with_context("no package index could be reached");
  }

  tbb::parallel_for(size_t{0}, refs.size(), [&](size_t i) {
    if (refs[i].needs_index) statuses[i] = resolve_one(refs[i], target, plan, opts.local_files);
  });
  return statuses;
}

}  // namespace mat::pypi
