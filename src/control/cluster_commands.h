// ClusterCommands: the root's command queue to its clusters (protocol: src/cluster/README.md).
// A command is persisted, then delivered on the cluster's link at least once until the cluster
// acknowledges it with a result; the cluster runs each command id once. Used by the broker
// (node tokens, pings, drains), the scheduler (deploy/undeploy jobs) and the cluster tier (acks).
// Thread-safe.
#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include "auth/secret_box.h"
#include "common/clock.h"
#include "common/ids.h"
#include "common/json.h"
#include "control/link_hub.h"
#include "core/types.h"
#include "store/store.h"

namespace canopy::control {

class ClusterCommands {
 public:
  ClusterCommands(store::Store& store, ClockPtr clock, IdGeneratorPtr ids,
                  const auth::SecretBox& secrets, LinkHub& hub);

  // Persists a command for `cluster_id` and wakes its parked link call. Call it outside a store
  // transaction (a woken link call must see the row). kNotFound for an unknown cluster;
  // kInvalidArgument when args is not an object.
  Result<core::ClusterCommand> Enqueue(const std::string& cluster_id, core::CommandType type,
                                       const Json& args = Json::object());
  // The same for a type given by name (1-64 of [a-z0-9_.-]): for protocol tests of types a
  // cluster does not know.
  Result<core::ClusterCommand> EnqueueNamed(const std::string& cluster_id, std::string_view type,
                                            const Json& args = Json::object());
  // The command with its result; a node token in the result (stored sealed) is opened again.
  Result<core::ClusterCommand> Get(const std::string& command_id) const;
  // Polls Get until the command is no longer pending or `timeout` passes (kDeadlineExceeded).
  // Blocks the calling thread.
  Result<core::ClusterCommand> Wait(const std::string& command_id,
                                    std::chrono::milliseconds timeout) const;
  // Applies a link call's acks [{id, ok, result?, error?:{code,message,reason?}}]; returns the ids
  // taken (unknown ids too: the cluster may stop re-sending them). Tokens in results are stored
  // only sealed (the command id as associated data).
  Result<Json> ApplyAcks(const std::string& cluster_id, const Json& acks);

 private:
  store::Store& store_;
  ClockPtr clock_;
  IdGeneratorPtr ids_;
  const auth::SecretBox& secrets_;
  LinkHub& hub_;
};

}  // namespace canopy::control
