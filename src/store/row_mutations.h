// Compare-and-swap updates of cluster and worker rows with re-read, for every writer that races
// with others (link calls, operations, the firewall sync, request handlers). Thread-safe as the
// store is.
#pragma once

#include <functional>
#include <string>

#include "common/clock.h"
#include "store/store.h"

namespace canopy::store {

// Re-reads the row, applies `fn` and writes it with compare-and-swap (updated_at = now), retrying
// when someone wrote in between (kUnavailable after 20 tries). Errors of `fn` and of the store
// are returned as they are. Returns the written row.
Result<core::Cluster> MutateCluster(Store& s, const Clock& clock, const std::string& id,
                                    const std::function<Status(core::Cluster&)>& fn);
Result<core::Worker> MutateWorker(Store& s, const Clock& clock, const std::string& id,
                                  const std::function<Status(core::Worker&)>& fn);

}  // namespace canopy::store
