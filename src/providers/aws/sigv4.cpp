#include "providers/aws/sigv4.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <ctime>
#include <map>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/ids.h"

namespace canopy::providers::aws {
namespace {

constexpr std::string_view kAlgorithm = "AWS4-HMAC-SHA256";
constexpr std::string_view kTerminator = "aws4_request";
constexpr char kHexUpper[] = "0123456789ABCDEF";

// Wipes a string holding key material when it goes out of scope.
class Wiped {
 public:
  Wiped() = default;
  explicit Wiped(std::string s) : s_(std::move(s)) {}
  Wiped(const Wiped&) = delete;
  Wiped(Wiped&& o) noexcept : s_(std::move(o.s_)) { o.s_.clear(); }
  Wiped& operator=(const Wiped&) = delete;
  ~Wiped() {
    if (!s_.empty()) OPENSSL_cleanse(s_.data(), s_.size());
  }
  std::string& str() { return s_; }
  const std::string& str() const { return s_; }

 private:
  std::string s_;
};

bool IsUnreserved(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_' || c == '.' || c == '~';
}

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

char AsciiLower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = AsciiLower(c);
  return out;
}

bool IEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (AsciiLower(a[i]) != AsciiLower(b[i])) return false;
  }
  return true;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Decodes %XX sequences; a '%' not followed by two hex digits is kept as a literal byte. '+' is
// kept as is (RFC 3986 query, not form encoding).
std::string PercentDecode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      int hi = HexValue(s[i + 1]);
      int lo = HexValue(s[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out.push_back(static_cast<char>((hi << 4) | lo));
        i += 2;
        continue;
      }
    }
    out.push_back(s[i]);
  }
  return out;
}

// Trims leading/trailing whitespace and collapses every inner run of whitespace (spaces, tabs and
// the line breaks of folded values) into one space.
std::string TrimCollapse(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  bool pending_space = false;
  for (char c : v) {
    if (IsSpace(c)) {
      pending_space = !out.empty();
      continue;
    }
    if (pending_space) out.push_back(' ');
    pending_space = false;
    out.push_back(c);
  }
  return out;
}

// RFC 3986 remove_dot_segments plus collapsing of empty segments ("//"). A trailing slash (or a
// trailing "." / ".." segment, which denotes a directory) is kept.
std::string NormalizePath(std::string_view path) {
  std::vector<std::string_view> segs;
  bool trailing_slash = false;
  size_t pos = 0;
  while (pos <= path.size()) {
    size_t end = path.find('/', pos);
    if (end == std::string_view::npos) end = path.size();
    std::string_view seg = path.substr(pos, end - pos);
    bool last = end == path.size();
    if (seg.empty()) {
      if (last) trailing_slash = true;
    } else if (seg == ".") {
      if (last) trailing_slash = true;
    } else if (seg == "..") {
      if (!segs.empty()) segs.pop_back();
      if (last) trailing_slash = true;
    } else {
      segs.push_back(seg);
      if (last) trailing_slash = false;
    }
    pos = end + 1;
  }
  std::string out = "/";
  for (size_t i = 0; i < segs.size(); ++i) {
    if (i > 0) out.push_back('/');
    out.append(segs[i]);
  }
  if (trailing_slash && !segs.empty()) out.push_back('/');
  return out;
}

std::string CanonicalUri(std::string_view path, bool normalize_path) {
  if (normalize_path) return UriEncode(NormalizePath(path), /*keep_slash=*/true);
  if (path.empty()) return "/";
  std::string out = UriEncode(path, /*keep_slash=*/true);
  if (out.front() != '/') out.insert(out.begin(), '/');
  return out;
}

std::string CanonicalQuery(std::string_view query) {
  std::vector<std::pair<std::string, std::string>> params;
  size_t pos = 0;
  while (pos <= query.size()) {
    size_t end = query.find('&', pos);
    if (end == std::string_view::npos) end = query.size();
    std::string_view item = query.substr(pos, end - pos);
    if (!item.empty()) {
      size_t eq = item.find('=');
      std::string_view k = item.substr(0, eq);
      std::string_view v = eq == std::string_view::npos ? std::string_view{} : item.substr(eq + 1);
      params.emplace_back(UriEncode(PercentDecode(k), false), UriEncode(PercentDecode(v), false));
    }
    pos = end + 1;
  }
  std::sort(params.begin(), params.end());  // by encoded key, then encoded value
  std::string out;
  for (const auto& [k, v] : params) {
    if (!out.empty()) out.push_back('&');
    out.append(k).push_back('=');
    out.append(v);
  }
  return out;
}

struct Canonical {
  std::string request;
  std::string signed_headers;
};

Canonical BuildCanonical(const SigV4Request& req, bool normalize_path) {
  // Lower-cased name -> values in order of appearance.
  std::map<std::string, std::vector<std::string>> headers;
  for (const auto& [name, value] : req.headers) {
    headers[Lower(TrimCollapse(name))].push_back(TrimCollapse(value));
  }
  Canonical c;
  std::string& r = c.request;
  r.append(req.method).push_back('\n');
  r.append(CanonicalUri(req.path, normalize_path)).push_back('\n');
  r.append(CanonicalQuery(req.query)).push_back('\n');
  for (const auto& [name, values] : headers) {
    r.append(name).push_back(':');
    for (size_t i = 0; i < values.size(); ++i) {
      if (i > 0) r.push_back(',');
      r.append(values[i]);
    }
    r.push_back('\n');
    if (!c.signed_headers.empty()) c.signed_headers.push_back(';');
    c.signed_headers.append(name);
  }
  r.push_back('\n');
  r.append(c.signed_headers).push_back('\n');
  r.append(Sha256Hex(req.body));
  return c;
}

std::string DateStamp(const SigV4Scope& scope) { return scope.amz_date.substr(0, 8); }

std::string CredentialScope(const SigV4Scope& scope) {
  std::string s = DateStamp(scope);
  s.append("/").append(scope.region).append("/").append(scope.service).append("/");
  s.append(kTerminator);
  return s;
}

// HMAC-SHA256(key, data) as raw bytes.
Result<std::string> HmacSha256(std::string_view key, std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  const auto* in = reinterpret_cast<const unsigned char*>(data.data());
  if (HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), in, data.size(), out, &len) ==
      nullptr) {
    return Error::Internal("sigv4: HMAC-SHA256 failed");
  }
  std::string r(reinterpret_cast<const char*>(out), len);
  OPENSSL_cleanse(out, sizeof out);
  return r;
}

// kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request").
Result<Wiped> SigningKey(const SigV4Credentials& creds, const SigV4Scope& scope) {
  Wiped k0(std::string("AWS4") + creds.secret_access_key.Reveal());
  CANOPY_ASSIGN_OR_RETURN(std::string r1, HmacSha256(k0.str(), DateStamp(scope)));
  Wiped k1(std::move(r1));
  CANOPY_ASSIGN_OR_RETURN(std::string r2, HmacSha256(k1.str(), scope.region));
  Wiped k2(std::move(r2));
  CANOPY_ASSIGN_OR_RETURN(std::string r3, HmacSha256(k2.str(), scope.service));
  Wiped k3(std::move(r3));
  CANOPY_ASSIGN_OR_RETURN(std::string r4, HmacSha256(k3.str(), kTerminator));
  return Wiped(std::move(r4));
}

Result<std::string> AuthorizationFrom(const Canonical& c, const SigV4Credentials& creds,
                                      const SigV4Scope& scope) {
  std::string sts = StringToSign(scope, c.request);
  CANOPY_ASSIGN_OR_RETURN(Wiped key, SigningKey(creds, scope));
  CANOPY_ASSIGN_OR_RETURN(std::string mac, HmacSha256(key.str(), sts));
  std::string signature = HexEncode(mac);
  std::string out(kAlgorithm);
  out.append(" Credential=").append(creds.access_key_id).append("/").append(CredentialScope(scope));
  out.append(", SignedHeaders=").append(c.signed_headers);
  out.append(", Signature=").append(signature);
  return out;
}

// Sets header `name` to `value`: the first header of that name (any case) gets the value, later
// ones are removed; appended when absent.
void SetHeader(std::vector<std::pair<std::string, std::string>>& headers, std::string_view name,
               const std::string& value) {
  bool found = false;
  for (auto it = headers.begin(); it != headers.end();) {
    if (IEquals(it->first, name)) {
      if (found) {
        it = headers.erase(it);
        continue;
      }
      it->second = value;
      found = true;
    }
    ++it;
  }
  if (!found) headers.emplace_back(std::string(name), value);
}

}  // namespace

Result<std::string> AmzDate(TimePoint when) {
  std::time_t t = static_cast<std::time_t>(UnixSeconds(when));
  std::tm tm{};
  if (gmtime_r(&t, &tm) == nullptr || tm.tm_year + 1900 < 0 || tm.tm_year + 1900 > 9999) {
    return Error::InvalidArgument("sigv4: time out of range");
  }
  char buf[32];
  int n = std::snprintf(buf, sizeof buf, "%04d%02d%02dT%02d%02d%02dZ", tm.tm_year + 1900,
                        tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
  if (n <= 0 || static_cast<size_t>(n) >= sizeof buf) {
    return Error::InvalidArgument("sigv4: time out of range");
  }
  return std::string(buf, static_cast<size_t>(n));
}

std::string UriEncode(std::string_view s, bool keep_slash) {
  std::string out;
  out.reserve(s.size());
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    if (IsUnreserved(c) || (keep_slash && c == '/')) {
      out.push_back(ch);
    } else {
      out.push_back('%');
      out.push_back(kHexUpper[c >> 4]);
      out.push_back(kHexUpper[c & 0x0f]);
    }
  }
  return out;
}

std::string CanonicalRequest(const SigV4Request& req, bool normalize_path) {
  return BuildCanonical(req, normalize_path).request;
}

std::string StringToSign(const SigV4Scope& scope, const std::string& canonical_request) {
  std::string out(kAlgorithm);
  out.push_back('\n');
  out.append(scope.amz_date).push_back('\n');
  out.append(CredentialScope(scope)).push_back('\n');
  out.append(Sha256Hex(canonical_request));
  return out;
}

Result<std::string> Authorization(const SigV4Request& req, const SigV4Credentials& creds,
                                  const SigV4Scope& scope, bool normalize_path) {
  return AuthorizationFrom(BuildCanonical(req, normalize_path), creds, scope);
}

Status Sign(SigV4Request& req, const SigV4Credentials& creds, const SigV4Scope& scope) {
  // A stale Authorization header must be neither signed nor sent twice.
  std::erase_if(req.headers, [](const auto& h) { return IEquals(h.first, "Authorization"); });
  SetHeader(req.headers, "X-Amz-Date", scope.amz_date);
  if (!creds.session_token.empty()) {
    SetHeader(req.headers, "X-Amz-Security-Token", creds.session_token);
  }
  CANOPY_ASSIGN_OR_RETURN(std::string authz, Authorization(req, creds, scope));
  req.headers.emplace_back("Authorization", std::move(authz));
  return OkStatus();
}

}  // namespace canopy::providers::aws
