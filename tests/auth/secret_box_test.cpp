#include "auth/secret_box.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "common/ids.h"
#include "support/test_util.h"

namespace canopy::auth {
namespace {

using canopy::testing::ReadFile;
using canopy::testing::TempDir;

SecretString S(std::string s) { return SecretString(std::move(s)); }

std::unique_ptr<SecretBox> BoxWithKey(char fill) {
  auto box = SecretBox::FromKey(S(std::string(32, fill)));
  EXPECT_TRUE(box.has_value());
  return box ? std::move(box).value() : nullptr;
}

mode_t FileMode(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::stat(path.c_str(), &st), 0);
  return st.st_mode & 07777;
}

void WriteFile(const std::string& path, const std::string& content, mode_t mode) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::write(fd, content.data(), content.size()), static_cast<ssize_t>(content.size()));
  ASSERT_EQ(::fchmod(fd, mode), 0);
  ::close(fd);
}

void ExpectDecryptFails(const SecretBox& box, std::string_view sealed, std::string_view aad) {
  auto r = box.Open(sealed, aad);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, ErrorCode::kInternal);
  EXPECT_EQ(r.error().message, "secret could not be decrypted");
}

TEST(SecretBox, SealThenOpenRoundTrips) {
  auto box = BoxWithKey('k');
  ASSERT_NE(box, nullptr);
  for (const std::string& pt :
       {std::string(), std::string("x"), std::string("{\"access_key\":\"AKIA...\"}"),
        std::string(100000, 'z'), std::string("\0\1\2", 3)}) {
    auto sealed = box->Seal(S(pt), "cred-1");
    ASSERT_OK(sealed);
    EXPECT_EQ(sealed->size(), 1 + 12 + pt.size() + 16);
    EXPECT_EQ((*sealed)[0], '\x01');
    auto opened = box->Open(*sealed, "cred-1");
    ASSERT_OK(opened);
    EXPECT_EQ(opened->Reveal(), pt);
  }
}

TEST(SecretBox, SealUsesFreshNonceAndHidesPlaintext) {
  auto box = BoxWithKey('k');
  ASSERT_NE(box, nullptr);
  const std::string pt = "super-secret-password-value-1234567890";
  auto a = box->Seal(S(pt), "id");
  auto b = box->Seal(S(pt), "id");
  ASSERT_OK(a);
  ASSERT_OK(b);
  EXPECT_NE(a->substr(1, 12), b->substr(1, 12));
  EXPECT_NE(*a, *b);
  EXPECT_EQ(a->find(pt), std::string::npos);
  EXPECT_EQ(a->find("super-secret"), std::string::npos);
  EXPECT_EQ(a->find("password"), std::string::npos);
}

TEST(SecretBox, OpenRejectsWrongAad) {
  auto box = BoxWithKey('k');
  ASSERT_NE(box, nullptr);
  auto sealed = box->Seal(S("pw"), "cred-1");
  ASSERT_OK(sealed);
  ExpectDecryptFails(*box, *sealed, "cred-2");
  ExpectDecryptFails(*box, *sealed, "");
  ExpectDecryptFails(*box, *sealed, "cred-1 ");
  auto no_aad = box->Seal(S("pw"), "");
  ASSERT_OK(no_aad);
  ExpectDecryptFails(*box, *no_aad, "cred-1");
  EXPECT_OK(box->Open(*no_aad, ""));
}

TEST(SecretBox, OpenRejectsAnyTamperedByte) {
  auto box = BoxWithKey('k');
  ASSERT_NE(box, nullptr);
  auto sealed = box->Seal(S("a credential"), "cred-1");
  ASSERT_OK(sealed);
  // Version byte, nonce, ciphertext and tag: every position is covered.
  for (size_t i = 0; i < sealed->size(); ++i) {
    for (unsigned char bit : {0x01, 0x80}) {
      std::string t = *sealed;
      t[i] = static_cast<char>(t[i] ^ bit);
      ExpectDecryptFails(*box, t, "cred-1");
    }
  }
}

TEST(SecretBox, OpenRejectsTruncatedOrExtendedInput) {
  auto box = BoxWithKey('k');
  ASSERT_NE(box, nullptr);
  auto sealed = box->Seal(S("a credential"), "cred-1");
  ASSERT_OK(sealed);
  for (size_t n = 0; n < sealed->size(); ++n) {
    ExpectDecryptFails(*box, std::string_view(*sealed).substr(0, n), "cred-1");
  }
  ExpectDecryptFails(*box, *sealed + "x", "cred-1");
  ExpectDecryptFails(*box, std::string(29, '\x01'), "cred-1");
}

TEST(SecretBox, OpenRejectsWrongKey) {
  auto a = BoxWithKey('a');
  auto b = BoxWithKey('b');
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  auto sealed = a->Seal(S("pw"), "cred-1");
  ASSERT_OK(sealed);
  ExpectDecryptFails(*b, *sealed, "cred-1");
  EXPECT_OK(a->Open(*sealed, "cred-1"));
}

TEST(SecretBox, FromKeyRequires32Bytes) {
  for (size_t n : {0, 16, 31, 33, 64}) {
    auto r = SecretBox::FromKey(S(std::string(n, 'k')));
    ASSERT_FALSE(r.has_value()) << n;
    EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
  }
}

TEST(SecretBox, EnvKeyAcceptsHexAndBase64OfSameKey) {
  TempDir dir;
  const std::string key_path = dir.str() + "/master.key";
  std::string raw(32, '\0');
  for (size_t i = 0; i < raw.size(); ++i) raw[i] = static_cast<char>(i * 7 + 3);
  const std::string hex = HexEncode(raw);
  std::string upper_hex = hex;
  for (char& c : upper_hex) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  const std::string b64 = Base64Encode(raw);
  ASSERT_EQ(hex.size(), 64u);
  ASSERT_EQ(b64.size(), 44u);

  auto reference = SecretBox::FromKey(S(raw));
  ASSERT_OK(reference);
  auto sealed = (*reference)->Seal(S("value"), "aad");
  ASSERT_OK(sealed);
  for (const std::string& env : {hex, upper_hex, b64}) {
    auto box = SecretBox::LoadOrCreate(key_path, env);
    ASSERT_OK(box);
    auto opened = (*box)->Open(*sealed, "aad");
    ASSERT_OK(opened);
    EXPECT_EQ(opened->Reveal(), "value");
  }
  // The key file is not created when the key comes from the environment.
  EXPECT_FALSE(std::filesystem::exists(key_path));
}

TEST(SecretBox, EnvKeyRejectsAnythingElse) {
  TempDir dir;
  const std::string key_path = dir.str() + "/master.key";
  const std::string hex = std::string(64, 'a');
  const std::string b64_16 = Base64Encode(std::string(16, 'k'));
  const std::string b64_33 = Base64Encode(std::string(33, 'k'));
  const std::string b64_32 = Base64Encode(std::string(32, 'k'));
  std::string b64_noncanonical = b64_32;
  b64_noncanonical[42] = static_cast<char>(b64_noncanonical[42] + 1);
  for (const std::string& env :
       {std::string("short"), hex.substr(0, 62), hex + "aa", hex.substr(0, 63) + "g",
        " " + hex.substr(1), b64_16, b64_33, b64_32.substr(0, 43), b64_32 + "\n",
        b64_32.substr(0, 10) + "!" + b64_32.substr(11), b64_noncanonical, std::string(32, 'k'),
        std::string(44, '=')}) {
    auto r = SecretBox::LoadOrCreate(key_path, env);
    ASSERT_FALSE(r.has_value()) << env;
    EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
    EXPECT_EQ(r.error().message, "CANOPY_MASTER_KEY must be 32 bytes as hex or base64");
  }
  EXPECT_FALSE(std::filesystem::exists(key_path));
}

TEST(SecretBox, KeyFileIsCreated0600AndReused) {
  TempDir dir;
  const std::string key_path = dir.str() + "/master.key";
  mode_t old_umask = ::umask(0);
  auto first = SecretBox::LoadOrCreate(key_path, "");
  ::umask(old_umask);
  ASSERT_OK(first);
  EXPECT_EQ(FileMode(key_path), 0600u);
  const std::string key = ReadFile(key_path);
  EXPECT_EQ(key.size(), 32u);
  EXPECT_NE(key, std::string(32, '\0'));
  auto sealed = (*first)->Seal(S("value"), "aad");
  ASSERT_OK(sealed);

  auto second = SecretBox::LoadOrCreate(key_path, "");
  ASSERT_OK(second);
  auto opened = (*second)->Open(*sealed, "aad");
  ASSERT_OK(opened);
  EXPECT_EQ(opened->Reveal(), "value");
  EXPECT_EQ(ReadFile(key_path), key);
  // The file holds the raw key: a box made from its bytes opens the secret too.
  auto from_bytes = SecretBox::FromKey(S(key));
  ASSERT_OK(from_bytes);
  EXPECT_OK((*from_bytes)->Open(*sealed, "aad"));
}

TEST(SecretBox, ConcurrentCreatorsShareOneKeyFile) {
  TempDir dir;
  const std::string key_path = dir.str() + "/master.key";
  constexpr int kThreads = 8;
  std::vector<std::string> sealed(kThreads);
  {
    std::vector<std::jthread> threads;
    for (int i = 0; i < kThreads; ++i) {
      threads.emplace_back([&, i] {
        auto box = SecretBox::LoadOrCreate(key_path, "");
        if (!box) return;
        auto s = (*box)->Seal(S("v"), "aad");
        if (s) sealed[i] = *s;
      });
    }
  }
  auto box = SecretBox::LoadOrCreate(key_path, "");
  ASSERT_OK(box);
  for (const std::string& s : sealed) EXPECT_OK((*box)->Open(s, "aad"));
}

TEST(SecretBox, KeyFileWithWrongSizeIsRejected) {
  for (size_t n : {0, 31, 33, 64}) {
    TempDir dir;
    const std::string key_path = dir.str() + "/master.key";
    WriteFile(key_path, std::string(n, 'k'), 0600);
    auto r = SecretBox::LoadOrCreate(key_path, "");
    ASSERT_FALSE(r.has_value()) << n;
    EXPECT_EQ(r.error().code, ErrorCode::kFailedPrecondition);
    EXPECT_EQ(ReadFile(key_path), std::string(n, 'k'));  // never overwritten
  }
}

TEST(SecretBox, KeyFileReadableByOthersIsRejected) {
  for (mode_t mode : {0644, 0640, 0604, 0620}) {
    TempDir dir;
    const std::string key_path = dir.str() + "/master.key";
    WriteFile(key_path, std::string(32, 'k'), mode);
    auto r = SecretBox::LoadOrCreate(key_path, "");
    ASSERT_FALSE(r.has_value()) << std::oct << mode;
    EXPECT_EQ(r.error().code, ErrorCode::kFailedPrecondition);
    EXPECT_NE(r.error().message.find("group or others"), std::string::npos);
    EXPECT_EQ(r.error().message.find(std::string(32, 'k')), std::string::npos);
  }
}

TEST(SecretBox, KeyPathThatIsNotARegularFileIsRejected) {
  TempDir dir;
  const std::string key_path = dir.str() + "/master.key";
  ASSERT_TRUE(std::filesystem::create_directory(key_path));
  ::chmod(key_path.c_str(), 0700);
  auto r = SecretBox::LoadOrCreate(key_path, "");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, ErrorCode::kFailedPrecondition);
}

}  // namespace
}  // namespace canopy::auth
