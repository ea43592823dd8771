#include "cli/service_spec.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cstdint>

#include "cli/output.h"
#include "common/shell.h"

namespace canopy::cli {

namespace {

constexpr int64_t kMaxPort = 65535;

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return out;
}

bool IsShellSafe(char ch) {
  auto c = static_cast<unsigned char>(ch);
  return std::isalnum(c) || std::string_view("_@%+=:,./-").find(ch) != std::string_view::npos;
}

std::string ShellWord(const std::string& word) {
  if (!word.empty() && std::all_of(word.begin(), word.end(), IsShellSafe)) {
    return word;
  }
  return ShellQuote(word);
}

}  // namespace

Result<Json> ParsePortSpec(std::string_view spec) {
  auto bad = [spec]() {
    return Error::InvalidArgument(
        fmt::format("invalid --port '{}': use PORT, PORT/tcp or PORT/udp with PORT from 1 to {}",
                    CellText(Json(std::string(spec))), kMaxPort));
  };
  std::string_view number = spec;
  std::string protocol = "tcp";
  if (size_t slash = spec.find('/'); slash != std::string_view::npos) {
    number = spec.substr(0, slash);
    protocol = Lower(spec.substr(slash + 1));
    if (protocol != "tcp" && protocol != "udp") {
      return bad();
    }
  }
  if (number.empty() || number.size() > 5) {
    return bad();
  }
  int64_t port = 0;
  for (char c : number) {
    if (c < '0' || c > '9') {
      return bad();
    }
    port = port * 10 + (c - '0');
  }
  if (port < 1 || port > kMaxPort) {
    return bad();
  }
  return Json{{"port", port}, {"protocol", protocol}};
}

Result<std::pair<std::string, std::string>> ParseEnvAssignment(std::string_view assignment) {
  size_t eq = assignment.find('=');
  std::string_view key = assignment.substr(0, eq);
  bool valid = eq != std::string_view::npos && !key.empty() &&
               !std::isdigit(static_cast<unsigned char>(key.front()));
  for (char c : key) {
    valid = valid && (std::isalnum(static_cast<unsigned char>(c)) || c == '_');
  }
  if (!valid) {
    return Error::InvalidArgument(
        fmt::format("invalid --env '{}': use KEY=VALUE with KEY made of letters, digits and _",
                    CellText(Json(std::string(key)))));
  }
  return std::make_pair(std::string(key), std::string(assignment.substr(eq + 1)));
}

std::string ShellJoin(const Json& argv) {
  if (!argv.is_array()) {
    return "-";
  }
  std::string out;
  for (const Json& w : argv) {
    if (!out.empty()) {
      out += ' ';
    }
    out += ShellWord(w.is_string() ? w.get<std::string>() : DumpJson(w));
  }
  return out;
}

std::string PortsText(const Json& ports, bool with_sources) {
  if (!ports.is_array() || ports.empty()) {
    return "-";
  }
  std::string out;
  for (const Json& p : ports) {
    std::string text = fmt::format("{}/{}", FieldText(p, "port"), FieldText(p, "protocol"));
    if (with_sources && p.is_object() && p.contains("source_cidrs") &&
        p["source_cidrs"].is_array() && !p["source_cidrs"].empty()) {
      text += " from";
      for (const Json& c : p["source_cidrs"]) {
        text += ' ' + CellText(c);
      }
    }
    if (!out.empty()) {
      out += with_sources ? ", " : ",";
    }
    out += text;
  }
  return out;
}

std::string EnvText(const Json& env) {
  if (!env.is_object() || env.empty()) {
    return "-";
  }
  std::string out;
  for (const auto& [key, value] : env.items()) {
    if (!out.empty()) {
      out += ", ";
    }
    out +=
        fmt::format("{}={}", key, value.is_string() ? value.get<std::string>() : DumpJson(value));
  }
  return out;
}

}  // namespace canopy::cli
