// Sweeper: finds cloud instances that carry a Canopy cluster tag but that no row owns any more
// (a worker or cluster row deleted while its instance survived, an old generation left by a
// recreate that failed terminally, ...), reports them, and terminates them when enabled.
// Candidates are the clusters in the store plus every cluster a `cluster.create` operation
// named (its data keeps the credential and region, so deleted clusters are still swept).
// Thread-safe; the periodic runner owns one thread.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "control/cloud_access.h"
#include "store/store.h"

namespace canopy::broker {

struct SweepReport {
  int clusters_checked = 0;
  int instances_seen = 0;
  std::vector<std::string> orphans;  // "<provider id> (<canopy id>)"
  int removed = 0;
  std::vector<std::string> errors;  // per credential/cluster, safe to log
};

// One pass over every candidate cluster. `remove` terminates the orphans found.
SweepReport SweepOnce(store::Store& store, control::CloudAccess& clouds, bool remove);

// Runs SweepOnce every `interval` until destroyed (first pass after one interval).
class PeriodicSweeper {
 public:
  PeriodicSweeper(store::Store& store, control::CloudAccess& clouds, std::chrono::seconds interval,
                  bool remove);
  ~PeriodicSweeper();

 private:
  std::jthread thread_;
};

}  // namespace canopy::broker
