// Resource figures of this machine for node heartbeats: parsers of /proc/meminfo and
// /proc/loadavg text (pure, tested) and readers of the live values. Thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include "common/json.h"
#include "core/types.h"

namespace canopy::node {

struct MemInfo {
  int64_t total_mib = 0;
  int64_t available_mib = 0;
};

struct NodeResources {
  int64_t cpu_millis = 0;  // usable CPUs x 1000
  int64_t memory_mib = 0;
  int64_t memory_available_mib = 0;
  double load1 = 0;
  Json ToJson() const;
};

// "MemTotal: N kB" and "MemAvailable: N kB" (MemFree+Buffers+Cached when MemAvailable is absent).
std::optional<MemInfo> ParseMeminfo(std::string_view text);
// First field of /proc/loadavg.
std::optional<double> ParseLoadavg(std::string_view text);
// CPUs this process may run on (sched_getaffinity, else sysconf), at least 1.
int64_t UsableCpus();
// Reads the live figures (zeros for what cannot be read).
NodeResources ReadResources();
// PRETTY_NAME of an /etc/os-release text (quotes and shell escapes removed), else NAME VERSION,
// else "".
std::string ParseOsRelease(std::string_view text);
// The machine as the node reports it: /etc/os-release (else /usr/lib/os-release), uname, online
// CPUs, MemTotal.
core::NodeSystem ReadSystem();
// The figures a node offers when its capacity is given (--cpu-millis / --memory-mib; 0 = not
// given, keep the real figure): cpu_millis and memory_mib replace the real ones,
// memory_available_mib = min(real available, memory_mib); load1 stays.
NodeResources WithCapacity(NodeResources real, int64_t cpu_millis, int64_t memory_mib);

}  // namespace canopy::node
