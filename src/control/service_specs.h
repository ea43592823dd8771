// What a service is: validation of a service definition (the body of POST /api/v1/services),
// the Oakestra SLA import, and a service's state from its instances. Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/json.h"
#include "common/result.h"
#include "core/types.h"

namespace canopy::control {

// A validated service definition.
struct ServiceRequest {
  std::string name;
  Json spec;  // {command, env, ports:[{port, protocol, source_cidrs}], cpu_millis, memory_mib,
              // restart, cluster_id}
  int64_t replicas = 1;
};

inline constexpr int64_t kMaxReplicas = 100;

// Validates a service definition (defaults: ports [], cpu_millis 100, memory_mib 64, replicas 1,
// restart on-failure, env {}, cluster_id null). kInvalidArgument naming the field otherwise.
Result<ServiceRequest> ParseServiceRequest(const Json& body);

// The essential fields of an Oakestra SLA (sla_version, applications[].microservices[]): one
// service per microservice, named "<application_name>-<microservice_name>", command from `cmd`,
// ports from `port` ("P", "P/udp", "H:C/proto", several separated by ',' or ';'; H must equal C:
// processes are not port-mapped), memory (MiB) -> memory_mib, vcpus -> cpu_millis (x1000),
// `environment` ["K=V"] -> env, optional `replicas`. kInvalidArgument (with the microservice's
// name) for anything Canopy cannot run, e.g. an image without `cmd`. Example: docs/services.md.
Result<std::vector<ServiceRequest>> ParseOakestraSla(const Json& sla);

// "undeployed", "undeploying", "pending", "deploying", "running", "degraded"; `reason` is the
// first pending instance's InstanceReasonText (empty otherwise).
std::string ServiceState(const core::Service& s,
                         const std::vector<core::ServiceInstance>& instances, std::string* reason);
// "<reason code>: <reason>" (either alone when the other is empty): what people read.
std::string InstanceReasonText(const core::ServiceInstance& i);

}  // namespace canopy::control
