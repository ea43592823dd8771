// The shared SSH key helpers against ssh-keygen: fresh Ed25519 keys in OpenSSH format (readable by
// OpenSSH, same public key and fingerprint), public keys of OpenSSH and PEM private keys, and
// fingerprints of public key blobs; plus host key fingerprints from a cloud-init console.
#include "providers/ssh_keys.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>

#include "support/test_util.h"

namespace canopy::providers {
namespace {

using canopy::testing::ReadFile;
using canopy::testing::TempDir;

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

TEST(SshKeys, GeneratedEd25519IsReadByOpenSsh) {
  auto k = GenerateEd25519("canopy-test");
  ASSERT_OK(k);
  EXPECT_EQ(k->public_key.rfind("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5", 0), 0u);
  const std::string& priv = k->private_key.Reveal();
  EXPECT_EQ(priv.rfind("-----BEGIN OPENSSH PRIVATE KEY-----\n", 0), 0u);
  TempDir dir;
  const std::string path = dir.str() + "/id";
  std::ofstream(path) << priv;
  ASSERT_EQ(std::system(("chmod 600 " + path).c_str()), 0);
  ASSERT_EQ(std::system(("ssh-keygen -y -f " + path + " > " + path + ".pub 2>/dev/null").c_str()),
            0);
  std::string pub = Trim(ReadFile(path + ".pub"));
  EXPECT_EQ(pub.substr(0, pub.rfind(' ') == 11 ? pub.size() : pub.rfind(' ')), k->public_key);
  ASSERT_EQ(std::system(
                ("ssh-keygen -l -E sha256 -f " + path + " > " + path + ".fp 2>/dev/null").c_str()),
            0);
  std::string fp = ReadFile(path + ".fp");  // "256 SHA256:xxx canopy-test (ED25519)"
  EXPECT_NE(fp.find(" " + k->fingerprint + " canopy-test (ED25519)"), std::string::npos) << fp;
  // Read back from the private key, and from the public key line or blob.
  auto back = PublicKeyFromPrivateKey(k->private_key);
  ASSERT_OK(back);
  EXPECT_EQ(back->public_key, k->public_key);
  EXPECT_EQ(back->fingerprint, k->fingerprint);
  EXPECT_EQ(*FingerprintOfPublicKey(pub), k->fingerprint);
  EXPECT_EQ(*FingerprintOfPublicKey(k->public_key.substr(12)), k->fingerprint);
  // Two keys differ.
  EXPECT_NE(GenerateEd25519("x")->public_key, k->public_key);
}

TEST(SshKeys, SshKeygenKeysAreRead) {
  TempDir dir;
  const std::string path = dir.str() + "/k";
  ASSERT_EQ(std::system(("ssh-keygen -q -t ed25519 -N '' -C c -f " + path + " >/dev/null").c_str()),
            0);
  auto info = PublicKeyFromPrivateKey(SecretString(ReadFile(path)));
  ASSERT_OK(info);
  std::string pub = Trim(ReadFile(path + ".pub"));
  EXPECT_EQ(info->public_key + " c", pub);
  // PEM still works through the same entry point.
  ASSERT_EQ(std::system(("openssl genrsa -out " + path + ".pem 2048 2>/dev/null").c_str()), 0);
  auto rsa = PublicKeyFromPrivateKey(SecretString(ReadFile(path + ".pem")));
  ASSERT_OK(rsa);
  EXPECT_EQ(rsa->public_key.rfind("ssh-rsa ", 0), 0u);
}

TEST(SshKeys, GarbageIsInvalidAndNotQuoted) {
  for (const std::string& text : std::vector<std::string>{
           std::string("-----BEGIN OPENSSH PRIVATE KEY-----\nc2VjcmV0\n-----END OPENSSH PRIVATE "
                       "KEY-----\n"),
           std::string("secret")}) {
    auto r = PublicKeyFromPrivateKey(SecretString(text));
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
    EXPECT_EQ(r.error().message.find("c2VjcmV0"), std::string::npos);
  }
  EXPECT_FALSE(FingerprintOfPublicKey("ssh-ed25519 !!!"));
  EXPECT_FALSE(FingerprintOfPublicKey(""));
}

TEST(SshKeys, HostKeyFromCloudInitConsole) {
  const std::string console =
      "-----BEGIN SSH HOST KEY FINGERPRINTS-----\n"
      "256 SHA256:ecdsaFp root@h (ECDSA)\n"
      "256 SHA256:edFp root@h (ED25519)\n"
      "-----END SSH HOST KEY FINGERPRINTS-----\n";
  EXPECT_EQ(HostKeyFromConsole(console), "SHA256:edFp");
  EXPECT_EQ(HostKeyFromConsole("nothing"), "");
}

}  // namespace
}  // namespace canopy::providers
