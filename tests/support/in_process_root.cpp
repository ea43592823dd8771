#include "support/in_process_root.h"

#include <gtest/gtest.h>

#include "net/error_mapping.h"
#include "support/test_util.h"

namespace canopy::testing {

using namespace std::chrono_literals;

namespace {

core::ClusterCommand RunAndWait(control::ClusterCommands& commands, const std::string& cluster_id,
                                core::CommandType type, const Json& args) {
  auto cmd = commands.Enqueue(cluster_id, type, args);
  EXPECT_TRUE(cmd.has_value()) << (cmd ? "" : cmd.error().ToString());
  if (!cmd) return {};
  auto done = commands.Wait(cmd->id, 15s);
  EXPECT_TRUE(done.has_value()) << (done ? "" : done.error().ToString());
  return done ? *done : core::ClusterCommand{};
}

}  // namespace

InProcessRoot::InProcessRoot(const std::string& dir, InProcessRootOptions opts)
    : clock_(opts.clock ? opts.clock : std::make_shared<SystemClock>()) {
  auto s = store::OpenStore("sqlite:" + dir + "/canopy.db");
  EXPECT_TRUE(s.has_value()) << (s ? "" : s.error().ToString());
  if (s) store_ = std::move(*s);
  auto b = auth::SecretBox::FromKey(SecretString(std::string(32, 'k')));
  EXPECT_TRUE(b.has_value());
  if (b) secrets_ = std::move(*b);
  auto j = auth::JwtKeys::LoadOrCreate(dir + "/jwt-ed25519.pem");
  EXPECT_TRUE(j.has_value());
  if (j) jwt_ = std::move(*j);
  auto ids = std::make_shared<RandomIdGenerator>();
  engine_ = std::make_unique<ops::Engine>(*store_, clock_, ids, opts.engine);
  core_ = std::make_unique<root::RootCore>(*store_, *jwt_, *secrets_, clock_, ids, *engine_,
                                           opts.core, std::move(opts.opener));
  core_->Start();
  if (opts.serve) {
    auto server =
        net::HttpServer::Start(net::ServerOptions{}, core_->Router(), net::ErrorResponse, nullptr);
    EXPECT_TRUE(server.has_value()) << (server ? "" : server.error().ToString());
    if (server) {
      server_ = std::move(*server);
      url_ = "http://127.0.0.1:" + std::to_string(server_->port());
    }
  }
}

InProcessRoot::~InProcessRoot() {
  if (server_) server_->Stop();
  engine_->Stop();
  core_->Stop();
}

std::pair<std::string, std::string> InProcessRoot::NewEdgeCluster(const std::string& name) {
  core::Cluster c = control::NewClusterRow(*core_->ids(), *clock_, name, core::ClusterKind::kEdge,
                                           core::ClusterState::kPairing, "usr-test");
  EXPECT_TRUE(store_->clusters().Create(c).has_value());
  auto grant = core_->tier().CreateToken(c.id);
  EXPECT_TRUE(grant.has_value());
  return {c.id, grant ? grant->token : ""};
}

core::ClusterCommand InProcessRoot::Run(const std::string& cluster_id, core::CommandType type,
                                        const Json& args) {
  return RunAndWait(core_->commands(), cluster_id, type, args);
}

RootDb::RootDb(const std::string& root_data_dir) {
  auto s = store::OpenStore("sqlite:" + root_data_dir + "/canopy.db");
  EXPECT_TRUE(s.has_value());
  if (s) store_ = std::move(*s);
  auto b = auth::SecretBox::LoadOrCreate(root_data_dir + "/master.key", "");
  EXPECT_TRUE(b.has_value());
  if (b) secrets_ = std::move(*b);
  commands_ = std::make_unique<control::ClusterCommands>(*store_, std::make_shared<SystemClock>(),
                                                         std::make_shared<RandomIdGenerator>(),
                                                         *secrets_, hub_);
}

core::ClusterCommand RootDb::Run(const std::string& cluster_id, core::CommandType type,
                                 const Json& args) {
  return RunAndWait(*commands_, cluster_id, type, args);
}

}  // namespace canopy::testing
