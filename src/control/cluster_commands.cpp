#include "control/cluster_commands.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <thread>

namespace canopy::control {

ClusterCommands::ClusterCommands(store::Store& store, ClockPtr clock, IdGeneratorPtr ids,
                                 const auth::SecretBox& secrets, LinkHub& hub)
    : store_(store), clock_(std::move(clock)), ids_(std::move(ids)), secrets_(secrets), hub_(hub) {}

Result<core::ClusterCommand> ClusterCommands::Enqueue(const std::string& cluster_id,
                                                      core::CommandType type, const Json& args) {
  return EnqueueNamed(cluster_id, core::CommandTypeName(type), args);
}

Result<core::ClusterCommand> ClusterCommands::EnqueueNamed(const std::string& cluster_id,
                                                           std::string_view type,
                                                           const Json& args) {
  bool ok = !type.empty() && type.size() <= 64;
  for (char ch : type) {
    ok = ok && ((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_' || ch == '-' ||
                ch == '.');
  }
  if (!ok) return Error::InvalidArgument("command type must be 1-64 of [a-z0-9_.-]");
  if (!args.is_object()) return Error::InvalidArgument("command args must be an object");
  core::ClusterCommand cmd;
  cmd.id = ids_->NewId("cmd");
  cmd.cluster_id = cluster_id;
  cmd.type = std::string(type);
  cmd.args = args;
  cmd.created_at = clock_->Now();
  auto st = store_.cluster_commands().Create(cmd);
  if (!st) {
    if (st.error().code == ErrorCode::kNotFound) return Error::NotFound("cluster not found");
    return std::move(st).error();
  }
  SPDLOG_INFO("Queued cluster command cluster={} command={} type={}", cluster_id, cmd.id, type);
  hub_.Notify(cluster_id);
  return cmd;
}

Result<core::ClusterCommand> ClusterCommands::Get(const std::string& command_id) const {
  CANOPY_ASSIGN_OR_RETURN(core::ClusterCommand c, store_.cluster_commands().Get(command_id));
  if (c.result.is_object() && c.result.contains("token_sealed") &&
      c.result["token_sealed"].is_string()) {
    std::string sealed;
    if (!Base64Decode(c.result["token_sealed"].get<std::string>(), &sealed)) {
      return Error::Internal("stored command result is corrupt");
    }
    CANOPY_ASSIGN_OR_RETURN(SecretString token, secrets_.Open(sealed, c.id));
    c.result.erase("token_sealed");
    c.result["token"] = token.Reveal();
  }
  return c;
}

Result<core::ClusterCommand> ClusterCommands::Wait(const std::string& command_id,
                                                   std::chrono::milliseconds timeout) const {
  auto end = std::chrono::steady_clock::now() + timeout;
  while (true) {
    CANOPY_ASSIGN_OR_RETURN(core::ClusterCommand c, Get(command_id));
    if (c.state != core::ClusterCommandState::kPending) return c;
    if (std::chrono::steady_clock::now() >= end) {
      return Error::DeadlineExceeded("the cluster has not completed the command yet");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

Result<Json> ClusterCommands::ApplyAcks(const std::string& cluster_id, const Json& acks) {
  Json done = Json::array();
  if (acks.is_null()) return done;
  if (!acks.is_array() || acks.size() > 1000) {
    return Error::InvalidArgument("field 'acks' must be an array");
  }
  for (const Json& a : acks) {
    if (!a.is_object()) return Error::InvalidArgument("every item of 'acks' must be an object");
    CANOPY_ASSIGN_OR_RETURN(std::string id, GetString(a, "id", 128));
    CANOPY_ASSIGN_OR_RETURN(bool ok, GetOptBool(a, "ok", true));
    Json result = a.contains("result") && a["result"].is_object() ? a["result"] : Json::object();
    if (result.contains("token") && result["token"].is_string()) {
      // Tokens in results (create_node_token) are stored only encrypted, the command id as aad.
      auto sealed = secrets_.Seal(SecretString(result["token"].get<std::string>()), id);
      if (!sealed) return sealed.error();
      result.erase("token");
      result["token_sealed"] = Base64Encode(*sealed);
    }
    std::optional<Error> error;
    if (!ok) {
      Error e = Error::Internal("");
      if (a.contains("error") && a["error"].is_object()) {
        const Json& ej = a["error"];
        std::string code = ej.value("code", Json("")).is_string() ? ej.value("code", "") : "";
        e.code = ParseErrorCode(code.substr(0, 64));
        e.message = ej.value("message", Json("")).is_string() ? ej.value("message", "") : "";
        e.message = e.message.substr(0, 1024);
        e.reason = ej.value("reason", Json("")).is_string() ? ej.value("reason", "") : "";
        e.reason = e.reason.substr(0, 64);
      }
      error = std::move(e);
    }
    auto st = store_.cluster_commands().Complete(
        id, cluster_id,
        ok ? core::ClusterCommandState::kSucceeded : core::ClusterCommandState::kFailed, result,
        error ? &*error : nullptr, clock_->Now());
    if (!st) {
      if (st.error().code != ErrorCode::kNotFound) return st.error();
      SPDLOG_WARN("Cluster acknowledged an unknown command cluster={} command={}", cluster_id, id);
    } else {
      SPDLOG_INFO("Cluster command done cluster={} command={} ok={}", cluster_id, id, ok);
    }
    done.push_back(id);
  }
  return done;
}

}  // namespace canopy::control
