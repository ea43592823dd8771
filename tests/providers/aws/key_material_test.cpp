// PublicKeyFromPem against ssh-keygen: the OpenSSH public key and SHA256 fingerprint of RSA and
// Ed25519 private keys in PEM, as EC2's CreateKeyPair hands them out.
#include "providers/aws/key_material.h"

#include <gtest/gtest.h>

#include <cstdlib>

#include "common/ids.h"
#include "support/test_util.h"

namespace canopy::providers::aws {
namespace {

using canopy::testing::ReadFile;
using canopy::testing::TempDir;

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

// (public key "type base64", fingerprint) of `pem` per ssh-keygen.
std::pair<std::string, std::string> SshKeygen(const TempDir& dir, const std::string& key) {
  std::system(("ssh-keygen -y -f " + key + " > " + dir.str() + "/pub 2>/dev/null").c_str());
  std::system(
      ("ssh-keygen -l -E sha256 -f " + dir.str() + "/pub > " + dir.str() + "/fp 2>/dev/null")
          .c_str());
  std::string pub = Trim(ReadFile(dir.str() + "/pub"));
  std::string fp = ReadFile(dir.str() + "/fp");  // "2048 SHA256:xxx comment (RSA)"
  auto a = fp.find("SHA256:");
  std::string fingerprint = a == std::string::npos ? "" : fp.substr(a, fp.find(' ', a) - a);
  auto sp = pub.find(' ', pub.find(' ') + 1);
  return {pub.substr(0, sp), fingerprint};
}

void ExpectMatchesSshKeygen(const std::string& openssl_cmd_with_key) {
  TempDir dir;
  std::string key = dir.str() + "/key.pem";
  std::string openssl_args = openssl_cmd_with_key;
  openssl_args.replace(openssl_args.find("KEY"), 3, key);
  ASSERT_EQ(std::system((std::string("openssl ") + openssl_args + " 2>/dev/null").c_str()), 0)
      << openssl_args;
  std::system(("chmod 600 " + key).c_str());
  auto info = PublicKeyFromPem(SecretString(ReadFile(key)));
  ASSERT_OK(info);
  auto [pub, fp] = SshKeygen(dir, key);
  ASSERT_FALSE(pub.empty());
  EXPECT_EQ(info->public_key, pub);
  EXPECT_EQ(info->fingerprint, fp);
}

TEST(KeyMaterial, RsaMatchesSshKeygen) {
  ExpectMatchesSshKeygen("genrsa -traditional -out KEY 2048");
}
TEST(KeyMaterial, Rsa4096Pkcs8MatchesSshKeygen) { ExpectMatchesSshKeygen("genrsa -out KEY 4096"); }

// OpenSSH 9.2 cannot read PKCS#8 Ed25519 keys: compare the raw key with OpenSSL's DER instead.
TEST(KeyMaterial, Ed25519BlobCarriesTheRawPublicKey) {
  TempDir dir;
  std::string key = dir.str() + "/key.pem";
  ASSERT_EQ(
      std::system(("openssl genpkey -algorithm ed25519 -out " + key + " && openssl pkey -in " +
                   key + " -pubout -outform DER -out " + dir.str() + "/pub.der")
                      .c_str()),
      0);
  auto info = PublicKeyFromPem(SecretString(ReadFile(key)));
  ASSERT_OK(info);
  ASSERT_EQ(info->public_key.rfind("ssh-ed25519 ", 0), 0u);
  std::string blob;
  ASSERT_TRUE(Base64Decode(info->public_key.substr(12), &blob));
  ASSERT_EQ(blob.size(), 4u + 11u + 4u + 32u);
  std::string der = ReadFile(dir.str() + "/pub.der");
  ASSERT_GE(der.size(), 32u);
  EXPECT_EQ(blob.substr(19), der.substr(der.size() - 32));
  EXPECT_EQ(info->fingerprint.rfind("SHA256:", 0), 0u);
}

TEST(KeyMaterial, GarbageIsInvalidArgument) {
  auto r = PublicKeyFromPem(
      SecretString("-----BEGIN RSA PRIVATE KEY-----\nnope\n-----END RSA PRIVATE KEY-----\n"));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(r.error().message.find("nope"), std::string::npos);
}

}  // namespace
}  // namespace canopy::providers::aws
