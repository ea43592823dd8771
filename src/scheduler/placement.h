// Root-level placement: which cluster gets a service instance. Pure functions over a snapshot
// (no I/O), so policies are unit-tested and swappable. The cluster then picks the node
// (src/cluster/README.md, "Jobs: placement").
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/types.h"

namespace canopy::scheduler {

struct NodeCapacity {
  std::string id;
  int64_t cpu_millis = 0;  // what the node offers (its report), minus what root has placed there
  int64_t memory_mib = 0;
};

struct ClusterCandidate {
  std::string id;
  std::vector<NodeCapacity> nodes;  // online, not draining; free capacity after reservations
  // Reservations of instances sent to this cluster whose node is not known yet: they will take
  // room on some node, so they are subtracted from the largest nodes first.
  int64_t unplaced_cpu_millis = 0;
  int64_t unplaced_memory_mib = 0;
};

struct Demand {
  int64_t cpu_millis = 0;
  int64_t memory_mib = 0;
  std::optional<std::string> cluster_id;  // constraint
};

// A placement policy. Returns the chosen cluster id, or nullopt when none fits.
class ClusterPicker {
 public:
  virtual ~ClusterPicker() = default;
  virtual std::optional<std::string> Pick(const Demand& d,
                                          const std::vector<ClusterCandidate>& c) const = 0;
};

// The default policy: a cluster fits when one of its nodes has the free CPU and memory (after
// reservations); among fitting clusters the one with the most free memory in total, then the
// most free CPU, then the smallest id.
class MostFreeMemoryPicker final : public ClusterPicker {
 public:
  std::optional<std::string> Pick(const Demand& d,
                                  const std::vector<ClusterCandidate>& c) const override;
};

// The candidates as the root sees them: ACTIVE clusters, their online non-draining nodes from
// the last link report, minus the cpu/memory of `instances` placed there (or sent there with no
// node yet). `demand_of` gives an instance's cpu/memory (its service spec).
struct InstanceLoad {
  std::string cluster_id;
  std::string node_id;  // "" while the cluster has not answered
  int64_t cpu_millis = 0;
  int64_t memory_mib = 0;
};
std::vector<ClusterCandidate> Candidates(const std::vector<core::Cluster>& clusters,
                                         const std::vector<InstanceLoad>& loads);

}  // namespace canopy::scheduler
