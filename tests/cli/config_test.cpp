// cli/config: path resolution (XDG_CONFIG_HOME, HOME), round trip, file and directory modes.
#include "cli/config.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <map>

#include "support/test_util.h"

namespace canopy::cli {
namespace {

namespace fs = std::filesystem;

EnvLookup FakeEnv(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](const std::string& name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) {
      return std::nullopt;
    }
    return it->second;
  };
}

mode_t ModeOf(const fs::path& p) {
  struct stat st {};
  EXPECT_EQ(stat(p.c_str(), &st), 0) << p;
  return st.st_mode & 07777;
}

TEST(ConfigPath, UsesXdgConfigHomeWhenAbsolute) {
  auto p = ConfigPath(FakeEnv({{"XDG_CONFIG_HOME", "/x/cfg"}, {"HOME", "/home/u"}}));
  ASSERT_OK(p);
  EXPECT_EQ(*p, fs::path("/x/cfg/canopy/config.json"));
}

TEST(ConfigPath, FallsBackToHomeWhenXdgUnsetEmptyOrRelative) {
  for (auto env :
       {FakeEnv({{"HOME", "/home/u"}}), FakeEnv({{"XDG_CONFIG_HOME", ""}, {"HOME", "/home/u"}}),
        FakeEnv({{"XDG_CONFIG_HOME", "rel/cfg"}, {"HOME", "/home/u"}})}) {
    auto p = ConfigPath(env);
    ASSERT_OK(p);
    EXPECT_EQ(*p, fs::path("/home/u/.config/canopy/config.json"));
  }
}

TEST(ConfigPath, UsesPasswordDatabaseWhenHomeUnset) {
  auto p = ConfigPath(FakeEnv({}));
  ASSERT_OK(p);
  EXPECT_TRUE(p->is_absolute());
  EXPECT_EQ(p->filename(), "config.json");
  EXPECT_EQ(p->parent_path().filename(), "canopy");
}

TEST(Config, MissingFileLoadsEmpty) {
  testing::TempDir dir;
  auto c = LoadConfig(dir.path() / "nope" / "config.json");
  ASSERT_OK(c);
  EXPECT_TRUE(c->root.empty());
  EXPECT_FALSE(c->HasToken());
}

TEST(Config, RoundTripKeepsEveryField) {
  testing::TempDir dir;
  fs::path path = dir.path() / "canopy" / "config.json";
  Config c;
  c.root = "https://root.example:8443";
  c.username = "alice";
  c.token = SecretString("tok.abc.def");
  c.expires_at = "2026-11-28T13:00:00.000Z";
  ASSERT_OK(SaveConfig(path, c));
  auto back = LoadConfig(path);
  ASSERT_OK(back);
  EXPECT_EQ(back->root, c.root);
  EXPECT_EQ(back->username, c.username);
  EXPECT_EQ(back->token.Reveal(), "tok.abc.def");
  EXPECT_EQ(back->expires_at, c.expires_at);
}

TEST(Config, SaveCreatesPrivateDirectoriesAndFile) {
  testing::TempDir dir;
  fs::path cfg_home = dir.path() / "xdg";
  fs::path path = cfg_home / "canopy" / "config.json";
  Config c;
  c.root = "http://r";
  c.token = SecretString("t");
  ASSERT_OK(SaveConfig(path, c));
  EXPECT_EQ(ModeOf(path), 0600u);
  EXPECT_EQ(ModeOf(path.parent_path()), 0700u);
  EXPECT_EQ(ModeOf(cfg_home), 0700u);
  // No temporary files are left behind next to the config.
  int entries = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(path.parent_path())) {
    ++entries;
  }
  EXPECT_EQ(entries, 1);
}

TEST(Config, SaveTightensLooseModesOfExistingFileAndDirectory) {
  testing::TempDir dir;
  fs::path cdir = dir.path() / "canopy";
  fs::create_directories(cdir);
  chmod(cdir.c_str(), 0755);
  fs::path path = cdir / "config.json";
  { std::ofstream(path) << "{}"; }
  chmod(path.c_str(), 0644);
  Config c;
  c.token = SecretString("t");
  ASSERT_OK(SaveConfig(path, c));
  EXPECT_EQ(ModeOf(path), 0600u);
  EXPECT_EQ(ModeOf(cdir), 0700u);
}

TEST(Config, SaveIgnoresPermissiveUmask) {
  testing::TempDir dir;
  fs::path path = dir.path() / "a" / "canopy" / "config.json";
  mode_t old = umask(0);
  Config c;
  c.token = SecretString("t");
  Status st = SaveConfig(path, c);
  umask(old);
  ASSERT_OK(st);
  EXPECT_EQ(ModeOf(path), 0600u);
  EXPECT_EQ(ModeOf(path.parent_path()), 0700u);
  EXPECT_EQ(ModeOf(path.parent_path().parent_path()), 0700u);
}

TEST(Config, SaveReplacesPreviousContent) {
  testing::TempDir dir;
  fs::path path = dir.path() / "canopy" / "config.json";
  Config c;
  c.root = "http://one";
  c.token = SecretString("first");
  ASSERT_OK(SaveConfig(path, c));
  c.root = "http://two";
  c.token = SecretString();
  ASSERT_OK(SaveConfig(path, c));
  auto back = LoadConfig(path);
  ASSERT_OK(back);
  EXPECT_EQ(back->root, "http://two");
  EXPECT_FALSE(back->HasToken());
  EXPECT_EQ(testing::ReadFile(path.string()).find("first"), std::string::npos);
}

TEST(Config, MalformedFileIsAnErrorNamingThePath) {
  testing::TempDir dir;
  fs::path path = dir.path() / "config.json";
  for (const char* text : {"{not json", "[1,2]", R"({"root": 5})"}) {
    { std::ofstream(path) << text; }
    auto c = LoadConfig(path);
    ASSERT_FALSE(c.has_value()) << text;
    EXPECT_EQ(c.error().code, ErrorCode::kInvalidArgument);
    EXPECT_NE(c.error().message.find(path.string()), std::string::npos);
  }
}

TEST(Config, SaveFailsWhenDirectoryCannotBeCreated) {
  testing::TempDir dir;
  fs::path blocker = dir.path() / "file";
  { std::ofstream(blocker) << "x"; }
  Config c;
  auto st = SaveConfig(blocker / "canopy" / "config.json", c);
  ASSERT_FALSE(st.has_value());
  EXPECT_EQ(st.error().code, ErrorCode::kFailedPrecondition);
}

}  // namespace
}  // namespace canopy::cli
