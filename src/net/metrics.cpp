// Metrics: request counters and latency histograms in Prometheus text format 0.0.4, plus process
// gauges read from /proc. One mutex guards the maps; Observe costs a map lookup and a few adds.
#include <dirent.h>
#include <fmt/format.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <tuple>

#include "net/http.h"

namespace canopy::net {
namespace {

constexpr std::array<double, 13> kBuckets = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                             0.25,  0.5,    1.0,   2.5,  5.0,   10.0};

// Label values come from clients (the method) or code (routes); escape per the text format.
std::string EscapeLabel(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out.push_back(c);
    }
  }
  return out;
}

// Clients choose the method string; keep label cardinality bounded.
std::string_view NormalizeMethod(std::string_view m) {
  static constexpr std::array<std::string_view, 9> kKnown = {
      "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE"};
  for (std::string_view k : kKnown) {
    if (k == m) {
      return k;
    }
  }
  return "OTHER";
}

long ResidentBytes() {
  std::ifstream f("/proc/self/statm");
  long size = 0;
  long resident = 0;
  if (!(f >> size >> resident)) {
    return 0;
  }
  return resident * sysconf(_SC_PAGESIZE);
}

long OpenFds() {
  DIR* d = opendir("/proc/self/fd");
  if (d == nullptr) {
    return 0;
  }
  long n = 0;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] != '.') {
      ++n;
    }
  }
  closedir(d);
  return n - 1;  // the descriptor of the directory stream itself
}

}  // namespace

struct Metrics::Impl {
  struct Histogram {
    std::array<uint64_t, kBuckets.size()> counts{};  // non-cumulative per bucket
    uint64_t count = 0;
    double sum = 0;
  };
  mutable std::mutex mu;
  std::map<std::tuple<std::string, std::string, int>, uint64_t> requests;
  std::map<std::pair<std::string, std::string>, Histogram> durations;
};

Metrics::Metrics() : impl_(std::make_unique<Impl>()) {}
Metrics::~Metrics() = default;

void Metrics::Observe(std::string_view method, std::string_view route, int status,
                      std::chrono::nanoseconds latency) {
  std::string m(NormalizeMethod(method));
  std::string r(route.empty() ? std::string_view("unmatched") : route);
  double seconds = std::chrono::duration<double>(latency).count();
  size_t bucket = kBuckets.size();
  for (size_t i = 0; i < kBuckets.size(); ++i) {
    if (seconds <= kBuckets[i]) {
      bucket = i;
      break;
    }
  }
  std::lock_guard<std::mutex> l(impl_->mu);
  ++impl_->requests[{m, r, status}];
  Impl::Histogram& h = impl_->durations[{std::move(m), std::move(r)}];
  if (bucket < kBuckets.size()) {
    ++h.counts[bucket];
  }
  ++h.count;
  h.sum += seconds;
}

std::string Metrics::RenderPrometheus() const {
  std::string out;
  {
    std::lock_guard<std::mutex> l(impl_->mu);
    out += "# HELP canopy_http_requests_total HTTP requests served.\n";
    out += "# TYPE canopy_http_requests_total counter\n";
    for (const auto& [key, n] : impl_->requests) {
      const auto& [method, route, status] = key;
      out +=
          fmt::format("canopy_http_requests_total{{method=\"{}\",route=\"{}\",status=\"{}\"}} {}\n",
                      EscapeLabel(method), EscapeLabel(route), status, n);
    }
    out += "# HELP canopy_http_request_duration_seconds HTTP request latency.\n";
    out += "# TYPE canopy_http_request_duration_seconds histogram\n";
    for (const auto& [key, h] : impl_->durations) {
      std::string labels = fmt::format("method=\"{}\",route=\"{}\"", EscapeLabel(key.first),
                                       EscapeLabel(key.second));
      uint64_t cumulative = 0;
      for (size_t i = 0; i < kBuckets.size(); ++i) {
        cumulative += h.counts[i];
        out += fmt::format("canopy_http_request_duration_seconds_bucket{{{},le=\"{}\"}} {}\n",
                           labels, kBuckets[i], cumulative);
      }
      out += fmt::format("canopy_http_request_duration_seconds_bucket{{{},le=\"+Inf\"}} {}\n",
                         labels, h.count);
      out += fmt::format("canopy_http_request_duration_seconds_sum{{{}}} {}\n", labels, h.sum);
      out += fmt::format("canopy_http_request_duration_seconds_count{{{}}} {}\n", labels, h.count);
    }
  }
  out += "# HELP process_resident_memory_bytes Resident memory size in bytes.\n";
  out += "# TYPE process_resident_memory_bytes gauge\n";
  out += fmt::format("process_resident_memory_bytes {}\n", ResidentBytes());
  out += "# HELP process_open_fds Number of open file descriptors.\n";
  out += "# TYPE process_open_fds gauge\n";
  out += fmt::format("process_open_fds {}\n", OpenFds());
  return out;
}

}  // namespace canopy::net
