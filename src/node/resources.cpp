#include "node/resources.h"

#include <sched.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <fstream>
#include <sstream>
#include <string>

namespace canopy::node {
namespace {

std::string ReadAll(const char* path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Value in kB of the line "<key>: <n> kB", or nullopt.
std::optional<int64_t> FieldKb(std::string_view text, std::string_view key) {
  size_t pos = 0;
  while (pos < text.size()) {
    size_t eol = text.find('\n', pos);
    std::string_view line =
        text.substr(pos, eol == std::string_view::npos ? std::string_view::npos : eol - pos);
    pos = eol == std::string_view::npos ? text.size() : eol + 1;
    if (line.size() <= key.size() || line.substr(0, key.size()) != key || line[key.size()] != ':')
      continue;
    std::string_view rest = line.substr(key.size() + 1);
    while (!rest.empty() && (rest[0] == ' ' || rest[0] == '\t')) rest.remove_prefix(1);
    int64_t v = 0;
    auto [p, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), v);
    if (ec != std::errc() || v < 0) return std::nullopt;
    return v;
  }
  return std::nullopt;
}

}  // namespace

Json NodeResources::ToJson() const {
  return {{"cpu_millis", cpu_millis},
          {"memory_mib", memory_mib},
          {"memory_available_mib", memory_available_mib},
          {"load1", load1}};
}

std::optional<MemInfo> ParseMeminfo(std::string_view text) {
  auto total = FieldKb(text, "MemTotal");
  if (!total) return std::nullopt;
  MemInfo m;
  m.total_mib = *total / 1024;
  if (auto avail = FieldKb(text, "MemAvailable")) {
    m.available_mib = *avail / 1024;
  } else {
    int64_t sum = FieldKb(text, "MemFree").value_or(0) + FieldKb(text, "Buffers").value_or(0) +
                  FieldKb(text, "Cached").value_or(0);
    m.available_mib = sum / 1024;
  }
  return m;
}

std::optional<double> ParseLoadavg(std::string_view text) {
  size_t end = text.find(' ');
  std::string first(text.substr(0, end));
  if (first.empty()) return std::nullopt;
  char* stop = nullptr;
  double v = std::strtod(first.c_str(), &stop);
  if (stop == first.c_str() || *stop != '\0' || v < 0) return std::nullopt;
  return v;
}

int64_t UsableCpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? n : 1;
}

NodeResources ReadResources() {
  NodeResources r;
  r.cpu_millis = UsableCpus() * 1000;
  if (auto m = ParseMeminfo(ReadAll("/proc/meminfo"))) {
    r.memory_mib = m->total_mib;
    r.memory_available_mib = m->available_mib;
  }
  r.load1 = ParseLoadavg(ReadAll("/proc/loadavg")).value_or(0);
  return r;
}

namespace {

// The value of KEY=VALUE in os-release syntax: double or single quotes removed, backslash escapes
// inside double quotes resolved.
std::string OsReleaseValue(std::string_view text, std::string_view key) {
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    if (!line.starts_with(key) || line.size() <= key.size() || line[key.size()] != '=') continue;
    std::string_view v = line.substr(key.size() + 1);
    while (!v.empty() && (v.back() == '\r' || v.back() == ' ')) v.remove_suffix(1);
    std::string out;
    if (v.size() >= 2 && v.front() == '\'' && v.back() == '\'') {
      return std::string(v.substr(1, v.size() - 2));
    }
    if (v.size() >= 2 && v.front() == '"' && v.back() == '"') {
      v = v.substr(1, v.size() - 2);
      for (size_t i = 0; i < v.size(); ++i) {
        if (v[i] == '\\' && i + 1 < v.size()) ++i;
        out.push_back(v[i]);
      }
      return out;
    }
    return std::string(v);
  }
  return "";
}

}  // namespace

std::string ParseOsRelease(std::string_view text) {
  std::string pretty = OsReleaseValue(text, "PRETTY_NAME");
  if (!pretty.empty()) return pretty;
  std::string name = OsReleaseValue(text, "NAME");
  std::string version = OsReleaseValue(text, "VERSION");
  if (name.empty()) return "";
  return version.empty() ? name : name + " " + version;
}

core::NodeSystem ReadSystem() {
  core::NodeSystem s;
  std::string release = ReadAll("/etc/os-release");
  if (release.empty()) release = ReadAll("/usr/lib/os-release");
  s.os = ParseOsRelease(release).substr(0, 256);
  utsname u{};
  if (::uname(&u) == 0) {
    s.kernel = u.release;
    s.arch = u.machine;
  }
  long online = ::sysconf(_SC_NPROCESSORS_ONLN);
  s.cpus = online > 0 ? online : 0;
  auto mem = ParseMeminfo(ReadAll("/proc/meminfo"));
  s.memory_mib = mem ? mem->total_mib : 0;
  return s;
}

NodeResources WithCapacity(NodeResources real, int64_t cpu_millis, int64_t memory_mib) {
  if (cpu_millis > 0) real.cpu_millis = cpu_millis;
  if (memory_mib > 0) {
    real.memory_mib = memory_mib;
    real.memory_available_mib = std::min(real.memory_available_mib, memory_mib);
  }
  return real;
}

}  // namespace canopy::node
