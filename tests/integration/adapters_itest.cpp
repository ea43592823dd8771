// Several provider adapters attached at once (two fake, plus a local one when running as root):
// all are live, credentials of each type validate through their adapter, and detaching one adapter
// leaves the others live and working. Real processes: canopyd root + canopyd provider.
#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <memory>
#include <thread>

#include "common/ids.h"
#include "common/json.h"
#include "support/daemons.h"
#include "support/local_env.h"
#include "support/test_util.h"

namespace canopy::testing {
namespace {

using namespace std::chrono_literals;

std::map<std::string, std::string> StatusById(const RootDaemon& root, const std::string& token) {
  std::map<std::string, std::string> out;
  for (const auto& p : root.Call("GET", "/api/v1/providers", "", token).json) {
    out[p.value("id", "")] = p.value("status", "");
  }
  return out;
}

std::string AdapterId(const std::string& data_dir) {
  auto j = ParseJsonObject(ReadFile(data_dir + "/identity.json"));
  return j.has_value() ? j->value("id", "") : "";
}

TEST(Adapters, SeveralAttachAtOnceAndDetachingOneLeavesTheOthers) {
  TempDir tmp;
  RootDaemon root(tmp.str() + "/root", {"--heartbeat-interval", "1"});
  root.Start();
  std::string admin = root.AdminToken();
  auto token = [&] {
    auto t = root.Call("POST", "/api/v1/provider-tokens", "", admin);
    EXPECT_EQ(t.status, 201) << t.body;
    return t.json.value("token", "");
  };

  std::vector<std::unique_ptr<AdapterDaemon>> adapters;
  std::vector<std::string> dirs;
  for (int i = 0; i < 2; ++i) {
    dirs.push_back(tmp.str() + "/fake" + std::to_string(i));
    adapters.push_back(std::make_unique<AdapterDaemon>("fake", root.url(), dirs.back()));
    adapters.back()->Start(token());
  }
  std::unique_ptr<LocalTestNet> net;
  if (LocalTestNet::Available()) {
    net = std::make_unique<LocalTestNet>();
    dirs.push_back(tmp.str() + "/local");
    adapters.push_back(std::make_unique<AdapterDaemon>(
        "local", root.url(), dirs.back(),
        std::vector<std::string>{"--config", DumpJson(net->Config())}));
    adapters.back()->Start(token());
  }
  // Each adapter writes its id once it has registered (after it serves /healthz): read the ids
  // until every one is there, then wait for all to be live (slow under sanitizers).
  std::vector<std::string> ids;
  ASSERT_TRUE(WaitFor(
      [&] {
        ids.clear();
        for (const auto& d : dirs) ids.push_back(AdapterId(d));
        for (const auto& id : ids) {
          if (id.empty()) return false;
        }
        auto s = StatusById(root, admin);
        for (const auto& id : ids) {
          if (s[id] != "live") return false;
        }
        return s.size() == ids.size();
      },
      30s));

  auto add_credential = [&](const std::string& name, const std::string& provider,
                            const Json& secret) {
    return root.Call("POST", "/api/v1/credentials",
                     DumpJson({{"name", name}, {"provider", provider}, {"secret", secret}}), admin);
  };
  EXPECT_EQ(add_credential("f1", "fake", {{"api_key", "k1"}}).status, 201);
  if (net) {
    EXPECT_EQ(add_credential("l1", "local", {{"type", "local"}}).status, 201);
    EXPECT_EQ(add_credential("l2", "local", {{"type", 7}}).status, 422);
  }

  // Detach the first fake adapter: the others stay live over several heartbeat periods and a fake
  // credential still validates through the remaining fake adapter.
  EXPECT_EQ(root.Call("DELETE", "/api/v1/providers/" + ids[0], "", admin).status, 204);
  std::this_thread::sleep_for(3500ms);
  auto s = StatusById(root, admin);
  EXPECT_EQ(s.count(ids[0]), 0u);
  for (size_t i = 1; i < ids.size(); ++i) EXPECT_EQ(s[ids[i]], "live") << ids[i];
  EXPECT_EQ(add_credential("f2", "fake", {{"api_key", "k2"}}).status, 201);
  if (net) {
    EXPECT_EQ(add_credential("l3", "local", Json::object()).status, 201);
  }

  // With every fake adapter gone, a fake credential cannot be validated (and is not stored).
  EXPECT_EQ(root.Call("DELETE", "/api/v1/providers/" + ids[1], "", admin).status, 204);
  auto none = add_credential("f3", "fake", {{"api_key", "k3"}});
  EXPECT_GE(none.status, 400) << none.body;
  EXPECT_LT(none.status, 600);
  EXPECT_NE(none.status, 201);
  for (const auto& c : root.Call("GET", "/api/v1/credentials", "", admin).json) {
    EXPECT_NE(c.value("name", ""), "f3");
  }
}

}  // namespace
}  // namespace canopy::testing
