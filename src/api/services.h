// In-process API of the root's services (issue: services on the edge-cloud system): request
// validation, the Oakestra SLA import, the JSON served by /api/v1/services, and the board where
// cluster link reports leave their job lists for the scheduler (src/scheduler). Thread-safe.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/json.h"
#include "common/result.h"
#include "core/types.h"

namespace canopy::api {

// A validated POST /api/v1/services body.
struct ServiceRequest {
  std::string name;
  Json spec;  // {command, env, ports:[{port, protocol, source_cidrs}], cpu_millis, memory_mib, restart, cluster_id}
  int64_t replicas = 1;
};

inline constexpr int64_t kMaxReplicas = 100;

// Validates a service body (defaults: ports [], cpu_millis 100, memory_mib 64, replicas 1,
// restart on-failure, env {}, cluster_id null). kInvalidArgument naming the field otherwise.
Result<ServiceRequest> ParseServiceRequest(const Json& body);

// The essential fields of an Oakestra SLA (sla_version, applications[].microservices[]): one
// service per microservice, named "<application_name>-<microservice_name>", command from `cmd`,
// ports from `port` ("P", "P/udp", "H:C/proto", several separated by ',' or ';'; H must equal C:
// processes are not port-mapped), memory (MiB) -> memory_mib, vcpus -> cpu_millis (x1000),
// `environment` ["K=V"] -> env, optional `replicas`. kInvalidArgument (with the microservice's
// name) for anything Canopy cannot run, e.g. an image without `cmd`. Example: docs/services.md.
Result<std::vector<ServiceRequest>> ParseOakestraSla(const Json& sla);

// The service as served: spec fields, replicas, deployed, state, reason and instances.
// `node_workers` maps node ids to worker ids (cloud workers) for instances[].worker_id.
Json ServiceToJson(const core::Service& s, const std::vector<core::ServiceInstance>& instances,
                   const std::map<std::string, std::string>& node_workers);
// "undeployed", "undeploying", "pending", "deploying", "running", "degraded"; `reason` is the
// first pending instance's reason (empty otherwise).
std::string ServiceState(const core::Service& s, const std::vector<core::ServiceInstance>& instances,
                         std::string* reason);

// Latest job list each cluster reported on its link (src/cluster/README.md "jobs"), with a
// per-cluster sequence number, and the bell that wakes the scheduler (deploy, undeploy, scale,
// reports). In memory: every link call carries the full list again.
class ServiceBoard {
 public:
  struct Report {
    Json jobs = Json::array();
    uint64_t seq = 0;
    TimePoint at{};
  };
  void RecordJobs(const std::string& cluster_id, Json jobs, TimePoint at);
  std::map<std::string, Report> Reports() const;
  void Wake();
  // Returns when woken (since the last call) or after `timeout`.
  void WaitForWake(std::chrono::milliseconds timeout);

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, Report> reports_;
  bool woken_ = false;
};

}  // namespace canopy::api
