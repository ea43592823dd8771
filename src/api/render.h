// The JSON the API serves for its resources (clusters, workers, services). Pure; thread-safe.
#pragma once

#include <map>

#include "common/json.h"
#include "control/services.h"
#include "core/types.h"

namespace canopy::api {

// A cluster (never its key, never its sealed identity).
Json ClusterToJson(const core::Cluster& c);
// A worker as served by GET /api/v1/clusters/{id}/workers.
// `systems` (node id -> what the node reported) fills "system"; null until the node reported.
Json WorkerToJson(const core::Worker& w,
                  const std::map<std::string, core::NodeSystem>& systems = {});
// A service: spec fields, replicas, deployed, state, reason and instances.
Json ServiceToJson(const control::ServiceView& v);

}  // namespace canopy::api
