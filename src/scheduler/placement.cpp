#include "scheduler/placement.h"

#include <algorithm>
#include <map>

namespace canopy::scheduler {

std::optional<std::string> MostFreeMemoryPicker::Pick(
    const Demand& d, const std::vector<ClusterCandidate>& cands) const {
  const ClusterCandidate* best = nullptr;
  int64_t best_mem = 0, best_cpu = 0;
  for (const auto& c : cands) {
    if (d.cluster_id && *d.cluster_id != c.id) continue;
    // Unplaced reservations take room from the largest nodes first (pessimistic).
    std::vector<NodeCapacity> nodes = c.nodes;
    std::sort(nodes.begin(), nodes.end(), [](const NodeCapacity& a, const NodeCapacity& b) {
      return a.memory_mib > b.memory_mib;
    });
    int64_t cpu_left = c.unplaced_cpu_millis, mem_left = c.unplaced_memory_mib;
    for (auto& n : nodes) {
      int64_t take_mem = std::min(mem_left, std::max<int64_t>(0, n.memory_mib));
      int64_t take_cpu = std::min(cpu_left, std::max<int64_t>(0, n.cpu_millis));
      n.memory_mib -= take_mem;
      n.cpu_millis -= take_cpu;
      mem_left -= take_mem;
      cpu_left -= take_cpu;
    }
    bool fits = false;
    int64_t free_mem = 0, free_cpu = 0;
    for (const auto& n : nodes) {
      if (n.cpu_millis >= d.cpu_millis && n.memory_mib >= d.memory_mib) fits = true;
      free_mem += std::max<int64_t>(0, n.memory_mib);
      free_cpu += std::max<int64_t>(0, n.cpu_millis);
    }
    if (!fits) continue;
    bool better = !best || free_mem > best_mem || (free_mem == best_mem && free_cpu > best_cpu) ||
                  (free_mem == best_mem && free_cpu == best_cpu && c.id < best->id);
    if (better) {
      best = &c;
      best_mem = free_mem;
      best_cpu = free_cpu;
    }
  }
  if (!best) return std::nullopt;
  return best->id;
}

std::vector<ClusterCandidate> Candidates(const std::vector<core::Cluster>& clusters,
                                         const std::vector<InstanceLoad>& loads) {
  std::vector<ClusterCandidate> out;
  for (const auto& c : clusters) {
    if (c.state != core::ClusterState::kActive) continue;
    ClusterCandidate cand;
    cand.id = c.id;
    std::map<std::string, size_t> index;
    for (const auto& n : c.nodes) {
      if (n.state != core::NodeState::kOnline || n.draining) continue;
      index[n.id] = cand.nodes.size();
      cand.nodes.push_back({n.id, n.cpu_millis, n.memory_mib});
    }
    for (const auto& l : loads) {
      if (l.cluster_id != c.id) continue;
      auto it = index.find(l.node_id);
      if (it != index.end()) {
        cand.nodes[it->second].cpu_millis -= l.cpu_millis;
        cand.nodes[it->second].memory_mib -= l.memory_mib;
      } else if (l.node_id.empty()) {
        cand.unplaced_cpu_millis += l.cpu_millis;
        cand.unplaced_memory_mib += l.memory_mib;
      }
    }
    out.push_back(std::move(cand));
  }
  return out;
}

}  // namespace canopy::scheduler
