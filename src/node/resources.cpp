#include "node/resources.h"

#include <sched.h>
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

NodeResources WithCapacity(NodeResources real, int64_t cpu_millis, int64_t memory_mib) {
  if (cpu_millis > 0) real.cpu_millis = cpu_millis;
  if (memory_mib > 0) {
    real.memory_mib = memory_mib;
    real.memory_available_mib = std::min(real.memory_available_mib, memory_mib);
  }
  return real;
}

}  // namespace canopy::node
