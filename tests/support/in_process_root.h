// The root's application layer in the test process: a SQLite store in a directory, a fixed
// master key, an operations engine (not started unless asked) and RootCore, optionally served on
// 127.0.0.1 by a real HTTP server; and RootDb, the command queue of a root daemon running in
// another process, opened from its data dir. Not thread-safe; one per test.
#pragma once

#include <memory>
#include <string>
#include <utility>

#include "auth/jwt.h"
#include "auth/secret_box.h"
#include "control/cluster_commands.h"
#include "control/link_hub.h"
#include "net/http.h"
#include "ops/engine.h"
#include "root/root_core.h"
#include "store/store.h"

namespace canopy::testing {

struct InProcessRootOptions {
  root::RootCoreOptions core;
  ops::EngineOptions engine;
  bool serve = true;                                // an HTTP server with the full router
  ClockPtr clock;                                   // null = SystemClock
  std::unique_ptr<control::ProviderOpener> opener;  // null = through live adapters
};

class InProcessRoot {
 public:
  explicit InProcessRoot(const std::string& dir, InProcessRootOptions opts = {});
  ~InProcessRoot();

  root::RootCore& core() { return *core_; }
  store::Store& store() { return *store_; }
  ops::Engine& engine() { return *engine_; }
  const ClockPtr& clock() const { return clock_; }
  const std::string& url() const { return url_; }  // "" when not served

  // A new edge cluster row (PAIRING) and a pairing token for it: {cluster id, token}.
  std::pair<std::string, std::string> NewEdgeCluster(const std::string& name);
  // Enqueues a command and waits (15 s) until the cluster completes it.
  core::ClusterCommand Run(const std::string& cluster_id, core::CommandType type,
                           const Json& args = Json::object());

 private:
  ClockPtr clock_;
  store::StorePtr store_;
  std::unique_ptr<auth::SecretBox> secrets_;
  std::unique_ptr<auth::JwtKeys> jwt_;
  std::unique_ptr<ops::Engine> engine_;
  std::unique_ptr<root::RootCore> core_;
  std::unique_ptr<net::HttpServer> server_;
  std::string url_;
};

// The command queue of a root daemon in another process, through its store and master key
// (commands wake that root's parked link calls only at their deadline: other hub).
class RootDb {
 public:
  explicit RootDb(const std::string& root_data_dir);
  store::Store& store() { return *store_; }
  control::ClusterCommands& commands() { return *commands_; }
  core::ClusterCommand Run(const std::string& cluster_id, core::CommandType type,
                           const Json& args = Json::object());

 private:
  store::StorePtr store_;
  std::unique_ptr<auth::SecretBox> secrets_;
  control::LinkHub hub_;
  std::unique_ptr<control::ClusterCommands> commands_;
};

}  // namespace canopy::testing
