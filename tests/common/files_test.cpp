// WriteFileAtomic: content, mode (whatever the umask), replacement, no temporary left behind.
#include "common/files.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>

#include "support/test_util.h"

namespace canopy {
namespace {

namespace fs = std::filesystem;
using testing::ReadFile;
using testing::TempDir;

mode_t ModeOf(const fs::path& p) {
  struct stat st {};
  ::stat(p.c_str(), &st);
  return st.st_mode & 07777;
}

TEST(WriteFileAtomic, WritesContentWithTheModeWhateverTheUmask) {
  TempDir dir;
  mode_t old = ::umask(0);
  std::string path = (dir.path() / "identity.json").string();
  ASSERT_OK(WriteFileAtomic(path, "secret-ish"));
  ::umask(old);
  EXPECT_EQ(ReadFile(path), "secret-ish");
  EXPECT_EQ(ModeOf(path), 0600u);
  std::string exe = (dir.path() / "run.sh").string();
  ASSERT_OK(WriteFileAtomic(exe, "#!/bin/sh\n", 0755));
  EXPECT_EQ(ModeOf(exe), 0755u);
}

TEST(WriteFileAtomic, ReplacesAnExistingFileAndLeavesNoTemporary) {
  TempDir dir;
  std::string path = (dir.path() / "f").string();
  ASSERT_OK(WriteFileAtomic(path, "one"));
  ASSERT_OK(WriteFileAtomic(path, std::string(100000, 'x')));
  EXPECT_EQ(ReadFile(path), std::string(100000, 'x'));
  int entries = 0;
  for (const auto& e : fs::directory_iterator(dir.path())) {
    (void)e;
    ++entries;
  }
  EXPECT_EQ(entries, 1);
}

TEST(WriteFileAtomic, MissingDirectoryIsAnErrorNamingThePathNotTheContent) {
  TempDir dir;
  std::string path = (dir.path() / "no" / "such" / "f").string();
  auto st = WriteFileAtomic(path, "TOPSECRET");
  ASSERT_FALSE(st.has_value());
  EXPECT_NE(st.error().message.find(path), std::string::npos);
  EXPECT_EQ(st.error().message.find("TOPSECRET"), std::string::npos);
}

TEST(ReadJsonObjectFile, ReadsObjectsAndNamesMissingAndMalformedFiles) {
  TempDir dir;
  std::string path = (dir.path() / "identity.json").string();
  EXPECT_EQ(ReadJsonObjectFile(path).error().code, ErrorCode::kNotFound);
  ASSERT_OK(WriteFileAtomic(path, R"({"id":"x"})"));
  auto j = ReadJsonObjectFile(path);
  ASSERT_OK(j);
  EXPECT_EQ((*j)["id"], "x");
  ASSERT_OK(WriteFileAtomic(path, "[1,2]"));
  EXPECT_EQ(ReadJsonObjectFile(path).error().code, ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace canopy
