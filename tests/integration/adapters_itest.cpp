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
#include "net/pki.h"
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
                            const Json& secret, const std::string& adapter = "") {
    Json body = {{"name", name}, {"provider", provider}, {"secret", secret}};
    if (!adapter.empty()) body["adapter"] = adapter;
    return root.Call("POST", "/api/v1/credentials", DumpJson(body), admin);
  };
  // Two live fake adapters: a new fake credential names the one it is bound to.
  auto ambiguous = add_credential("f0", "fake", {{"api_key", "k0"}});
  EXPECT_EQ(ambiguous.status, 400) << ambiguous.body;
  EXPECT_NE(ambiguous.body.find("name one with 'adapter'"), std::string::npos);
  auto f1 = add_credential("f1", "fake", {{"api_key", "k1"}}, ids[0]);
  EXPECT_EQ(f1.status, 201) << f1.body;
  EXPECT_EQ(f1.json.value("adapter_id", ""), ids[0]);
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

// Issue 14: a credential is decrypted only for the adapter it was bound to when added.
TEST(Adapters, ACredentialGoesOnlyToItsOwnAdapterAndHeartbeatsCannotMoveOne) {
  TempDir tmp;
  RootDaemon root(tmp.str() + "/root", {"--heartbeat-interval", "1"});
  root.Start();
  std::string admin = root.AdminToken();
  auto token = [&] {
    return root.Call("POST", "/api/v1/provider-tokens", "", admin).json.value("token", "");
  };
  auto live = [&](const std::string& id) {
    return WaitFor([&] { return StatusById(root, admin)[id] == "live"; }, 30s);
  };
  AdapterDaemon a("fake", root.url(), tmp.str() + "/a");
  a.Start(token());
  ASSERT_TRUE(WaitFor([&] { return !AdapterId(tmp.str() + "/a").empty(); }, 30s));
  std::string a_id = AdapterId(tmp.str() + "/a");
  ASSERT_TRUE(live(a_id));
  auto cred = root.Call("POST", "/api/v1/credentials",
                        R"({"name":"mine","provider":"fake","secret":{"api_key":"k"}})", admin);
  ASSERT_EQ(cred.status, 201) << cred.body;
  EXPECT_EQ(cred.json.value("adapter_id", ""), a_id);
  std::string cred_id = cred.json.value("id", "");
  auto offers = [&] {
    return root.Call("GET", "/api/v1/offers?credential_id=" + cred_id, "", admin);
  };
  EXPECT_EQ(offers().status, 200);

  // A second adapter of the type registers with a fresh token, and is the one seen last.
  // (debug logging: every call b serves is in its log)
  AdapterDaemon b("fake", root.url(), tmp.str() + "/b", {"--log-level", "debug"});
  b.Start(token());
  ASSERT_TRUE(WaitFor([&] { return !AdapterId(tmp.str() + "/b").empty(); }, 30s));
  std::string b_id = AdapterId(tmp.str() + "/b");
  ASSERT_TRUE(live(b_id));
  EXPECT_EQ(offers().status, 200);  // still through a
  // With a gone, the credential is not handed to b: its calls fail until a is back.
  a.KillHard();
  ASSERT_TRUE(WaitFor([&] { return StatusById(root, admin)[a_id] == "down"; }, 30s));
  auto refused = offers();
  EXPECT_EQ(refused.status, 409) << refused.body;
  EXPECT_EQ(refused.json["error"].value("reason", ""), "no_live_adapter");
  EXPECT_NE(refused.body.find(a_id), std::string::npos);
  EXPECT_EQ(ReadFile(b.log_path()).find("method=list_offers"), std::string::npos);
  // A new credential now binds to b, the only live one.
  auto other = root.Call("POST", "/api/v1/credentials",
                         R"({"name":"theirs","provider":"fake","secret":{"api_key":"k2"}})", admin);
  ASSERT_EQ(other.status, 201) << other.body;
  EXPECT_EQ(other.json.value("adapter_id", ""), b_id);
  a.Start("");
  ASSERT_TRUE(live(a_id));
  EXPECT_EQ(offers().status, 200);

  // A heartbeat announcing another URL is refused; the registered URL stays.
  auto identity = ParseJsonObject(ReadFile(tmp.str() + "/b/identity.json"));
  ASSERT_TRUE(identity.has_value());
  std::string b_key = identity->value("adapter_key", "");
  std::string b_url =
      root.Call("GET", "/api/v1/providers/" + b_id, "", admin).json.value("url", "");
  auto moved = root.Call("POST", "/api/v1/providers/" + b_id + "/heartbeat",
                         R"({"url":"http://127.0.0.1:9"})", b_key);
  EXPECT_EQ(moved.status, 409) << moved.body;
  EXPECT_EQ(moved.json["error"].value("reason", ""), "adapter_moved");
  EXPECT_EQ(root.Call("GET", "/api/v1/providers/" + b_id, "", admin).json.value("url", ""), b_url);
  // Moving takes a registration with a fresh token and the adapter's key: same id.
  std::string csr = *net::pki::NewCsr(*net::pki::NewKey(), "adapter", {});
  auto wrong_key = root.Call("POST", "/api/v1/providers/register",
                             DumpJson({{"token", token()},
                                       {"type", "fake"},
                                       {"url", "https://127.0.0.1:9"},
                                       {"csr", csr},
                                       {"adapter_id", b_id},
                                       {"adapter_key", "not-the-key"}}));
  EXPECT_EQ(wrong_key.status, 401) << wrong_key.body;
  auto move = root.Call("POST", "/api/v1/providers/register",
                        DumpJson({{"token", token()},
                                  {"type", "fake"},
                                  {"url", b_url},
                                  {"csr", csr},
                                  {"adapter_id", b_id},
                                  {"adapter_key", b_key}}));
  EXPECT_EQ(move.status, 201) << move.body;
  EXPECT_EQ(move.json.value("id", ""), b_id);
}

TEST(Adapters, ARootRequiringApprovalGivesNoCredentialToAnUnapprovedAdapter) {
  TempDir tmp;
  RootDaemon root(tmp.str() + "/root", {"--heartbeat-interval", "1", "--require-adapter-approval"});
  root.Start();
  std::string admin = root.AdminToken();
  AdapterDaemon a("fake", root.url(), tmp.str() + "/a");
  a.Start(root.Call("POST", "/api/v1/provider-tokens", "", admin).json.value("token", ""));
  ASSERT_TRUE(WaitFor([&] { return !AdapterId(tmp.str() + "/a").empty(); }, 30s));
  std::string id = AdapterId(tmp.str() + "/a");
  ASSERT_TRUE(WaitFor([&] { return StatusById(root, admin)[id] == "live"; }, 30s));
  EXPECT_EQ(root.Call("GET", "/api/v1/providers/" + id, "", admin).json["approved"], false);
  const std::string body = R"({"name":"c","provider":"fake","secret":{"api_key":"k"}})";
  auto refused = root.Call("POST", "/api/v1/credentials", body, admin);
  EXPECT_EQ(refused.status, 409) << refused.body;
  EXPECT_EQ(refused.json["error"].value("reason", ""), "adapter_not_approved");
  auto approved = root.Call("POST", "/api/v1/providers/" + id + "/approve", "", admin);
  ASSERT_EQ(approved.status, 200) << approved.body;
  EXPECT_EQ(approved.json["approved"], true);
  EXPECT_EQ(root.Call("POST", "/api/v1/credentials", body, admin).status, 201);
}

}  // namespace
}  // namespace canopy::testing
