// URL helpers that every module shares: credential redaction for messages and logs, and the
// pieces of a conda package URL.
#pragma once

#include <string>
#include <string_view>

namespace mat {

// Removes credentials from a URL for display: "https://user:pw@host/x" ->
// "https://***@host/x" (everything up to the LAST '@' before the path: a raw '@' or ':' in a
// password is hidden too); conda-style tokens "/t/<token>/" -> "/t/***/"; the values of query
// parameters named token, access_token, password, key, signature, sig, api_key, apikey, secret
// and the S3/GCS signature ones -> "***" (names case-insensitive). Other URLs are returned as is.
std::string redact_url(std::string_view url);

// redact_url() for a message: also bounded to `max_len` bytes and escaped (printable() in
// text.h), since a lock's or a server's URL may be megabytes long or hold control bytes. Use
// it wherever a URL is echoed; redact_url() alone where the URL is kept (conda-meta records).
std::string shown_url(std::string_view url, size_t max_len = 512);

// Last path component of a URL, without query or fragment ("zlib-1.3-h1.conda").
std::string url_file_name(std::string_view url);

// The URL without its fragment (everything from '#').
std::string url_strip_fragment(std::string_view url);

// True for "file://..." URLs.
bool is_file_url(std::string_view url);
// True for any URL whose scheme is "file", in any case and form ("FILE:///x", "file:/x"):
// libcurl reads them all. Only the "file://" form is accepted for reading (is_file_url).
bool url_scheme_is_file(std::string_view url);

// Converts "file:///a/b%20c" to "/a/b c"; returns "" if not a local file URL.
std::string file_url_to_path(std::string_view url);
std::string path_to_file_url(std::string_view abs_path);

}  // namespace mat
