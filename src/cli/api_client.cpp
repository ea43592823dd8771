#include "cli/api_client.h"

#include <fmt/format.h>
#include <openssl/crypto.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <utility>

#include "net/error_mapping.h"

namespace canopy::cli {

namespace {

constexpr size_t kMaxMessageChars = 500;
constexpr const char* kUserAgent = "canopy-cli/0.1";

bool StartsWithNoCase(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) {
    return false;
  }
  for (size_t i = 0; i < prefix.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(s[i])) != prefix[i]) {
      return false;
    }
  }
  return true;
}

// One line, no control characters (a hostile server must not be able to move the cursor or
// forge extra lines on the user's terminal), bounded length.
std::string OneLine(std::string_view in) {
  std::string out;
  out.reserve(std::min(in.size(), kMaxMessageChars));
  for (char ch : in) {
    auto c = static_cast<unsigned char>(ch);
    out += (c < 0x20 || c == 0x7f) ? ' ' : ch;
    if (out.size() >= kMaxMessageChars) {
      out += "...";
      break;
    }
  }
  return out;
}

}  // namespace

Result<std::string> NormalizeRootUrl(std::string_view url) {
  auto bad = [&](std::string_view why) {
    return Error::InvalidArgument(fmt::format("invalid root URL '{}': {}", OneLine(url), why));
  };
  size_t scheme_len = 0;
  if (StartsWithNoCase(url, "http://")) {
    scheme_len = 7;
  } else if (StartsWithNoCase(url, "https://")) {
    scheme_len = 8;
  } else {
    return bad("it must start with http:// or https://");
  }
  for (char ch : url) {
    auto c = static_cast<unsigned char>(ch);
    if (c <= 0x20 || c == 0x7f) {
      return bad("it contains spaces or control characters");
    }
  }
  if (url.find_first_of("?#") != std::string_view::npos) {
    return bad("it must not have a query or fragment");
  }
  std::string_view rest = url.substr(scheme_len);
  std::string_view authority = rest.substr(0, rest.find('/'));
  if (authority.empty()) {
    return bad("it has no host");
  }
  if (authority.find('@') != std::string_view::npos) {
    return bad("it must not contain user information");
  }
  std::string out(url);
  // Lower-case the scheme so that comparisons with the stored root are stable.
  for (size_t i = 0; i < scheme_len; ++i) {
    out[i] = static_cast<char>(std::tolower(static_cast<unsigned char>(out[i])));
  }
  while (out.size() > scheme_len && out.back() == '/') {
    out.pop_back();
  }
  return out;
}

Error ApiErrorFromResponse(int status, std::string_view body) {
  std::string code_name;
  std::string message;
  Result<Json> parsed = ParseJson(body);
  if (parsed && parsed->is_object()) {
    auto e = parsed->find("error");
    if (e != parsed->end() && e->is_object()) {
      auto c = e->find("code");
      if (c != e->end() && c->is_string()) {
        code_name = OneLine(c->get_ref<const std::string&>());
      }
      auto m = e->find("message");
      if (m != e->end() && m->is_string()) {
        message = OneLine(m->get_ref<const std::string&>());
      }
    }
  }
  // The code as every Canopy client decodes it; the name shown is the API's own, even unknown.
  ErrorCode code = net::ErrorFromResponse(status, body).code;
  if (code_name.empty()) {
    code_name = std::string(ErrorCodeName(code));
  }
  if (message.empty()) {
    message = "the root answered without an error description";
  }
  Error err;
  err.code = code;
  err.message = fmt::format("{} ({}, HTTP {})", message, code_name, status);
  return err;
}

std::string EscapeUrlComponent(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size());
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out += ch;
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 0xf];
    }
  }
  return out;
}

ApiClient::ApiClient(std::string root, SecretString token, Transport transport)
    : root_(std::move(root)), token_(std::move(token)), transport_(std::move(transport)) {}

Result<Json> ApiClient::Get(std::string_view path) const { return Send("GET", path, nullptr); }

Result<Json> ApiClient::Post(std::string_view path, const Json& body) const {
  return Send("POST", path, &body);
}

Result<Json> ApiClient::Delete(std::string_view path) const {
  return Send("DELETE", path, nullptr);
}

Error ApiClient::Unreachable(Error err) const {
  // The root URL is already in our message; drop the transport's own "request to X failed: ".
  std::string_view why = err.message;
  if (why.starts_with("request to ")) {
    size_t at = why.find(" failed: ");
    if (at != std::string_view::npos) {
      why.remove_prefix(at + 9);
    }
  }
  err.message = fmt::format("cannot reach root at {}: {}", root_, OneLine(why));
  return err;
}

Status ApiClient::Reach() const {
  net::ClientRequest req;
  req.url = root_ + "/healthz";
  req.headers["User-Agent"] = kUserAgent;
  Result<net::ClientResponse> resp = transport_(req);
  if (!resp) {
    return Unreachable(std::move(resp).error());
  }
  return OkStatus();
}

Result<Json> ApiClient::Send(std::string_view method, std::string_view path,
                             const Json* body) const {
  net::ClientRequest req;
  req.method = std::string(method);
  req.url = root_ + std::string(path);
  req.headers["Accept"] = "application/json";
  req.headers["User-Agent"] = kUserAgent;
  if (!token_.Reveal().empty()) {
    req.headers["Authorization"] = "Bearer " + token_.Reveal();
  }
  if (body != nullptr) {
    req.headers["Content-Type"] = "application/json";
    req.body = DumpJson(*body);
  }
  Result<net::ClientResponse> resp = transport_(req);
  // Bodies and headers may hold passwords, secrets and the token: wipe our copies.
  OPENSSL_cleanse(req.body.data(), req.body.size());
  auto auth = req.headers.find("Authorization");
  if (auth != req.headers.end()) {
    OPENSSL_cleanse(auth->second.data(), auth->second.size());
  }
  if (!resp) {
    return Unreachable(std::move(resp).error());
  }
  if (resp->status < 200 || resp->status > 299) {
    return ApiErrorFromResponse(resp->status, resp->body);
  }
  if (resp->body.empty()) {
    return Json::object();
  }
  Result<Json> parsed = ParseJson(resp->body);
  if (!parsed) {
    return Error::Internal(
        fmt::format("the root sent a response that is not JSON (HTTP {})", resp->status));
  }
  return parsed;
}

}  // namespace canopy::cli
