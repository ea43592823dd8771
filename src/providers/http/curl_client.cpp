// CurlClient: one easy handle per thread, reused so that curl keeps connections alive between
// calls to the same host. Redirects are never followed; only http and https.
#include "providers/http/curl_client.h"

#include <curl/curl.h>
#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <mutex>

namespace canopy::providers {
namespace {

constexpr size_t kMaxResponseBytes = 64u << 20;

void GlobalInit() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

// The per-thread handle; curl_easy_reset between calls keeps its connection cache.
struct EasyHandle {
  CURL* curl = nullptr;
  EasyHandle() { curl = curl_easy_init(); }
  ~EasyHandle() {
    if (curl != nullptr) {
      curl_easy_cleanup(curl);
    }
  }
  EasyHandle(const EasyHandle&) = delete;
  EasyHandle& operator=(const EasyHandle&) = delete;
};

struct HeaderList {
  curl_slist* list = nullptr;
  ~HeaderList() { curl_slist_free_all(list); }
  bool Append(const std::string& line) {
    curl_slist* n = curl_slist_append(list, line.c_str());
    if (n == nullptr) {
      return false;
    }
    list = n;
    return true;
  }
};

struct Sink {
  net::ClientResponse* resp = nullptr;
  bool too_large = false;
};

size_t WriteBody(char* data, size_t size, size_t nmemb, void* user) {
  auto* sink = static_cast<Sink*>(user);
  size_t n = size * nmemb;
  if (sink->resp->body.size() + n > kMaxResponseBytes) {
    sink->too_large = true;
    return 0;  // makes curl fail with CURLE_WRITE_ERROR
  }
  sink->resp->body.append(data, n);
  return n;
}

std::string Trim(std::string_view s) {
  size_t b = 0;
  size_t e = s.size();
  while (b < e && (s[b] == ' ' || s[b] == '\t' || s[b] == '\r' || s[b] == '\n')) {
    ++b;
  }
  while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\t' || s[e - 1] == '\r' || s[e - 1] == '\n')) {
    --e;
  }
  return std::string(s.substr(b, e - b));
}

size_t WriteHeader(char* data, size_t size, size_t nmemb, void* user) {
  auto* sink = static_cast<Sink*>(user);
  size_t n = size * nmemb;
  std::string_view line(data, n);
  if (line.starts_with("HTTP/")) {
    sink->resp->headers.clear();  // a new response (after 1xx): forget earlier headers
    return n;
  }
  size_t colon = line.find(':');
  if (colon == std::string_view::npos || colon == 0) {
    return n;
  }
  std::string name(line.substr(0, colon));
  std::transform(name.begin(), name.end(), name.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  std::string value = Trim(line.substr(colon + 1));
  auto [it, inserted] = sink->resp->headers.emplace(name, value);
  if (!inserted) {
    it->second += ", ";
    it->second += value;
  }
  return n;
}

// "https://user:pw@host:8443/path?q" -> "https://host:8443": messages never carry credentials,
// paths or queries (tokens sometimes travel there).
std::string SafeOrigin(std::string_view url) {
  size_t scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos) {
    return "<invalid url>";
  }
  std::string_view rest = url.substr(scheme_end + 3);
  rest = rest.substr(0, rest.find_first_of("/?#"));
  size_t at = rest.rfind('@');
  if (at != std::string_view::npos) {
    rest = rest.substr(at + 1);
  }
  return fmt::format("{}://{}", url.substr(0, scheme_end), rest);
}

bool HasCtl(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](unsigned char c) { return c < 0x20 || c == 0x7f; });
}

bool IsToken(std::string_view s) {
  if (s.empty()) {
    return false;
  }
  return std::all_of(s.begin(), s.end(), [](unsigned char c) {
    return std::isalnum(c) ||
           std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) != std::string_view::npos;
  });
}

Error MapCurlError(CURLcode rc, const std::string& origin, const char* detail) {
  std::string what = fmt::format("request to {} failed: {}", origin,
                                 detail[0] != '\0' ? detail : curl_easy_strerror(rc));
  switch (rc) {
    case CURLE_OPERATION_TIMEDOUT:
      return Error::DeadlineExceeded(std::move(what));
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
      return Error::InvalidArgument(std::move(what));
    default:
      return Error::Unavailable(std::move(what));
  }
}

}  // namespace

Result<net::ClientResponse> CurlClient::Do(const net::ClientRequest& req) const {
  GlobalInit();
  if (!IsToken(req.method)) {
    return Error::InvalidArgument("invalid HTTP method");
  }
  if (req.url.empty() || HasCtl(req.url)) {
    return Error::InvalidArgument("invalid URL");
  }
  std::string origin = SafeOrigin(req.url);
  thread_local EasyHandle handle;
  CURL* c = handle.curl;
  if (c == nullptr) {
    return Error::Internal("cannot create an HTTP client handle");
  }
  curl_easy_reset(c);

  HeaderList headers;
  bool has_content_type = false;
  for (const auto& [name, value] : req.headers) {
    if (!IsToken(name) || HasCtl(value)) {
      return Error::InvalidArgument("invalid HTTP header");
    }
    std::string lower = name;
    std::transform(lower.begin(), lower.end(), lower.begin(),
                   [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
    has_content_type = has_content_type || lower == "content-type";
    // "Name;" sends an empty header; "Name:" would delete it.
    if (!headers.Append(value.empty() ? name + ";" : name + ": " + value)) {
      return Error::Internal("out of memory building HTTP headers");
    }
  }
  // Never wait for "100 Continue" (a round trip, or a 1 s stall on servers that ignore it), and
  // do not let curl label bodies as form data.
  headers.Append("Expect:");
  if (!has_content_type) {
    headers.Append("Content-Type:");
  }

  net::ClientResponse resp;
  Sink sink{&resp, false};
  char errbuf[CURL_ERROR_SIZE] = {0};
  curl_easy_setopt(c, CURLOPT_URL, req.url.c_str());
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(req.timeout.count()));
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(req.connect_timeout.count()));
  curl_easy_setopt(c, CURLOPT_TCP_NODELAY, 1L);
  curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, static_cast<curl_off_t>(kMaxResponseBytes));
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers.list);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, &WriteBody);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &sink);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, &WriteHeader);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &sink);

  if (req.method == "HEAD") {
    curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
  } else if (req.method == "GET" && req.body.empty()) {
    curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
  } else {
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, req.method.c_str());
    if (!req.body.empty() || req.method != "GET") {
      curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(req.body.size()));
      curl_easy_setopt(c, CURLOPT_POSTFIELDS, req.body.data());
    }
  }

  CURLcode rc = curl_easy_perform(c);
  // Drop pointers to locals from the reused handle before they go out of scope.
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, nullptr);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, nullptr);
  if (rc != CURLE_OK) {
    if (sink.too_large || rc == CURLE_FILESIZE_EXCEEDED) {
      return Error::Provider(
          fmt::format("response from {} exceeds {} bytes", origin, kMaxResponseBytes));
    }
    return MapCurlError(rc, origin, errbuf);
  }
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  resp.status = static_cast<int>(status);
  return resp;
}

}  // namespace canopy::providers
