// cli/commands against the fake root, in memory (no sockets): output, errors, config handling.
#include "cli/commands.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <deque>
#include <fstream>
#include <map>
#include <sstream>

#include "cli/fake_root.h"
#include "support/test_util.h"

namespace canopy::cli {
namespace {

using fake::FakeRoot;
using namespace std::chrono_literals;

constexpr const char* kRoot = "http://root.test:8080";

class CommandsTest : public ::testing::Test {
 protected:
  CommandsTest()
      : ctx_{out_,
             err_,
             in_,
             [this](const std::string& n) -> std::optional<std::string> {
               auto it = env_.find(n);
               if (it == env_.end()) {
                 return std::nullopt;
               }
               return it->second;
             },
             [this](std::string_view prompt) -> Result<SecretString> {
               prompts_.emplace_back(prompt);
               if (answers_.empty()) {
                 return Error::FailedPrecondition("standard input is not a terminal");
               }
               auto a = answers_.front();
               answers_.pop_front();
               return SecretString(a);
             },
             root_.InMemoryTransport(),
             clock_,
             {}} {
    env_["XDG_CONFIG_HOME"] = dir_.str();
    ctx_.global.root = kRoot;
  }

  std::filesystem::path ConfigFile() const { return dir_.path() / "canopy" / "config.json"; }

  void Clear() {
    out_.str("");
    err_.str("");
  }

  void LogIn() {
    LoginOptions o;
    o.username = FakeRoot::kUser;
    o.password = FakeRoot::kPassword;
    ASSERT_EQ(Login(ctx_, o), kExitOk) << err_.str();
    Clear();
  }

  // Runs `cmd` with -o json and checks stdout is one JSON document and stderr is empty.
  Json RunJson(const std::function<int(Context&)>& cmd) {
    Clear();
    ctx_.global.output = OutputFormat::kJson;
    int rc = cmd(ctx_);
    ctx_.global.output = OutputFormat::kTable;
    EXPECT_EQ(rc, kExitOk) << err_.str();
    EXPECT_EQ(err_.str(), "");
    std::string s = out_.str();
    EXPECT_FALSE(s.empty());
    EXPECT_EQ(s.back(), '\n');
    auto j = ParseJson(s);
    EXPECT_TRUE(j.has_value()) << s;
    return j ? *j : Json();
  }

  // Expects failure with exactly one stderr line and nothing on stdout; returns the line.
  std::string ExpectOneErrorLine(int rc) {
    EXPECT_EQ(rc, kExitError);
    EXPECT_EQ(out_.str(), "");
    std::string e = err_.str();
    EXPECT_EQ(std::count(e.begin(), e.end(), '\n'), 1) << e;
    EXPECT_EQ(e.rfind("error: ", 0), 0u) << e;
    if (!e.empty() && e.back() == '\n') {
      e.pop_back();
    }
    return e;
  }

  testing::TempDir dir_;
  FakeRoot root_;
  std::ostringstream out_;
  std::ostringstream err_;
  std::istringstream in_;
  std::map<std::string, std::string> env_;
  std::vector<std::string> prompts_;
  std::deque<std::string> answers_;
  std::shared_ptr<testing::FakeClock> clock_ = std::make_shared<testing::FakeClock>();
  Context ctx_;
};

// ---- login / logout --------------------------------------------------------------------------

TEST_F(CommandsTest, LoginStoresTokenInPrivateConfigFile) {
  LoginOptions o;
  o.username = FakeRoot::kUser;
  o.password = FakeRoot::kPassword;
  ctx_.global.root = std::string(kRoot) + "/";
  ASSERT_EQ(Login(ctx_, o), kExitOk) << err_.str();
  EXPECT_EQ(err_.str(), "");
  EXPECT_NE(out_.str().find("Logged in to http://root.test:8080 as admin"), std::string::npos);

  struct stat st {};
  ASSERT_EQ(stat(ConfigFile().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(stat(ConfigFile().parent_path().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);

  auto cfg = LoadConfig(ConfigFile());
  ASSERT_OK(cfg);
  EXPECT_EQ(cfg->root, kRoot);
  EXPECT_EQ(cfg->username, "admin");
  EXPECT_EQ(cfg->token.Reveal(), FakeRoot::kToken);
  EXPECT_EQ(cfg->expires_at, FormatRfc3339(clock_->Now() + 3600s));

  auto req = root_.last();
  EXPECT_EQ(req.path, "/api/v1/auth/login");
  auto body = ParseJson(req.body);
  ASSERT_OK(body);
  EXPECT_EQ((*body)["password"], FakeRoot::kPassword);
  // The token never reaches stdout.
  EXPECT_EQ(out_.str().find(FakeRoot::kToken), std::string::npos);
}

TEST_F(CommandsTest, LoginJsonPrintsApiFieldsWithoutTheToken) {
  LoginOptions o;
  o.username = FakeRoot::kUser;
  o.password = FakeRoot::kPassword;
  Json j = RunJson([&](Context& c) { return Login(c, o); });
  EXPECT_EQ(j["token_type"], "Bearer");
  EXPECT_EQ(j["expires_in"], 3600);
  EXPECT_EQ(j["root"], kRoot);
  EXPECT_FALSE(j.contains("access_token"));
  EXPECT_EQ(out_.str().find(FakeRoot::kToken), std::string::npos);
}

TEST_F(CommandsTest, LoginTakesPasswordFromEnvironment) {
  env_["CANOPY_PASSWORD"] = FakeRoot::kPassword;
  LoginOptions o;
  o.username = FakeRoot::kUser;
  EXPECT_EQ(Login(ctx_, o), kExitOk) << err_.str();
  EXPECT_TRUE(prompts_.empty());
}

TEST_F(CommandsTest, LoginPromptsWhenNoPasswordIsGiven) {
  answers_.push_back(FakeRoot::kPassword);
  LoginOptions o;
  o.username = FakeRoot::kUser;
  EXPECT_EQ(Login(ctx_, o), kExitOk) << err_.str();
  ASSERT_EQ(prompts_.size(), 1u);
  EXPECT_NE(prompts_[0].find("admin"), std::string::npos);
}

TEST_F(CommandsTest, LoginWithoutPasswordOrTerminalFailsBeforeAnyRequest) {
  LoginOptions o;
  o.username = FakeRoot::kUser;
  std::string line = ExpectOneErrorLine(Login(ctx_, o));
  EXPECT_NE(line.find("no password given"), std::string::npos);
  EXPECT_NE(line.find("CANOPY_PASSWORD"), std::string::npos);
  EXPECT_TRUE(root_.requests().empty());
}

TEST_F(CommandsTest, LoginWithWrongPasswordShowsApiErrorAndWritesNothing) {
  LoginOptions o;
  o.username = FakeRoot::kUser;
  o.password = "wrong";
  std::string line = ExpectOneErrorLine(Login(ctx_, o));
  EXPECT_EQ(line, "error: wrong username or password (unauthenticated, HTTP 401)");
  EXPECT_FALSE(std::filesystem::exists(ConfigFile()));
}

TEST_F(CommandsTest, LoginWithoutRootFails) {
  ctx_.global.root.reset();
  LoginOptions o;
  o.username = FakeRoot::kUser;
  o.password = FakeRoot::kPassword;
  std::string line = ExpectOneErrorLine(Login(ctx_, o));
  EXPECT_NE(line.find("no root URL"), std::string::npos);
}

TEST_F(CommandsTest, LoginRejectsBadRootUrl) {
  ctx_.global.root = "root.test:8080";
  LoginOptions o;
  o.username = FakeRoot::kUser;
  o.password = FakeRoot::kPassword;
  std::string line = ExpectOneErrorLine(Login(ctx_, o));
  EXPECT_NE(line.find("invalid root URL"), std::string::npos);
}

TEST_F(CommandsTest, LogoutRemovesTokenButKeepsRoot) {
  LogIn();
  ASSERT_EQ(Logout(ctx_), kExitOk) << err_.str();
  auto cfg = LoadConfig(ConfigFile());
  ASSERT_OK(cfg);
  EXPECT_FALSE(cfg->HasToken());
  EXPECT_EQ(cfg->root, kRoot);
  EXPECT_EQ(testing::ReadFile(ConfigFile().string()).find(FakeRoot::kToken), std::string::npos);
  Clear();
  std::string line = ExpectOneErrorLine(UserList(ctx_));
  EXPECT_EQ(line,
            "error: not logged in; run canopy login --root http://root.test:8080 --username admin");
  Json j = RunJson([](Context& c) { return Logout(c); });
  EXPECT_EQ(j["logged_out"], false);
}

// ---- session handling ------------------------------------------------------------------------

TEST_F(CommandsTest, CommandWithoutLoginSaysNotLoggedIn) {
  std::string line = ExpectOneErrorLine(UserList(ctx_));
  EXPECT_EQ(line,
            "error: not logged in; run canopy login --root http://root.test:8080 --username U");
  EXPECT_TRUE(root_.requests().empty());
}

TEST_F(CommandsTest, StoredRootIsUsedWithoutRootOption) {
  LogIn();
  ctx_.global.root.reset();
  EXPECT_EQ(UserList(ctx_), kExitOk) << err_.str();
}

TEST_F(CommandsTest, TokenIsNeverSentToAnotherRoot) {
  LogIn();
  size_t before = root_.requests().size();
  ctx_.global.root = "http://elsewhere:8080";
  std::string line = ExpectOneErrorLine(UserList(ctx_));
  EXPECT_NE(line.find("not logged in"), std::string::npos);
  EXPECT_NE(line.find("--root http://elsewhere:8080"), std::string::npos);
  Clear();
  ctx_.global.root.reset();
  env_["CANOPY_ROOT"] = "http://elsewhere:8080";
  ExpectOneErrorLine(UserList(ctx_));
  EXPECT_EQ(root_.requests().size(), before);
}

TEST_F(CommandsTest, ExpiredLoginAsksToLogInAgainWithoutSendingTheToken) {
  LogIn();
  size_t before = root_.requests().size();
  clock_->Advance(3601s);
  std::string line = ExpectOneErrorLine(UserList(ctx_));
  EXPECT_NE(line.find("expired"), std::string::npos);
  EXPECT_NE(line.find("canopy login --root http://root.test:8080 --username admin"),
            std::string::npos);
  EXPECT_EQ(root_.requests().size(), before);
}

TEST_F(CommandsTest, RejectedTokenSuggestsLoggingInAgain) {
  LogIn();
  root_.RevokeTokens();
  std::string line = ExpectOneErrorLine(ProviderList(ctx_));
  EXPECT_EQ(line,
            "error: invalid or expired token (unauthenticated, HTTP 401); log in again with "
            "canopy login --root http://root.test:8080 --username admin");
}

TEST_F(CommandsTest, UnreachableRootGivesTransportMessage) {
  LogIn();
  root_.set_unreachable(true);
  std::string line = ExpectOneErrorLine(UserList(ctx_));
  EXPECT_EQ(line, "error: cannot reach root at http://root.test:8080: Connection refused");
}

TEST_F(CommandsTest, MalformedConfigFileIsReported) {
  std::filesystem::create_directories(ConfigFile().parent_path());
  { std::ofstream(ConfigFile()) << "{oops"; }
  std::string line = ExpectOneErrorLine(UserList(ctx_));
  EXPECT_NE(line.find("malformed"), std::string::npos);
}

// ---- users -----------------------------------------------------------------------------------

TEST_F(CommandsTest, UserListPrintsAlignedTable) {
  LogIn();
  ASSERT_EQ(UserList(ctx_), kExitOk) << err_.str();
  EXPECT_EQ(out_.str(),
            "ID       USERNAME   ROLES             CREATED\n"
            "usr-1    admin      admin,infra,app   2026-11-28T12:00:00.000Z\n"
            "usr-22   bob        app               2026-11-28T12:05:00.000Z\n");
  EXPECT_EQ(root_.last().headers["authorization"], std::string("Bearer ") + FakeRoot::kToken);
}

TEST_F(CommandsTest, UserListJsonIsExactlyTheApiBody) {
  LogIn();
  Json j = RunJson([](Context& c) { return UserList(c); });
  ASSERT_TRUE(j.is_array());
  ASSERT_EQ(j.size(), 2u);
  EXPECT_EQ(j[1]["username"], "bob");
  EXPECT_EQ(j[0]["roles"], Json::array({"admin", "infra", "app"}));
}

TEST_F(CommandsTest, UserCreateSendsUsernameRolesAndPassword) {
  LogIn();
  UserCreateOptions o{"carol", {"infra", "app"}, std::string("carol-pw")};
  ASSERT_EQ(UserCreate(ctx_, o), kExitOk) << err_.str();
  auto req = root_.last();
  EXPECT_EQ(req.method, "POST");
  EXPECT_EQ(req.path, "/api/v1/users");
  auto body = ParseJson(req.body);
  ASSERT_OK(body);
  EXPECT_EQ((*body)["username"], "carol");
  EXPECT_EQ((*body)["password"], "carol-pw");
  EXPECT_EQ((*body)["roles"], Json::array({"infra", "app"}));
  EXPECT_NE(out_.str().find("usr-new"), std::string::npos);
  EXPECT_EQ(out_.str().find("carol-pw"), std::string::npos);
}

TEST_F(CommandsTest, UserCreateUsesNewPasswordVariableNotLoginPassword) {
  LogIn();
  env_["CANOPY_PASSWORD"] = "login-pw";
  env_["CANOPY_NEW_PASSWORD"] = "new-pw";
  ASSERT_EQ(UserCreate(ctx_, {"dave", {"app"}, std::nullopt}), kExitOk) << err_.str();
  EXPECT_EQ((*ParseJson(root_.last().body))["password"], "new-pw");
}

TEST_F(CommandsTest, UserCreatePromptsTwiceAndRejectsMismatch) {
  LogIn();
  answers_ = {"one-pw", "two-pw"};
  size_t before = root_.requests().size();
  std::string line = ExpectOneErrorLine(UserCreate(ctx_, {"erin", {"app"}, std::nullopt}));
  EXPECT_NE(line.find("do not match"), std::string::npos);
  EXPECT_EQ(prompts_.size(), 2u);
  EXPECT_EQ(root_.requests().size(), before);

  Clear();
  answers_ = {"same-pw", "same-pw"};
  ASSERT_EQ(UserCreate(ctx_, {"erin", {"app"}, std::nullopt}), kExitOk) << err_.str();
  EXPECT_EQ((*ParseJson(root_.last().body))["password"], "same-pw");
}

TEST_F(CommandsTest, UserCreateRequiresARole) {
  LogIn();
  std::string line = ExpectOneErrorLine(UserCreate(ctx_, {"frank", {}, std::string("pw")}));
  EXPECT_NE(line.find("--role"), std::string::npos);
}

TEST_F(CommandsTest, UserCreateShowsServerValidationError) {
  LogIn();
  std::string line = ExpectOneErrorLine(UserCreate(ctx_, {"g", {"owner"}, std::string("pw")}));
  EXPECT_EQ(line, "error: unknown role \"owner\" (invalid_argument, HTTP 400)");
}

TEST_F(CommandsTest, UserDeleteReportsSuccessAndNotFound) {
  LogIn();
  ASSERT_EQ(UserDelete(ctx_, "usr-22"), kExitOk) << err_.str();
  EXPECT_EQ(out_.str(), "Deleted user usr-22\n");
  EXPECT_EQ(root_.last().method, "DELETE");
  EXPECT_EQ(root_.last().path, "/api/v1/users/usr-22");
  Clear();
  std::string line = ExpectOneErrorLine(UserDelete(ctx_, "usr-9"));
  EXPECT_EQ(line, "error: user usr-9 not found (not_found, HTTP 404)");
  Json j = RunJson([](Context& c) { return UserDelete(c, "usr-22"); });
  EXPECT_EQ(j, Json::object());
}

// ---- providers -------------------------------------------------------------------------------

TEST_F(CommandsTest, ProviderTokenPrintsTokenAndExpiry) {
  LogIn();
  ASSERT_EQ(ProviderToken(ctx_), kExitOk) << err_.str();
  EXPECT_EQ(out_.str(),
            "Token:     ptk-0123456789\n"
            "Expires:   2026-11-28T13:00:00.000Z\n");
  EXPECT_EQ(root_.last().method, "POST");
  EXPECT_EQ(root_.last().path, "/api/v1/provider-tokens");
  Json j = RunJson([](Context& c) { return ProviderToken(c); });
  EXPECT_EQ(j["token"], FakeRoot::kProviderToken);
}

TEST_F(CommandsTest, ProviderListPrintsContractColumns) {
  LogIn();
  ASSERT_EQ(ProviderList(ctx_), kExitOk) << err_.str();
  EXPECT_EQ(
      out_.str(),
      "ID         TYPE    URL                     STATUS   APPROVED   LAST SEEN\n"
      "prv-1      local   http://127.0.0.1:7001   live     true       2026-11-28T12:59:58.000Z\n"
      "prv-2222   aws     http://10.0.0.5:7002    down     false      2026-11-28T11:00:00.000Z\n");
}

TEST_F(CommandsTest, ProviderApprovePostsAndPrintsTheAdapter) {
  LogIn();
  ASSERT_EQ(ProviderApprove(ctx_, "prv-2222"), kExitOk) << err_.str();
  EXPECT_EQ(out_.str(), "Approved prv-2222\n");
  EXPECT_EQ(root_.last().method, "POST");
  EXPECT_EQ(root_.last().path, "/api/v1/providers/prv-2222/approve");
  Clear();
  EXPECT_NE(ProviderApprove(ctx_, "prv-404"), kExitOk);
}

TEST_F(CommandsTest, PasswordChangesYourOwnOrAnotherUsersAndNeverPrintsThem) {
  LogIn();
  env_["CANOPY_PASSWORD"] = FakeRoot::kPassword;
  env_["CANOPY_NEW_PASSWORD"] = "brand-new-password-1";
  ASSERT_EQ(Password(ctx_, PasswordOptions{}), kExitOk) << err_.str();
  EXPECT_EQ(root_.last().path, "/api/v1/auth/password");
  auto body = ParseJson(root_.last().body);
  ASSERT_OK(body);
  EXPECT_EQ((*body)["current_password"], FakeRoot::kPassword);
  EXPECT_EQ((*body)["new_password"], "brand-new-password-1");
  EXPECT_NE(out_.str().find("log in again"), std::string::npos);
  EXPECT_EQ(out_.str().find("brand-new"), std::string::npos);
  Clear();
  PasswordOptions other;
  other.user = "usr-2";
  ASSERT_EQ(Password(ctx_, other), kExitOk) << err_.str();
  EXPECT_EQ(root_.last().method, "PUT");
  EXPECT_EQ(root_.last().path, "/api/v1/users/usr-2/password");
  EXPECT_EQ((*ParseJson(root_.last().body))["password"], "brand-new-password-1");
  Clear();
  env_["CANOPY_PASSWORD"] = "wrong";
  EXPECT_NE(Password(ctx_, PasswordOptions{}), kExitOk);
  EXPECT_NE(err_.str().find("current password is wrong"), std::string::npos);
}

TEST_F(CommandsTest, ProviderDetachDeletesTheProvider) {
  LogIn();
  ASSERT_EQ(ProviderDetach(ctx_, "prv-1"), kExitOk) << err_.str();
  EXPECT_EQ(out_.str(), "Detached provider prv-1\n");
  EXPECT_EQ(root_.last().method, "DELETE");
  EXPECT_EQ(root_.last().path, "/api/v1/providers/prv-1");
}

// ---- credentials -----------------------------------------------------------------------------

constexpr const char* kSecretValue = "AKIA-very-secret-7";

TEST_F(CommandsTest, CredentialAddSendsSecretFromEachSource) {
  LogIn();
  std::string secret = std::string(R"({"access_key":")") + kSecretValue + R"("})";
  std::filesystem::path file = dir_.path() / "secret.json";
  { std::ofstream(file) << secret; }

  CredentialAddOptions from_file{"aws-main", "aws",        file.string(),
                                 false,      std::nullopt, std::nullopt};
  CredentialAddOptions from_flag{"aws-main", "aws", std::nullopt, false, secret, std::nullopt};
  CredentialAddOptions from_stdin{"aws-main", "aws",        std::nullopt,
                                  true,       std::nullopt, std::nullopt};
  for (const auto* o : {&from_file, &from_flag, &from_stdin}) {
    Clear();
    in_.clear();
    in_.str(secret);
    ASSERT_EQ(CredentialAdd(ctx_, *o), kExitOk) << err_.str();
    auto req = root_.last();
    EXPECT_EQ(req.path, "/api/v1/credentials");
    auto body = ParseJson(req.body);
    ASSERT_OK(body);
    EXPECT_EQ((*body)["name"], "aws-main");
    EXPECT_EQ((*body)["provider"], "aws");
    EXPECT_EQ((*body)["secret"]["access_key"], kSecretValue);
    EXPECT_NE(out_.str().find("crd-1"), std::string::npos);
    EXPECT_EQ(out_.str().find(kSecretValue), std::string::npos);
  }
}

TEST_F(CommandsTest, CredentialAddNeedsExactlyOneSecretSource) {
  LogIn();
  size_t before = root_.requests().size();
  ExpectOneErrorLine(
      CredentialAdd(ctx_, {"c", "aws", std::nullopt, false, std::nullopt, std::nullopt}));
  Clear();
  ExpectOneErrorLine(
      CredentialAdd(ctx_, {"c", "aws", std::nullopt, true, std::string("{}"), std::nullopt}));
  EXPECT_EQ(root_.requests().size(), before);
}

TEST_F(CommandsTest, CredentialAddNeverEchoesAMalformedSecret) {
  LogIn();
  std::string bad = std::string(R"({"access_key":")") + kSecretValue;  // unterminated
  std::string line =
      ExpectOneErrorLine(CredentialAdd(ctx_, {"c", "aws", std::nullopt, false, bad, std::nullopt}));
  EXPECT_NE(line.find("not valid JSON"), std::string::npos);
  EXPECT_EQ(line.find(kSecretValue), std::string::npos);
  Clear();
  std::string arr = std::string(R"([")") + kSecretValue + R"("])";
  line =
      ExpectOneErrorLine(CredentialAdd(ctx_, {"c", "aws", std::nullopt, false, arr, std::nullopt}));
  EXPECT_NE(line.find("JSON object"), std::string::npos);
  EXPECT_EQ(line.find(kSecretValue), std::string::npos);
}

TEST_F(CommandsTest, CredentialAddReportsMissingSecretFile) {
  LogIn();
  std::string missing = (dir_.path() / "nope.json").string();
  std::string line = ExpectOneErrorLine(
      CredentialAdd(ctx_, {"c", "aws", missing, false, std::nullopt, std::nullopt}));
  EXPECT_NE(line.find(missing), std::string::npos);
}

TEST_F(CommandsTest, CredentialAddRejectedByProviderDoesNotLeakSecret) {
  LogIn();
  std::string secret = std::string(R"({"k":")") + kSecretValue + R"("})";
  std::string line = ExpectOneErrorLine(
      CredentialAdd(ctx_, {"rejected", "aws", std::nullopt, false, secret, std::nullopt}));
  EXPECT_EQ(line, "error: the provider rejected the credential (unprocessable, HTTP 422)");
}

TEST_F(CommandsTest, CredentialListShowAndDelete) {
  LogIn();
  ASSERT_EQ(CredentialList(ctx_), kExitOk) << err_.str();
  EXPECT_EQ(out_.str(),
            "ID      NAME    PROVIDER   ADAPTER   CREATED\n"
            "crd-1   local   local      prv-1     2026-11-28T13:00:00Z\n");
  Clear();
  ASSERT_EQ(CredentialShow(ctx_, "crd-1"), kExitOk) << err_.str();
  EXPECT_EQ(out_.str(),
            "ID:         crd-1\n"
            "Name:       local\n"
            "Provider:   local\n"
            "Adapter:    prv-1\n"
            "Created:    2026-11-28T13:00:00Z\n");
  Clear();
  ASSERT_EQ(CredentialDelete(ctx_, "crd-1"), kExitOk) << err_.str();
  EXPECT_EQ(out_.str(), "Deleted credential crd-1\n");
  Clear();
  std::string line = ExpectOneErrorLine(CredentialDelete(ctx_, "crd-busy"));
  EXPECT_EQ(line, "error: credential crd-busy is used by 2 billed workers (conflict, HTTP 409)");
}

// ---- operations ------------------------------------------------------------------------------

TEST_F(CommandsTest, OperationShowPrintsFieldsAndSteps) {
  LogIn();
  ASSERT_EQ(OperationShow(ctx_, "op-1"), kExitOk) << err_.str();
  EXPECT_EQ(out_.str(),
            "ID:       op-1\n"
            "Kind:     create_cluster\n"
            "Target:   cls-1\n"
            "State:    failed\n"
            "Step:     1\n"
            "Error:    ssh timed out (provider_error)\n"
            "\n"
            "STEP        STATE       STARTED                FINISHED\n"
            "create_vm   succeeded   2026-11-28T12:00:00Z   2026-11-28T12:01:00Z\n"
            "install     failed      2026-11-28T12:01:00Z   -\n");
  Json j = RunJson([](Context& c) { return OperationShow(c, "op-1"); });
  EXPECT_EQ(j["steps"].size(), 2u);
}

TEST_F(CommandsTest, OperationListFiltersByTarget) {
  LogIn();
  ASSERT_EQ(OperationList(ctx_, {std::string("cls-1")}), kExitOk) << err_.str();
  EXPECT_EQ(root_.last().query["target"], "cls-1");
  EXPECT_EQ(out_.str(),
            "ID     KIND             TARGET   STATE    STEP   CREATED\n"
            "op-1   create_cluster   cls-1    failed   1      2026-11-28T12:00:00Z\n");
  Clear();
  ASSERT_EQ(OperationList(ctx_, {std::string("a b&c")}), kExitOk) << err_.str();
  EXPECT_EQ(root_.last().query["target"], "a b&c");
  EXPECT_EQ(out_.str(), "ID   KIND   TARGET   STATE   STEP   CREATED\n");
}

TEST_F(CommandsTest, OperationShowUnknownIdIsNotFound) {
  LogIn();
  std::string line = ExpectOneErrorLine(OperationShow(ctx_, "op-404"));
  EXPECT_EQ(line, "error: operation not found (not_found, HTTP 404)");
}

// ---- -o json everywhere ----------------------------------------------------------------------

TEST_F(CommandsTest, EveryCommandPrintsOneJsonDocumentWithJsonOutput) {
  LogIn();
  std::vector<std::function<int(Context&)>> cmds = {
      [](Context& c) { return UserList(c); },
      [](Context& c) {
        return UserCreate(c, {"h", {"app"}, std::string("pw")});
      },
      [](Context& c) { return UserDelete(c, "usr-22"); },
      [](Context& c) { return ProviderToken(c); },
      [](Context& c) { return ProviderList(c); },
      [](Context& c) { return ProviderDetach(c, "prv-1"); },
      [](Context& c) {
        return CredentialAdd(c, {"n", "local", std::nullopt, false, "{}", std::nullopt});
      },
      [](Context& c) { return CredentialList(c); },
      [](Context& c) { return CredentialShow(c, "crd-1"); },
      [](Context& c) { return CredentialDelete(c, "crd-1"); },
      [](Context& c) { return OperationShow(c, "op-1"); },
      [](Context& c) { return OperationList(c, {std::string("cls-1")}); },
      [](Context& c) { return Logout(c); },
  };
  for (size_t i = 0; i < cmds.size(); ++i) {
    SCOPED_TRACE(i);
    Json j = RunJson(cmds[i]);
    EXPECT_TRUE(j.is_object() || j.is_array());
  }
}

TEST_F(CommandsTest, JsonOutputKeepsStdoutEmptyOnError) {
  LogIn();
  ctx_.global.output = OutputFormat::kJson;
  ExpectOneErrorLine(UserDelete(ctx_, "usr-9"));
}

}  // namespace
}  // namespace canopy::cli
