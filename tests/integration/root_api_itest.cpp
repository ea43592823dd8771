// Integration tests of the root control plane: the real canopyd root (and fake provider adapter)
// on a temp data dir, driven over HTTP.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <thread>

#include "api/api.h"
#include "auth/jwt.h"
#include "common/ids.h"
#include "net/pki.h"
#include "support/daemons.h"

namespace canopy::testing {
namespace {

using namespace std::chrono_literals;

class RootApi : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = std::make_unique<RootDaemon>(tmp_.str() + "/data",
                                         std::vector<std::string>{"--heartbeat-interval", "1"});
    root_->Start();
    admin_ = root_->AdminToken();
    ASSERT_FALSE(admin_.empty());
  }
  ApiReply Call(const std::string& m, const std::string& p, const std::string& b = "",
                const std::string& t = "") {
    return root_->Call(m, p, b, t);
  }

  TempDir tmp_;
  std::unique_ptr<RootDaemon> root_;
  std::string admin_;
};

// Replaces every "{param}" segment of a route pattern with `id`.
std::string FillParams(const std::string& pattern, const std::string& id) {
  std::string out;
  for (size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i] == '{') {
      out += id;
      i = pattern.find('}', i);
    } else {
      out += pattern[i];
    }
  }
  return out;
}

bool RoleAllowed(api::Access a, const std::string& role) {
  if (role == "admin") return true;
  switch (a) {
    case api::Access::kPublic:
    case api::Access::kAdapter:
    case api::Access::kAnyUser:
      return true;
    case api::Access::kAdmin:
      return false;
    case api::Access::kInfra:
      return role == "infra";
    case api::Access::kApp:
      return role == "app";
    case api::Access::kInfraOrApp:
      return role == "infra" || role == "app";
  }
  return false;
}

TEST_F(RootApi, EveryRouteEnforcesTheRoleMatrix) {
  root_->CreateUser(admin_, "ivy", {"infra"}, "infra-password-1");
  root_->CreateUser(admin_, "abe", {"app"}, "app-password-12");
  std::map<std::string, std::string> tokens = {{"admin", admin_},
                                               {"infra", root_->Login("ivy", "infra-password-1")},
                                               {"app", root_->Login("abe", "app-password-12")}};
  int checked = 0;
  for (const auto& r : api::RouteTable(api::ApiOptions{})) {
    std::string path = FillParams(r.pattern, "zz-nonexistent");
    for (const auto& [role, token] : tokens) {
      auto reply = Call(r.method, path, "{}", token);
      SCOPED_TRACE(
          fmt::format("{} {} as {}: {} {}", r.method, path, role, reply.status, reply.body));
      EXPECT_GT(reply.status, 0);
      EXPECT_LT(reply.status, 500);
      if (r.access == api::Access::kPublic || r.access == api::Access::kAdapter) continue;
      if (RoleAllowed(r.access, role)) {
        EXPECT_NE(reply.status, 403);
        EXPECT_NE(reply.status, 401);
      } else {
        EXPECT_EQ(reply.status, 403);
        EXPECT_EQ(reply.json["error"]["code"], "permission_denied");
      }
      ++checked;
    }
    if (r.access != api::Access::kPublic) {
      auto anon = Call(r.method, path, "{}");
      EXPECT_EQ(anon.status, 401) << r.method << " " << path << " " << anon.body;
      EXPECT_EQ(anon.json["error"]["code"], "unauthenticated");
    }
  }
  EXPECT_GT(checked, 30);
}

TEST_F(RootApi, ForgedTamperedAndAlgNoneTokensAreRejected) {
  TempDir other;
  auto keys = auth::JwtKeys::LoadOrCreate(other.str() + "/k.pem");
  ASSERT_OK(keys);
  auto me = Call("GET", "/api/v1/users", "", admin_);
  ASSERT_EQ(me.status, 200);
  std::string admin_id = me.json[0]["id"];
  auth::Claims c{admin_id,
                 "admin",
                 {"admin"},
                 UnixSeconds(std::chrono::system_clock::now()),
                 UnixSeconds(std::chrono::system_clock::now()) + 600,
                 "x"};
  auto forged = (*keys)->Sign(c);
  ASSERT_OK(forged);
  EXPECT_EQ(Call("GET", "/api/v1/users", "", *forged).status, 401);

  std::string tampered = admin_;
  tampered[tampered.size() - 3] = tampered[tampered.size() - 3] == 'A' ? 'B' : 'A';
  EXPECT_EQ(Call("GET", "/api/v1/users", "", tampered).status, 401);

  auto dot = admin_.find('.');
  std::string payload = admin_.substr(dot + 1, admin_.rfind('.') - dot - 1);
  std::string none = Base64UrlEncode(R"({"alg":"none","typ":"JWT"})") + "." + payload + ".";
  EXPECT_EQ(Call("GET", "/api/v1/users", "", none).status, 401);
  EXPECT_EQ(Call("GET", "/api/v1/users", "", "garbage").status, 401);
  auto r = root_->Call("GET", "/api/v1/users", "", "");
  EXPECT_EQ(r.status, 401);
}

TEST(RootApiTtl, ExpiredTokenIsRejected) {
  TempDir tmp;
  // exp has whole seconds: a 3 s TTL leaves the first call at least 2 s even on a loaded machine
  // (with 1 s it failed under CI load when login and the call straddled a second).
  RootDaemon root(tmp.str() + "/data", {"--token-ttl", "3"});
  root.Start();
  std::string t = root.AdminToken();
  EXPECT_EQ(root.Call("GET", "/api/v1/users", "", t).status, 200);
  std::this_thread::sleep_for(4200ms);
  auto r = root.Call("GET", "/api/v1/users", "", t);
  EXPECT_EQ(r.status, 401) << r.body;
}

TEST_F(RootApi, LoginFailsWithWrongPasswordAndUnknownUser) {
  auto a = Call("POST", "/api/v1/auth/login", R"({"username":"admin","password":"nope-nope"})");
  auto b = Call("POST", "/api/v1/auth/login", R"({"username":"nobody","password":"nope-nope"})");
  EXPECT_EQ(a.status, 401);
  EXPECT_EQ(b.status, 401);
  EXPECT_EQ(a.json["error"]["message"], b.json["error"]["message"]);
  auto jwks = Call("GET", "/api/v1/auth/jwks");
  ASSERT_EQ(jwks.status, 200);
  EXPECT_EQ(jwks.json["keys"][0]["kty"], "OKP");
}

TEST_F(RootApi, UsersAreCreatedListedAndDeleted) {
  std::string id = root_->CreateUser(admin_, "carol", {"infra", "app"}, "carol-password");
  EXPECT_EQ(Call("POST", "/api/v1/users",
                 R"({"username":"carol","password":"carol-password","roles":["app"]})", admin_)
                .status,
            409);
  EXPECT_EQ(Call("POST", "/api/v1/users", R"({"username":"x","password":"short","roles":["app"]})",
                 admin_)
                .status,
            400);
  EXPECT_EQ(Call("POST", "/api/v1/users",
                 R"({"username":"y","password":"long-enough-pw","roles":["root"]})", admin_)
                .status,
            400);
  auto list = Call("GET", "/api/v1/users", "", admin_);
  ASSERT_EQ(list.status, 200);
  EXPECT_EQ(list.json.size(), 2u);
  std::string carol = root_->Login("carol", "carol-password");
  EXPECT_EQ(Call("DELETE", "/api/v1/users/" + id, "", admin_).status, 204);
  EXPECT_EQ(Call("GET", "/api/v1/providers", "", carol).status, 401);  // deleted user's token
  EXPECT_EQ(Call("DELETE", "/api/v1/users/" + id, "", admin_).status, 404);
  std::string admin_id = list.json[0]["id"];
  EXPECT_EQ(Call("DELETE", "/api/v1/users/" + admin_id, "", admin_).status, 409);  // last admin
}

TEST_F(RootApi, NewPasswordsNeedTwelveCharacters) {
  auto r = Call("POST", "/api/v1/users",
                R"({"username":"x","password":"elevenchars","roles":["app"]})", admin_);
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.json["error"]["message"].get<std::string>().find("at least 12"), std::string::npos);
  EXPECT_EQ(Call("POST", "/api/v1/users",
                 R"({"username":"x","password":"twelve-chars","roles":["app"]})", admin_)
                .status,
            201);
}

TEST_F(RootApi, ChangingAPasswordRevokesEveryTokenIssuedBefore) {
  std::string id = root_->CreateUser(admin_, "erin", {"app"}, "erin-password-1");
  std::string t1 = root_->Login("erin", "erin-password-1");
  std::string t2 = root_->Login("erin", "erin-password-1");
  ASSERT_EQ(Call("GET", "/api/v1/services", "", t1).status, 200);
  auto wrong = Call("POST", "/api/v1/auth/password",
                    R"({"current_password":"not-it-at-all","new_password":"erin-password-2"})", t1);
  EXPECT_EQ(wrong.status, 401);
  auto shortpw = Call("POST", "/api/v1/auth/password",
                      R"({"current_password":"erin-password-1","new_password":"short"})", t1);
  EXPECT_EQ(shortpw.status, 400);
  EXPECT_EQ(Call("GET", "/api/v1/services", "", t1).status, 200);  // nothing changed yet
  auto ok = Call("POST", "/api/v1/auth/password",
                 R"({"current_password":"erin-password-1","new_password":"erin-password-2"})", t1);
  ASSERT_EQ(ok.status, 204) << ok.body;
  for (const auto& t : {t1, t2}) {
    auto revoked = Call("GET", "/api/v1/services", "", t);
    EXPECT_EQ(revoked.status, 401);
    EXPECT_EQ(revoked.json["error"]["message"], "token revoked by a password change");
  }
  EXPECT_EQ(
      Call("POST", "/api/v1/auth/login", R"({"username":"erin","password":"erin-password-1"})")
          .status,
      401);
  std::string t3 = root_->Login("erin", "erin-password-2");
  EXPECT_EQ(Call("GET", "/api/v1/services", "", t3).status, 200);
  // An admin resets it: erin's tokens are revoked again; only admins may.
  EXPECT_EQ(
      Call("PUT", "/api/v1/users/" + id + "/password", R"({"password":"erin-password-3"})", t3)
          .status,
      403);
  EXPECT_EQ(
      Call("PUT", "/api/v1/users/" + id + "/password", R"({"password":"erin-password-3"})", admin_)
          .status,
      204);
  EXPECT_EQ(Call("GET", "/api/v1/services", "", t3).status, 401);
  EXPECT_EQ(Call("GET", "/api/v1/services", "", root_->Login("erin", "erin-password-3")).status,
            200);
  EXPECT_EQ(
      Call("PUT", "/api/v1/users/usr-nobody/password", R"({"password":"whatever-long-1"})", admin_)
          .status,
      404);
  // Survives a restart (the generation is stored).
  root_->Restart();
  EXPECT_EQ(Call("GET", "/api/v1/services", "", t3).status, 401);
}

TEST_F(RootApi, SigningKeyRotationKeepsIssuedTokensValid) {
  auto before = Call("GET", "/api/v1/auth/jwks");
  ASSERT_EQ(before.json["keys"].size(), 1u);
  auto rotated = Call("POST", "/api/v1/auth/keys/rotate", "", admin_);
  ASSERT_EQ(rotated.status, 200) << rotated.body;
  std::string kid = rotated.json["kid"];
  EXPECT_NE(kid, before.json["keys"][0]["kid"]);
  auto after = Call("GET", "/api/v1/auth/jwks");
  ASSERT_EQ(after.json["keys"].size(), 2u);
  EXPECT_EQ(after.json["keys"][0]["kid"], kid);
  EXPECT_EQ(Call("GET", "/api/v1/users", "", admin_).status, 200);  // signed by the old key
  std::string fresh = root_->AdminToken();
  EXPECT_EQ(Call("GET", "/api/v1/users", "", fresh).status, 200);
  root_->Restart();
  EXPECT_EQ(Call("GET", "/api/v1/users", "", admin_).status, 200);
  EXPECT_EQ(Call("GET", "/api/v1/users", "", fresh).status, 200);
  EXPECT_EQ(Call("GET", "/api/v1/auth/jwks").json["keys"].size(), 2u);
}

TEST_F(RootApi, RepeatedFailedLoginsAreThrottledWith429BeforeAnyPasswordWork) {
  root_->CreateUser(admin_, "fred", {"app"}, "fred-password-1");
  int refused = 0;
  ApiReply last;
  for (int i = 0; i < 12; ++i) {
    last = Call("POST", "/api/v1/auth/login", R"({"username":"fred","password":"guess-guess"})");
    if (last.status == 429) ++refused;
  }
  EXPECT_GE(refused, 1);
  EXPECT_EQ(last.status, 429);
  EXPECT_EQ(last.json["error"]["code"], "resource_exhausted");
  EXPECT_EQ(last.json["error"]["reason"], "login_throttled");
  EXPECT_FALSE(last.headers["retry-after"].empty());
  // Throttled even with the right password; other users are not affected.
  EXPECT_EQ(
      Call("POST", "/api/v1/auth/login", R"({"username":"fred","password":"fred-password-1"})")
          .status,
      429);
  EXPECT_FALSE(root_->AdminToken().empty());
}

TEST_F(RootApi, RestartKeepsDataAndTokens) {
  root_->CreateUser(admin_, "dave", {"app"}, "dave-password");
  root_->Restart();
  EXPECT_EQ(Call("GET", "/api/v1/users", "", admin_).status, 200);
  EXPECT_FALSE(root_->Login("dave", "dave-password").empty());
  auto mode = std::filesystem::status(root_->data_dir() + "/jwt-ed25519.pem").permissions();
  EXPECT_EQ(mode & std::filesystem::perms::all,
            std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
}

TEST(RootBootstrap, GeneratedAdminPasswordIsWritten0600) {
  TempDir tmp;
  std::string dir = tmp.str() + "/data";
  Process p({CanopydPath(), "root", "--listen", "127.0.0.1:0", "--data-dir", dir}, {},
            tmp.str() + "/root.log");
  uint16_t port = WaitForUrlFilePort(
      dir + "/root.url", [&] { return p.Running(); }, 20s);
  ASSERT_NE(port, 0) << ReadFile(tmp.str() + "/root.log");
  std::string url = fmt::format("http://127.0.0.1:{}", port);
  ASSERT_TRUE(WaitFor([&] { return CallApi(url, "GET", "/healthz").status == 200; }, 20s));
  std::string pw = ReadFile(dir + "/admin-password");
  while (!pw.empty() && pw.back() == '\n') pw.pop_back();
  ASSERT_GE(pw.size(), 16u);
  auto perms = std::filesystem::status(dir + "/admin-password").permissions();
  EXPECT_EQ(perms & std::filesystem::perms::all,
            std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  auto r = CallApi(url, "POST", "/api/v1/auth/login",
                   DumpJson({{"username", "admin"}, {"password", pw}}));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(ReadFile(tmp.str() + "/root.log").find(pw), std::string::npos);
}

// Provider registry and credentials with the fake adapter.
class RootWithAdapter : public RootApi {
 protected:
  void SetUp() override {
    RootApi::SetUp();
    auto tok = Call("POST", "/api/v1/provider-tokens", "", admin_);
    ASSERT_EQ(tok.status, 201) << tok.body;
    token_ = tok.json["token"];
    adapter_ = std::make_unique<AdapterDaemon>("fake", root_->url(), tmp_.str() + "/adapter");
    adapter_->Start(token_);
    ASSERT_TRUE(WaitFor(
        [&] { return Call("GET", "/api/v1/providers", "", admin_).json.size() == 1; }, 10s));
  }
  std::string token_;
  std::unique_ptr<AdapterDaemon> adapter_;
};

TEST_F(RootWithAdapter, AdapterIsLiveThenDownThenLiveAgainWithSameId) {
  auto list = Call("GET", "/api/v1/providers", "", admin_);
  ASSERT_EQ(list.json.size(), 1u);
  EXPECT_EQ(list.json[0]["status"], "live");
  EXPECT_EQ(list.json[0]["type"], "fake");
  std::string id = list.json[0]["id"];
  // The token was single use.
  auto again = Call("POST", "/api/v1/providers/register",
                    DumpJson({{"token", token_},
                              {"type", "fake"},
                              {"url", "https://127.0.0.1:1"},
                              {"csr", *net::pki::NewCsr(*net::pki::NewKey(), "adapter", {})}}));
  EXPECT_EQ(again.status, 401);

  adapter_->KillHard();
  auto killed_at = std::chrono::steady_clock::now();
  ASSERT_TRUE(WaitFor(
      [&] { return Call("GET", "/api/v1/providers", "", admin_).json[0]["status"] == "down"; },
      6s));
  // Down within 3 heartbeat periods (1 s each) plus one poll of slack.
  EXPECT_LT(std::chrono::steady_clock::now() - killed_at, 4500ms);

  adapter_->Start("");  // identity from its data dir, no new token
  ASSERT_TRUE(WaitFor(
      [&] { return Call("GET", "/api/v1/providers", "", admin_).json[0]["status"] == "live"; },
      5s));
  list = Call("GET", "/api/v1/providers", "", admin_);
  EXPECT_EQ(list.json.size(), 1u);
  EXPECT_EQ(list.json[0]["id"], id);

  EXPECT_EQ(Call("DELETE", "/api/v1/providers/" + id, "", admin_).status, 204);
  EXPECT_EQ(Call("GET", "/api/v1/providers", "", admin_).json.size(), 0u);
}

TEST_F(RootWithAdapter, CredentialSecretNeverLeavesEncryptedStorage) {
  std::string secret = "SUPERSECRET-" + RandomHex(12);
  auto created =
      Call("POST", "/api/v1/credentials",
           DumpJson({{"name", "fake1"}, {"provider", "fake"}, {"secret", {{"api_key", secret}}}}),
           admin_);
  ASSERT_EQ(created.status, 201) << created.body;
  std::string id = created.json["id"];
  auto list = Call("GET", "/api/v1/credentials", "", admin_);
  auto one = Call("GET", "/api/v1/credentials/" + id, "", admin_);
  EXPECT_EQ(one.status, 200);
  EXPECT_EQ(one.json["name"], "fake1");
  auto dup =
      Call("POST", "/api/v1/credentials",
           DumpJson({{"name", "fake1"}, {"provider", "fake"}, {"secret", {{"api_key", secret}}}}),
           admin_);
  EXPECT_EQ(dup.status, 409);
  auto rejected = Call(
      "POST", "/api/v1/credentials",
      DumpJson(
          {{"name", "bad"}, {"provider", "fake"}, {"secret", {{"api_key", "invalid-" + secret}}}}),
      admin_);
  EXPECT_EQ(rejected.status, 422) << rejected.body;
  auto no_adapter = Call(
      "POST", "/api/v1/credentials",
      DumpJson({{"name", "aws1"}, {"provider", "aws"}, {"secret", {{"api_key", secret}}}}), admin_);
  EXPECT_EQ(no_adapter.status, 409) << no_adapter.body;

  for (const auto* r : {&created, &list, &one, &dup, &rejected, &no_adapter}) {
    EXPECT_EQ(r->body.find(secret), std::string::npos) << r->body;
  }
  root_->Stop();  // flush the WAL into the database file too
  for (const auto& e : std::filesystem::recursive_directory_iterator(tmp_.path())) {
    if (!e.is_regular_file()) continue;
    EXPECT_EQ(ReadFile(e.path().string()).find(secret), std::string::npos) << e.path();
  }
  root_->Start();
  EXPECT_EQ(Call("DELETE", "/api/v1/credentials/" + id, "", admin_).status, 204);
  EXPECT_EQ(Call("GET", "/api/v1/credentials/" + id, "", admin_).status, 404);
}

// 1,000 malformed or random requests across all routes: no 5xx, and the daemon stays up.
TEST_F(RootApi, RandomAndMalformedRequestsNeverCause5xx) {
  std::mt19937 rng(12345);
  auto routes = api::RouteTable(api::ApiOptions{});
  std::vector<std::string> methods = {"GET", "POST", "PUT", "DELETE", "PATCH"};
  std::vector<std::string> bodies = {
      "",
      "{",
      "}",
      "[]",
      "null",
      "42",
      "\"str\"",
      "{\"name\":",
      "{\"username\":5,\"password\":[]}",
      "{\"name\":{\"a\":1},\"provider\":true,\"secret\":\"x\"}",
      "{\"roles\":\"admin\"}",
      "{\"count\":-1}",
      "{\"steps\":1e400}",
      "{\"token\":null,\"type\":\"\",\"url\":\"javascript:x\"}",
      std::string(2 << 20, 'a'),
      std::string(300, '['),
      "\xff\xfe\xfd",
      "{\"username\":\"\xc3\x28\"}",
      "{\"name\":\"" + std::string(5000, 'n') + "\",\"provider\":\"fake\",\"secret\":{}}",
      "{\"username\":\"u\",\"password\":\"" + std::string(3000, 'p') + "\",\"roles\":[\"app\"]}",
      "{\"ttl_seconds\":18446744073709551615}",
      "{\"a\":" + std::string(1000, '[') + std::string(1000, ']') + "}"};
  std::vector<std::string> ids = {"x",
                                  "%00",
                                  "..",
                                  "%2e%2e%2f",
                                  std::string(500, 'i'),
                                  "usr-abc",
                                  "%27%3B%20DROP%20TABLE%20users%3B--",
                                  "%ff%fe"};
  std::vector<std::string> tokens = {"", admin_, "bad.token.here", admin_ + "x"};
  int fivexx = 0;
  for (int i = 0; i < 1000; ++i) {
    const auto& r = routes[rng() % routes.size()];
    std::string path = FillParams(r.pattern, ids[rng() % ids.size()]);
    if (rng() % 5 == 0) path += "?target=" + ids[rng() % ids.size()] + "&x=%zz";
    std::string method = rng() % 4 == 0 ? methods[rng() % methods.size()] : r.method;
    const std::string& body = bodies[rng() % bodies.size()];
    auto reply = CallApi(root_->url(), method, path, body, tokens[rng() % tokens.size()]);
    if (reply.status >= 500 || reply.status == 0) {
      ++fivexx;
      ADD_FAILURE() << method << " " << path << " -> " << reply.status << " "
                    << reply.body.substr(0, 200);
    } else if (reply.status >= 400) {
      EXPECT_TRUE(reply.json.contains("error"))
          << method << " " << path << " " << reply.body.substr(0, 200);
    }
  }
  EXPECT_EQ(fivexx, 0);
  EXPECT_TRUE(root_->Running());
  EXPECT_EQ(Call("GET", "/healthz").status, 200);
}

TEST_F(RootApi, ServesOpenApiAndMetrics) {
  auto doc = Call("GET", "/api/v1/openapi.json");
  ASSERT_EQ(doc.status, 200);
  EXPECT_EQ(doc.json["openapi"], "3.0.3");
  auto m = Call("GET", "/metrics", "", admin_);
  ASSERT_EQ(m.status, 200);
  EXPECT_NE(m.body.find("canopy_http_requests_total"), std::string::npos);
  EXPECT_EQ(Call("GET", "/metrics").status, 401);
}

}  // namespace
}  // namespace canopy::testing
