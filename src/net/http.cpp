// Value helpers of http.h (Request accessors, Response constructors, URL coding, host:port parsing)
// and the Router. No Beast here: the only Beast translation unit is detail/beast_server.cpp.
#include "net/http.h"

#include <algorithm>
#include <charconv>

#include "common/result.h"

namespace canopy::net {
namespace {

std::string Lookup(const std::map<std::string, std::string>& m, std::string_view key) {
  auto it = m.find(std::string(key));
  return it == m.end() ? std::string() : it->second;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Splits "/a/b/c" into {"a","b","c"}; "/" gives {}. Empty segments ("//", a trailing "/") are
// kept as "" so that they never match a pattern segment (strict matching, see Router docs).
std::vector<std::string_view> SplitPath(std::string_view path) {
  std::vector<std::string_view> out;
  if (path.empty() || path == "/") {
    return out;
  }
  std::string_view rest = path.substr(1);
  for (;;) {
    size_t slash = rest.find('/');
    if (slash == std::string_view::npos) {
      out.push_back(rest);
      break;
    }
    out.push_back(rest.substr(0, slash));
    rest = rest.substr(slash + 1);
  }
  return out;
}

bool IsParamSegment(std::string_view seg) {
  return seg.size() > 2 && seg.front() == '{' && seg.back() == '}';
}

// Matches path segments against a route's segments, filling params. Returns false on mismatch.
bool MatchSegments(const std::vector<std::string>& pattern,
                   const std::vector<std::string_view>& path,
                   std::map<std::string, std::string>* params) {
  if (pattern.size() != path.size()) {
    return false;
  }
  for (size_t i = 0; i < pattern.size(); ++i) {
    const std::string& p = pattern[i];
    if (IsParamSegment(p)) {
      if (path[i].empty()) {
        return false;  // "{id}" never matches an empty segment
      }
      if (params != nullptr) {
        (*params)[p.substr(1, p.size() - 2)] = std::string(path[i]);
      }
    } else if (p != path[i]) {
      return false;
    }
  }
  return true;
}

// True when pattern a is more specific than b: at the first position where one has a literal and
// the other a parameter, the literal wins.
bool MoreSpecific(const std::vector<std::string>& a, const std::vector<std::string>& b) {
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    bool pa = IsParamSegment(a[i]);
    bool pb = IsParamSegment(b[i]);
    if (pa != pb) {
      return !pa;
    }
  }
  return false;
}

}  // namespace

std::string Request::Header(std::string_view lower_name) const {
  return Lookup(headers, lower_name);
}
std::string Request::Query(std::string_view name) const { return Lookup(query, name); }
std::string Request::Param(std::string_view name) const { return Lookup(params, name); }

Response Response::FromJson(int status, const Json& j) {
  Response r;
  r.status = status;
  r.content_type = "application/json";
  r.body = DumpJson(j);
  return r;
}

Response Response::Text(int status, std::string body, std::string content_type) {
  Response r;
  r.status = status;
  r.content_type = std::move(content_type);
  r.body = std::move(body);
  return r;
}

void Router::Add(std::string method, std::string pattern, Handler h) {
  AddAsync(std::move(method), std::move(pattern),
           [h = std::move(h)](const Request& req, Responder respond) { respond(h(req)); });
}

void Router::AddAsync(std::string method, std::string pattern, AsyncHandler h) {
  // Routes are registered at start-up by code, so a bad pattern is a programmer error.
  CANOPY_CHECK(!pattern.empty() && pattern.front() == '/');
  CANOPY_CHECK(h != nullptr);
  Route r;
  r.method = std::move(method);
  r.pattern = std::move(pattern);
  for (std::string_view seg : SplitPath(r.pattern)) {
    CANOPY_CHECK(!seg.empty());
    CANOPY_CHECK(IsParamSegment(seg) || seg.find_first_of("{}") == std::string_view::npos);
    r.segments.emplace_back(seg);
  }
  for (const Route& other : routes_) {
    CANOPY_CHECK(!(other.method == r.method && other.pattern == r.pattern));
  }
  r.handler = std::move(h);
  routes_.push_back(std::move(r));
}

Result<Router::Match> Router::Find(std::string_view method, std::string_view path) const {
  std::vector<std::string_view> segs = SplitPath(path);
  const Route* best = nullptr;
  bool path_known = false;
  if (!path.empty() && path.front() == '/') {
    for (const Route& r : routes_) {
      if (!MatchSegments(r.segments, segs, nullptr)) {
        continue;
      }
      path_known = true;
      if (r.method != method) {
        continue;
      }
      if (best == nullptr || MoreSpecific(r.segments, best->segments)) {
        best = &r;
      }
    }
  }
  if (best == nullptr) {
    if (path_known) {
      return Error::InvalidArgument("method not allowed");
    }
    return Error::NotFound("no such route");
  }
  Match m;
  m.handler = &best->handler;
  m.pattern = best->pattern;
  MatchSegments(best->segments, segs, &m.params);
  return m;
}

std::vector<std::string> Router::AllowedMethods(std::string_view path) const {
  std::vector<std::string> out;
  std::vector<std::string_view> segs = SplitPath(path);
  for (const Route& r : routes_) {
    if (MatchSegments(r.segments, segs, nullptr) &&
        std::find(out.begin(), out.end(), r.method) == out.end()) {
      out.push_back(r.method);
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::pair<std::string, std::string>> Router::Routes() const {
  std::vector<std::pair<std::string, std::string>> out;
  out.reserve(routes_.size());
  for (const Route& r : routes_) {
    out.emplace_back(r.method, r.pattern);
  }
  return out;
}

Result<std::pair<std::string, uint16_t>> ParseHostPort(std::string_view s) {
  std::string_view host;
  std::string_view port;
  if (!s.empty() && s.front() == '[') {
    size_t close = s.find(']');
    if (close == std::string_view::npos || close + 1 >= s.size() || s[close + 1] != ':') {
      return Error::InvalidArgument("address must look like [v6addr]:port");
    }
    host = s.substr(1, close - 1);
    port = s.substr(close + 2);
  } else {
    size_t colon = s.rfind(':');
    if (colon == std::string_view::npos) {
      return Error::InvalidArgument("address must look like host:port");
    }
    host = s.substr(0, colon);
    port = s.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) {
      return Error::InvalidArgument("IPv6 addresses must be written as [addr]:port");
    }
  }
  if (host.empty()) {
    return Error::InvalidArgument("address has an empty host");
  }
  if (port.empty() || port.size() > 5 ||
      !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return Error::InvalidArgument("address has an invalid port");
  }
  unsigned value = 0;
  std::from_chars(port.data(), port.data() + port.size(), value);
  if (value > 65535) {
    return Error::InvalidArgument("address has an invalid port");
  }
  return std::make_pair(std::string(host), static_cast<uint16_t>(value));
}

bool UrlDecode(std::string_view in, std::string* out, bool plus_as_space) {
  std::string r;
  r.reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (c == '%') {
      if (i + 2 >= in.size()) {
        return false;
      }
      int hi = HexValue(in[i + 1]);
      int lo = HexValue(in[i + 2]);
      if (hi < 0 || lo < 0) {
        return false;
      }
      r.push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else if (c == '+' && plus_as_space) {
      r.push_back(' ');
    } else {
      r.push_back(c);
    }
  }
  *out = std::move(r);
  return true;
}

std::string UrlEncode(std::string_view in) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(in.size());
  for (char c : in) {
    auto u = static_cast<unsigned char>(c);
    bool unreserved = (u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z') || (u >= '0' && u <= '9') ||
                      u == '-' || u == '_' || u == '.' || u == '~';
    if (unreserved) {
      out.push_back(c);
    } else {
      out.push_back('%');
      out.push_back(kHex[u >> 4]);
      out.push_back(kHex[u & 0xF]);
    }
  }
  return out;
}

std::string UrlHost(std::string_view url) {
  size_t start = url.find("://");
  if (start == std::string_view::npos) return "";
  std::string_view rest = url.substr(start + 3);
  rest = rest.substr(0, rest.find_first_of("/?#"));
  if (size_t at = rest.rfind('@'); at != std::string_view::npos) rest = rest.substr(at + 1);
  std::string host(rest);
  if (auto hp = ParseHostPort(rest); hp) host = hp->first;
  if (!host.empty() && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  if (host == "0.0.0.0" || host == "::") return "";
  return host;
}

}  // namespace canopy::net
