// fetch/curl_handle.h: RAII owners for libcurl handles. Private to fetch/ (never included by a
// public header; STYLE.md §2, §7).
//
// Each owner is a std::unique_ptr with a deleter struct, so it is move-only and a null handle is
// a valid "empty" state. Raw pointers never leave fetch/.
//
// Thread safety: a handle is used by one thread at a time (libcurl's rule); in practice every
// handle lives on the fetch thread.
#pragma once

#include <curl/curl.h>

#include <memory>

namespace mat::fetch {

struct CurlEasyDeleter {
  void operator()(CURL* h) const { curl_easy_cleanup(h); }
};
// An easy handle. It must be removed from any multi handle before it is destroyed.
using CurlEasy = std::unique_ptr<CURL, CurlEasyDeleter>;

struct CurlMultiDeleter {
  void operator()(CURLM* m) const { curl_multi_cleanup(m); }
};
// A multi handle. Destroy it only after every easy handle has been removed from it.
using CurlMulti = std::unique_ptr<CURLM, CurlMultiDeleter>;

struct CurlSlistDeleter {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};
// A header list. It must outlive every easy handle that was given it with CURLOPT_HTTPHEADER.
using CurlSlist = std::unique_ptr<curl_slist, CurlSlistDeleter>;

struct CurlUrlDeleter {
  void operator()(CURLU* u) const { curl_url_cleanup(u); }
};
// A parsed URL (libcurl's URL API), for resolving redirect targets.
using CurlUrl = std::unique_ptr<CURLU, CurlUrlDeleter>;

}  // namespace mat::fetch
