// fetch/test_http_server.h: a tiny scripted HTTP/1.1 server on 127.0.0.1, for tests only.
// Header-only on purpose: fetch/*.cc is globbed into mat_fetch, and this must not ship there.
//
// One accept thread plus one thread per connection; keep-alive is supported, so libcurl's
// connection reuse is exercised. Each path gets a handler that sees the 1-based hit number of
// that path (and, with route_head(), the request head) and returns a Reply: bytes, an error
// status, a truncated body, a slow body, a stall. Unknown paths get 404. range_reply() answers
// a Range/If-Range request as a server with byte ranges does.
//
// Thread safety: route() before requests arrive; hits()/last_request() from any thread.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace mat::fetch::testserver {

struct Reply {
  int status = 200;
  std::string body;
  std::vector<std::string> headers;  // extra header lines, e.g. "Retry-After: 0"
  // If >= 0: send only this many body bytes, then close the connection. Content-Length still
  // announces body.size(), so the client sees a body cut short.
  int64_t send_bytes = -1;
  // If > 0: send the body in 1 KiB chunks with this pause between them (a slow server). The
  // pause is cut short when the server stops.
  int chunk_delay_ms = 0;
  // With send_bytes >= 0: after those bytes, keep the connection open and silent (a stall)
  // until the client closes it or the server stops.
  bool hold_open = false;
};

// The value of header `name` (case-insensitive) in a request head, or "".
inline std::string header_of(const std::string& head, std::string_view name) {
  size_t pos = 0;
  while ((pos = head.find("\r\n", pos)) != std::string::npos) {
    pos += 2;
    if (head.size() < pos + name.size() + 1 || head[pos + name.size()] != ':') continue;
    bool match = true;
    for (size_t i = 0; i < name.size() && match; ++i) {
      match = std::tolower(static_cast<unsigned char>(head[pos + i])) ==
              std::tolower(static_cast<unsigned char>(name[i]));
    }
    if (!match) continue;
    size_t start = pos + name.size() + 1;
    while (start < head.size() && head[start] == ' ') ++start;
    return head.substr(start, head.find("\r\n", start) - start);
  }
  return "";
}

// A server that honours `Range: bytes=N-` unless `If-Range` names another validator than
// `etag` / `last_modified` (either may be ""): 206 with Content-Range, else 200 with the whole
// body. Both answers carry the validators and "Accept-Ranges: bytes".
inline Reply range_reply(const std::string& body, const std::string& head, const std::string& etag,
                         const std::string& last_modified = "") {
  Reply r{200, body, {"Accept-Ranges: bytes"}, -1, 0, false};
  if (!etag.empty()) r.headers.push_back("ETag: " + etag);
  if (!last_modified.empty()) r.headers.push_back("Last-Modified: " + last_modified);
  const std::string range = header_of(head, "Range");
  const std::string if_range = header_of(head, "If-Range");
  if (range.rfind("bytes=", 0) != 0 || range.back() != '-') return r;
  if (!if_range.empty() && if_range != etag && if_range != last_modified) return r;
  const size_t from = std::stoul(range.substr(6));
  if (from >= body.size()) return Reply{416, "", {}, -1, 0, false};
  r.status = 206;
  r.headers.push_back("Content-Range: bytes " + std::to_string(from) + "-" +
                      std::to_string(body.size() - 1) + "/" + std::to_string(body.size()));
  r.body = body.substr(from);
  return r;
}

class TestHttpServer {
 public:
  using Handler = std::function<Reply(int hit)>;
  using HeadHandler = std::function<Reply(int hit, const std::string& head)>;

  TestHttpServer() {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    ok_ = listen_fd_ >= 0 &&
          ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
          ::listen(listen_fd_, 128) == 0;
    socklen_t len = sizeof(addr);
    if (ok_ && ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
      port_ = ntohs(addr.sin_port);
    }
    if (ok_) acceptor_ = std::thread([this] { accept_loop(); });
  }

  ~TestHttpServer() {
    stop_ = true;
    if (acceptor_.joinable()) acceptor_.join();
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (int fd : open_fds_) ::shutdown(fd, SHUT_RDWR);  // unblocks recv() in workers
    }
    for (std::thread& t : workers_) t.join();  // acceptor_ has stopped adding to workers_
    if (listen_fd_ >= 0) ::close(listen_fd_);
  }

  TestHttpServer(const TestHttpServer&) = delete;
  TestHttpServer& operator=(const TestHttpServer&) = delete;

  bool ok() const { return ok_; }
  int port() const { return port_; }
  std::string url(std::string_view path) const {
    return "http://127.0.0.1:" + std::to_string(port_) + std::string(path);
  }
  // Same, with credentials in the URL.
  std::string url_with_auth(std::string_view userinfo, std::string_view path) const {
    return "http://" + std::string(userinfo) + "@127.0.0.1:" + std::to_string(port_) +
           std::string(path);
  }

  void route(const std::string& path, Handler h) {
    route_head(path, [h = std::move(h)](int hit, const std::string&) { return h(hit); });
  }
  // Same, and the handler also sees the request head (request line and headers).
  void route_head(const std::string& path, HeadHandler h) {
    std::lock_guard<std::mutex> lock(mu_);
    routes_[path] = std::move(h);
  }
  // The most connections that were open at the same time.
  int max_open_connections() const {
    std::lock_guard<std::mutex> lock(mu_);
    return max_open_;
  }
  // Every request head for `path`, in arrival order.
  std::vector<std::string> requests(const std::string& path) const {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = all_requests_.find(path);
    return it == all_requests_.end() ? std::vector<std::string>() : it->second;
  }
  int hits(const std::string& path) const {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = hits_.find(path);
    return it == hits_.end() ? 0 : it->second;
  }
  int total_hits() const {
    std::lock_guard<std::mutex> lock(mu_);
    int n = 0;
    for (const auto& [path, count] : hits_) n += count;
    return n;
  }
  // The request head (request line and headers) of the latest request for `path`.
  std::string last_request(const std::string& path) const {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = last_request_.find(path);
    return it == last_request_.end() ? std::string() : it->second;
  }

 private:
  void accept_loop() {
    while (!stop_) {
      pollfd p{listen_fd_, POLLIN, 0};
      if (::poll(&p, 1, 20) <= 0) continue;
      const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      // Without this, a keep-alive response written as head + body waits ~40 ms for the
      // client's delayed ACK (Nagle), which made 200 small requests take a second.
      const int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      std::lock_guard<std::mutex> lock(mu_);
      open_fds_.insert(fd);
      max_open_ = std::max(max_open_, static_cast<int>(open_fds_.size()));
      workers_.emplace_back([this, fd] { serve(fd); });
    }
  }

  void serve(int fd) {
    std::string buf;
    char chunk[16384];
    bool keep_open = true;
    while (keep_open && !stop_) {
      size_t head_end;
      while ((head_end = buf.find("\r\n\r\n")) == std::string::npos) {
        const ssize_t n = ::recv(fd, chunk, sizeof(chunk), 0);
        if (n <= 0) {
          keep_open = false;
          break;
        }
        buf.append(chunk, static_cast<size_t>(n));
      }
      if (!keep_open) break;
      const std::string head = buf.substr(0, head_end);
      buf.erase(0, head_end + 4);  // GET requests carry no body
      keep_open = respond(fd, head);
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      open_fds_.erase(fd);
    }
    ::close(fd);
  }

  // Returns false if the connection must be closed.
  bool respond(int fd, const std::string& head) {
    // "GET /path HTTP/1.1"
    const size_t sp1 = head.find(' ');
    const size_t sp2 = head.find(' ', sp1 + 1);
    const std::string path = head.substr(sp1 + 1, sp2 - sp1 - 1);
    HeadHandler handler;
    int hit = 0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      hit = ++hits_[path];
      last_request_[path] = head;
      all_requests_[path].push_back(head);
      auto it = routes_.find(path);
      if (it != routes_.end()) handler = it->second;
    }
    Reply r = handler ? handler(hit, head) : Reply{404, "no such path\n", {}, -1, 0, false};
    std::string out = "HTTP/1.1 " + std::to_string(r.status) + " " + reason(r.status) + "\r\n";
    out += "Content-Length: " + std::to_string(r.body.size()) + "\r\n";
    for (const std::string& h : r.headers) out += h + "\r\n";
    out += "\r\n";
    if (!send_all(fd, out)) return false;

    const size_t n = r.send_bytes >= 0 ? std::min(r.body.size(), static_cast<size_t>(r.send_bytes))
                                       : r.body.size();
    std::string_view body(r.body.data(), n);
    if (r.chunk_delay_ms <= 0) {
      if (!send_all(fd, body)) return false;
    } else {
      for (size_t off = 0; off < body.size(); off += 1024) {
        if (!send_all(fd, body.substr(off, 1024))) return false;
        for (int waited = 0; waited < r.chunk_delay_ms && !stop_; waited += 5) {
          std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
        if (stop_) return false;
      }
    }
    if (r.send_bytes >= 0 && r.hold_open) {
      // Silent until the client gives up (recv sees its FIN or reset) or the server stops.
      char c;
      while (!stop_) {
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, 20) > 0 && ::recv(fd, &c, 1, MSG_PEEK) <= 0) break;
      }
    }
    return r.send_bytes < 0;
  }

  static bool send_all(int fd, std::string_view data) {
    while (!data.empty()) {
      const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      data.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }

  static const char* reason(int status) {
    switch (status) {
      case 200:
        return "OK";
      case 206:
        return "Partial Content";
      case 302:
        return "Found";
      case 401:
        return "Unauthorized";
      case 403:
        return "Forbidden";
      case 404:
        return "Not Found";
      case 416:
        return "Range Not Satisfiable";
      case 429:
        return "Too Many Requests";
      case 500:
        return "Internal Server Error";
      case 503:
        return "Service Unavailable";
      default:
        return "Status";
    }
  }

  int listen_fd_ = -1;
  int port_ = 0;
  bool ok_ = false;
  std::atomic<bool> stop_{false};
  std::thread acceptor_;

  mutable std::mutex mu_;
  std::map<std::string, HeadHandler> routes_;        // GUARDED_BY(mu_)
  std::map<std::string, int> hits_;                  // GUARDED_BY(mu_)
  std::map<std::string, std::string> last_request_;  // GUARDED_BY(mu_)
  std::map<std::string, std::vector<std::string>> all_requests_;  // GUARDED_BY(mu_)
  std::set<int> open_fds_;                           // GUARDED_BY(mu_)
  int max_open_ = 0;                                 // GUARDED_BY(mu_)
  std::vector<std::thread> workers_;                 // GUARDED_BY(mu_) while acceptor_ runs
};

}  // namespace mat::fetch::testserver
