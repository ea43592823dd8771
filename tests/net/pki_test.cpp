// net::pki: the CA, CSRs, issued certificates, fingerprints, chain checks, renewal and the on-disk
// identity of a tier.
#include "net/pki.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <fstream>

#include "common/ids.h"
#include "support/test_util.h"

namespace canopy::net::pki {
namespace {

using namespace std::chrono_literals;

bool Contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

// A key and a certificate issued for it by `ca`.
struct Leaf {
  SecretString key;
  std::string cert;
};

Leaf IssueLeaf(const Authority& ca, const std::string& cn, Usage usage,
               const std::vector<std::string>& sans = {}, std::chrono::hours validity = 24h) {
  Leaf out;
  auto key = NewKey();
  EXPECT_TRUE(key.has_value());
  if (!key) return out;
  out.key = *key;
  auto csr = NewCsr(out.key, "ignored", {});
  EXPECT_TRUE(csr.has_value()) << csr.error().ToString();
  if (!csr) return out;
  auto cert = ca.Issue(*csr, cn, sans, usage, validity);
  EXPECT_TRUE(cert.has_value()) << cert.error().ToString();
  if (cert) out.cert = *cert;
  return out;
}

// The DER bytes of a PEM block (between its BEGIN and END lines).
std::string PemBody(const std::string& pem, std::string* header, std::string* footer) {
  size_t begin = pem.find('\n') + 1;
  size_t end = pem.find("-----END");
  *header = pem.substr(0, begin);
  *footer = pem.substr(end);
  std::string b64;
  for (char c : pem.substr(begin, end - begin)) {
    if (c != '\n' && c != '\r') b64 += c;
  }
  std::string der;
  EXPECT_TRUE(Base64Decode(b64, &der));
  return der;
}

std::string ToPem(const std::string& header, const std::string& der, const std::string& footer) {
  std::string b64 = Base64Encode(der);
  std::string out = header;
  for (size_t i = 0; i < b64.size(); i += 64) out += b64.substr(i, 64) + "\n";
  return out + footer;
}

TEST(PkiAuthorityTest, CreateThenLoadRoundTrips) {
  auto ca = Authority::Create("canopy-root", 24h * 365);
  ASSERT_OK(ca);
  auto info = ReadCert(ca->cert_pem());
  ASSERT_OK(info);
  EXPECT_EQ(info->cn, "canopy-root");
  EXPECT_EQ(info->issuer_cn, "canopy-root");
  EXPECT_TRUE(info->is_ca);
  EXPECT_TRUE(info->sans.empty());
  auto now = std::chrono::system_clock::now();
  EXPECT_LT(info->not_before, now - 50min);  // backdated one hour
  EXPECT_GT(info->not_after, now + 24h * 364);
  EXPECT_LT(info->not_after, now + 24h * 366);

  auto loaded = Authority::Load(ca->cert_pem(), ca->key_pem());
  ASSERT_OK(loaded);
  EXPECT_EQ(loaded->cert_pem(), ca->cert_pem());
  EXPECT_EQ(loaded->key_pem(), ca->key_pem());

  // The loaded CA issues certificates that verify against the original.
  Leaf leaf = IssueLeaf(*loaded, "node:n1", Usage::kClient);
  EXPECT_OK(VerifyChain(leaf.cert, ca->cert_pem(), leaf.key));
}

TEST(PkiAuthorityTest, LoadRefusesAKeyOfAnotherCertificate) {
  auto ca = Authority::Create("canopy-root", 24h);
  auto other = Authority::Create("canopy-root", 24h);
  ASSERT_OK(ca);
  ASSERT_OK(other);
  auto loaded = Authority::Load(ca->cert_pem(), other->key_pem());
  ASSERT_FALSE(loaded.has_value());
  EXPECT_EQ(loaded.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(loaded.error().message.find("does not belong"), std::string::npos)
      << loaded.error().message;
}

TEST(PkiAuthorityTest, LoadRefusesALeafAndGarbage) {
  auto ca = Authority::Create("canopy-root", 24h);
  ASSERT_OK(ca);
  Leaf leaf = IssueLeaf(*ca, "node:n1", Usage::kServerClient);
  auto not_ca = Authority::Load(leaf.cert, leaf.key);
  ASSERT_FALSE(not_ca.has_value());
  EXPECT_EQ(not_ca.error().code, ErrorCode::kInvalidArgument);

  auto bad_cert = Authority::Load("not a certificate", ca->key_pem());
  ASSERT_FALSE(bad_cert.has_value());
  EXPECT_EQ(bad_cert.error().code, ErrorCode::kInvalidArgument);
  auto bad_key = Authority::Load(ca->cert_pem(), SecretString("not a key"));
  ASSERT_FALSE(bad_key.has_value());
  EXPECT_EQ(bad_key.error().code, ErrorCode::kInvalidArgument);
}

TEST(PkiIssueTest, EachUsageCarriesTheNamesTheCaGave) {
  auto ca = Authority::Create("canopy-root", 24h * 30);
  ASSERT_OK(ca);
  struct Case {
    Usage usage;
    std::string cn;
    bool is_ca;
  };
  for (const Case& c :
       {Case{Usage::kServer, "adapter:a1", false}, Case{Usage::kClient, "node:n1", false},
        Case{Usage::kServerClient, "cluster:c1", false},
        Case{Usage::kSubCa, "cluster-ca:c1", true}}) {
    SCOPED_TRACE(c.cn);
    auto key = NewKey();
    ASSERT_OK(key);
    // The CSR asks for another name and other SANs: the CA's choice wins.
    auto csr = NewCsr(*key, "root-please", {"6.6.6.6"});
    ASSERT_OK(csr);
    auto cert = ca->Issue(*csr, c.cn, {"10.1.2.3", "node1.example.internal", "::1"}, c.usage, 48h);
    ASSERT_OK(cert);
    auto info = ReadCert(*cert);
    ASSERT_OK(info);
    EXPECT_EQ(info->cn, c.cn);
    EXPECT_EQ(info->issuer_cn, "canopy-root");
    EXPECT_EQ(info->is_ca, c.is_ca);
    EXPECT_EQ(info->sans, (std::vector<std::string>{"10.1.2.3", "node1.example.internal", "::1"}));
    EXPECT_FALSE(Contains(info->sans, "6.6.6.6"));
    EXPECT_GT(info->not_after - info->not_before, 48h);  // + the hour of backdating
    EXPECT_LT(info->not_after - info->not_before, 50h);
    EXPECT_OK(VerifyChain(*cert, ca->cert_pem(), *key));
    auto fp = Fingerprint(*cert);
    ASSERT_OK(fp);
    EXPECT_EQ(info->fingerprint, *fp);
  }
}

TEST(PkiIssueTest, NoSansGivesNone) {
  auto ca = Authority::Create("canopy-root", 24h);
  ASSERT_OK(ca);
  Leaf leaf = IssueLeaf(*ca, "node:n1", Usage::kClient, {});
  auto info = ReadCert(leaf.cert);
  ASSERT_OK(info);
  EXPECT_TRUE(info->sans.empty());
}

TEST(PkiIssueTest, BadSanIsRefused) {
  auto ca = Authority::Create("canopy-root", 24h);
  ASSERT_OK(ca);
  auto key = NewKey();
  ASSERT_OK(key);
  auto csr = NewCsr(*key, "x", {});
  ASSERT_OK(csr);
  for (const std::string& bad : {std::string("not a name"), std::string("under_score"),
                                 std::string("a,DNS:evil"), std::string("")}) {
    SCOPED_TRACE(bad);
    auto cert = ca->Issue(*csr, "node:n1", {"10.0.0.1", bad}, Usage::kServer, 24h);
    ASSERT_FALSE(cert.has_value());
    EXPECT_EQ(cert.error().code, ErrorCode::kInvalidArgument);
    auto bad_csr = NewCsr(*key, "x", {bad});
    EXPECT_FALSE(bad_csr.has_value());
  }
}

TEST(PkiIssueTest, BadCommonNameIsRefused) {
  auto ca = Authority::Create("canopy-root", 24h);
  ASSERT_OK(ca);
  auto key = NewKey();
  ASSERT_OK(key);
  auto csr = NewCsr(*key, "x", {});
  ASSERT_OK(csr);
  EXPECT_FALSE(ca->Issue(*csr, "", {}, Usage::kServer, 24h).has_value());
  EXPECT_FALSE(ca->Issue(*csr, std::string(65, 'a'), {}, Usage::kServer, 24h).has_value());
}

TEST(PkiCsrTest, ReadCsrGivesNameAndSans) {
  auto key = NewKey();
  ASSERT_OK(key);
  auto csr = NewCsr(*key, "node:n1", {"192.168.1.5", "host.example"});
  ASSERT_OK(csr);
  auto info = ReadCsr(*csr);
  ASSERT_OK(info);
  EXPECT_EQ(info->cn, "node:n1");
  EXPECT_EQ(info->sans, (std::vector<std::string>{"192.168.1.5", "host.example"}));
}

TEST(PkiCsrTest, MalformedCsrIsRefused) {
  auto ca = Authority::Create("canopy-root", 24h);
  ASSERT_OK(ca);
  for (const std::string& bad :
       {std::string(""), std::string("garbage"),
        std::string(
            "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"),
        ca->cert_pem(), std::string(20000, 'A')}) {
    auto r = ReadCsr(bad);
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
    auto cert = ca->Issue(bad, "node:n1", {}, Usage::kClient, 24h);
    ASSERT_FALSE(cert.has_value());
    EXPECT_EQ(cert.error().code, ErrorCode::kInvalidArgument);
  }
}

TEST(PkiCsrTest, ForgedCsrIsRefused) {
  auto ca = Authority::Create("canopy-root", 24h);
  ASSERT_OK(ca);
  auto key = NewKey();
  ASSERT_OK(key);
  auto csr = NewCsr(*key, "node:aaaaaaaa", {});
  ASSERT_OK(csr);
  ASSERT_OK(ReadCsr(*csr));

  // The signed content changed after signing (the name): the signature no longer matches.
  std::string header, footer;
  std::string der = PemBody(*csr, &header, &footer);
  size_t at = der.find("node:aaaaaaaa");
  ASSERT_NE(at, std::string::npos);
  der.replace(at, 13, "node:bbbbbbbb");
  std::string forged = ToPem(header, der, footer);
  ASSERT_NE(forged, *csr);
  auto r = ReadCsr(forged);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(r.error().message.find("signature"), std::string::npos) << r.error().message;
  auto cert = ca->Issue(forged, "node:n1", {}, Usage::kClient, 24h);
  ASSERT_FALSE(cert.has_value());
  EXPECT_EQ(cert.error().code, ErrorCode::kInvalidArgument);

  // A flipped byte in the signature itself.
  der = PemBody(*csr, &header, &footer);
  der[der.size() - 5] = static_cast<char>(der[der.size() - 5] ^ 0x01);
  auto r2 = ReadCsr(ToPem(header, der, footer));
  ASSERT_FALSE(r2.has_value());
  EXPECT_EQ(r2.error().code, ErrorCode::kInvalidArgument);

  // Tampered PEM text (a base64 character in the middle changed).
  std::string tampered = *csr;
  size_t mid = tampered.size() / 2;
  while (tampered[mid] == '\n') ++mid;
  tampered[mid] = tampered[mid] == 'A' ? 'B' : 'A';
  auto r3 = ReadCsr(tampered);
  ASSERT_FALSE(r3.has_value());
  EXPECT_EQ(r3.error().code, ErrorCode::kInvalidArgument);
}

TEST(PkiFingerprintTest, FormatIsSha256AndLowerHex) {
  auto ca = Authority::Create("canopy-root", 24h);
  ASSERT_OK(ca);
  auto fp = Fingerprint(ca->cert_pem());
  ASSERT_OK(fp);
  ASSERT_EQ(fp->size(), 7u + 64u);
  EXPECT_TRUE(fp->starts_with("sha256:"));
  for (char c : fp->substr(7)) {
    EXPECT_TRUE((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')) << *fp;
  }
  // Stable, different per certificate, and the first certificate of a bundle.
  EXPECT_EQ(*Fingerprint(ca->cert_pem()), *fp);
  auto other = Authority::Create("canopy-root", 24h);
  ASSERT_OK(other);
  EXPECT_NE(*Fingerprint(other->cert_pem()), *fp);
  EXPECT_EQ(*Fingerprint(ca->cert_pem() + other->cert_pem()), *fp);

  auto bad = Fingerprint("not a certificate");
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error().code, ErrorCode::kInvalidArgument);
}

TEST(PkiFingerprintTest, NormalizeAcceptsTheUsualSpellings) {
  auto ca = Authority::Create("canopy-root", 24h);
  ASSERT_OK(ca);
  std::string fp = *Fingerprint(ca->cert_pem());
  std::string hex = fp.substr(7);
  std::string upper = hex;
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  std::string colons;  // "AB:CD:..." as openssl x509 -fingerprint prints it
  for (size_t i = 0; i < upper.size(); i += 2) {
    if (!colons.empty()) colons += ':';
    colons += upper.substr(i, 2);
  }
  for (const std::string& in :
       {fp, hex, upper, colons, "SHA256:" + upper, "sha256:" + colons, "Sha256:" + hex}) {
    SCOPED_TRACE(in);
    auto n = NormalizeFingerprint(in);
    ASSERT_OK(n);
    EXPECT_EQ(*n, fp);
  }
}

TEST(PkiFingerprintTest, NormalizeRefusesWrongLengthAndNonHex) {
  std::string hex64(64, 'a');
  for (const std::string& in :
       {std::string(""), std::string("sha256:"), hex64.substr(1), hex64 + "a",
        "sha256:" + hex64 + "00", "sha1:" + hex64, std::string(63, 'a') + "g",
        "sha256:" + std::string(62, 'a') + "zz", "md5:" + std::string(32, 'a')}) {
    SCOPED_TRACE(in);
    auto n = NormalizeFingerprint(in);
    ASSERT_FALSE(n.has_value());
    EXPECT_EQ(n.error().code, ErrorCode::kInvalidArgument);
  }
  EXPECT_EQ(*NormalizeFingerprint(hex64), "sha256:" + hex64);
}

TEST(PkiVerifyChainTest, OkWrongCaWrongKey) {
  auto ca = Authority::Create("canopy-root", 24h);
  auto other = Authority::Create("canopy-root", 24h);  // same name, other key
  ASSERT_OK(ca);
  ASSERT_OK(other);
  Leaf leaf = IssueLeaf(*ca, "cluster:c1", Usage::kServerClient, {"10.0.0.1"});
  EXPECT_OK(VerifyChain(leaf.cert, ca->cert_pem()));
  EXPECT_OK(VerifyChain(leaf.cert, ca->cert_pem(), leaf.key));

  auto wrong_ca = VerifyChain(leaf.cert, other->cert_pem(), leaf.key);
  ASSERT_FALSE(wrong_ca.has_value());
  EXPECT_EQ(wrong_ca.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(wrong_ca.error().message.find("does not verify"), std::string::npos)
      << wrong_ca.error().message;

  auto wrong_key = VerifyChain(leaf.cert, ca->cert_pem(), *NewKey());
  ASSERT_FALSE(wrong_key.has_value());
  EXPECT_EQ(wrong_key.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(wrong_key.error().message.find("key does not belong"), std::string::npos)
      << wrong_key.error().message;

  EXPECT_FALSE(VerifyChain("", ca->cert_pem()).has_value());
  EXPECT_FALSE(VerifyChain(leaf.cert, "garbage").has_value());
}

TEST(PkiVerifyChainTest, LeafOfASubCaVerifiesWithTheSubCaInTheChain) {
  auto root = Authority::Create("canopy-root", 24h * 30);
  ASSERT_OK(root);
  Leaf sub = IssueLeaf(*root, "cluster-ca:c1", Usage::kSubCa, {}, 24h * 10);
  auto sub_ca = Authority::Load(sub.cert, sub.key);
  ASSERT_OK(sub_ca);
  Leaf node = IssueLeaf(*sub_ca, "node:n1", Usage::kClient, {"10.0.0.7"});
  auto info = ReadCert(node.cert);
  ASSERT_OK(info);
  EXPECT_EQ(info->issuer_cn, "cluster-ca:c1");
  EXPECT_FALSE(info->is_ca);

  std::string chain = node.cert + sub.cert;
  EXPECT_OK(VerifyChain(chain, root->cert_pem(), node.key));
  auto split = SplitPem(chain);
  ASSERT_OK(split);
  ASSERT_EQ(split->size(), 2u);
  EXPECT_EQ(*Fingerprint((*split)[0]), *Fingerprint(node.cert));
  EXPECT_EQ(*Fingerprint((*split)[1]), *Fingerprint(sub.cert));

  // Without the sub-CA the leaf does not reach the root.
  EXPECT_FALSE(VerifyChain(node.cert, root->cert_pem(), node.key).has_value());
  // Nor to a CA of the same name that did not issue the sub-CA.
  auto other_root = Authority::Create("canopy-root", 24h);
  ASSERT_OK(other_root);
  EXPECT_FALSE(VerifyChain(chain, other_root->cert_pem(), node.key).has_value());

  // A sub-CA has path length 0: a CA it issues cannot issue in turn.
  Leaf sub2 = IssueLeaf(*sub_ca, "cluster-ca:c2", Usage::kSubCa);
  auto sub2_ca = Authority::Load(sub2.cert, sub2.key);
  ASSERT_OK(sub2_ca);
  Leaf deep = IssueLeaf(*sub2_ca, "node:deep", Usage::kClient);
  EXPECT_FALSE(
      VerifyChain(deep.cert + sub2.cert + sub.cert, root->cert_pem(), deep.key).has_value());
}

TEST(PkiSplitPemTest, NoCertificateIsAnError) {
  auto r = SplitPem("nothing here");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
}

TEST(PkiRenewalTest, DueWhenLessThanAThirdIsLeft) {
  CertInfo c;
  c.not_before = std::chrono::system_clock::from_time_t(1'700'000'000);
  c.not_after = c.not_before + 90h;
  EXPECT_FALSE(RenewalDue(c, c.not_before));
  EXPECT_FALSE(RenewalDue(c, c.not_before + 59h));
  EXPECT_TRUE(RenewalDue(c, c.not_before + 60h));
  EXPECT_TRUE(RenewalDue(c, c.not_before + 61h));
  EXPECT_TRUE(RenewalDue(c, c.not_after + 1h));  // expired

  auto ca = Authority::Create("canopy-root", 24h);
  ASSERT_OK(ca);
  Leaf leaf = IssueLeaf(*ca, "node:n1", Usage::kClient, {}, 24h * 30);
  auto info = ReadCert(leaf.cert);
  ASSERT_OK(info);
  auto now = std::chrono::system_clock::now();
  EXPECT_FALSE(RenewalDue(*info, now));
  EXPECT_TRUE(RenewalDue(*info, now + 24h * 21));
}

mode_t ModeOf(const std::string& path) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) return 0;
  return st.st_mode & 0777;
}

TEST(PkiIdentityTest, SaveThenLoad) {
  canopy::testing::TempDir dir;
  auto ca = Authority::Create("canopy-root", 24h);
  ASSERT_OK(ca);
  Leaf leaf = IssueLeaf(*ca, "node:n1", Usage::kClient);

  auto empty = LoadIdentity(dir.str());
  ASSERT_OK(empty);
  EXPECT_FALSE(empty->complete());
  EXPECT_TRUE(empty->key_pem.Reveal().empty());
  EXPECT_TRUE(empty->chain_pem.empty());
  EXPECT_TRUE(empty->ca_pem.empty());

  Identity id{leaf.key, leaf.cert, ca->cert_pem()};
  ASSERT_TRUE(id.complete());
  ASSERT_OK(SaveIdentity(dir.str(), id));
  EXPECT_EQ(ModeOf(dir.str() + "/tls.key"), 0600u);
  EXPECT_EQ(ModeOf(dir.str() + "/tls.crt"), 0644u);
  EXPECT_EQ(ModeOf(dir.str() + "/ca.crt"), 0644u);
  EXPECT_EQ(canopy::testing::ReadFile(dir.str() + "/ca.crt"), ca->cert_pem());

  auto loaded = LoadIdentity(dir.str());
  ASSERT_OK(loaded);
  EXPECT_TRUE(loaded->complete());
  EXPECT_EQ(loaded->key_pem, leaf.key);
  EXPECT_EQ(loaded->chain_pem, leaf.cert);
  EXPECT_EQ(loaded->ca_pem, ca->cert_pem());
}

TEST(PkiIdentityTest, PartialIdentitySavesAndLoadsWhatIsThere) {
  canopy::testing::TempDir dir;
  auto key = NewKey();
  ASSERT_OK(key);
  Identity id;
  id.key_pem = *key;  // a key made, the certificate not issued yet
  ASSERT_OK(SaveIdentity(dir.str(), id));
  EXPECT_EQ(ModeOf(dir.str() + "/tls.key"), 0600u);
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "tls.crt"));
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "ca.crt"));
  auto loaded = LoadIdentity(dir.str());
  ASSERT_OK(loaded);
  EXPECT_FALSE(loaded->complete());
  EXPECT_EQ(loaded->key_pem, *key);
}

TEST(PkiIdentityTest, LoadOfACertificateNotMatchingTheKeyIsAnError) {
  canopy::testing::TempDir dir;
  auto ca = Authority::Create("canopy-root", 24h);
  ASSERT_OK(ca);
  Leaf leaf = IssueLeaf(*ca, "node:n1", Usage::kClient);
  auto other_key = NewKey();
  ASSERT_OK(other_key);
  ASSERT_OK(SaveIdentity(dir.str(), Identity{*other_key, leaf.cert, ca->cert_pem()}));
  auto loaded = LoadIdentity(dir.str());
  ASSERT_FALSE(loaded.has_value());
  EXPECT_EQ(loaded.error().code, ErrorCode::kInvalidArgument);

  // Nor one from another CA.
  canopy::testing::TempDir dir2;
  auto other_ca = Authority::Create("canopy-root", 24h);
  ASSERT_OK(other_ca);
  ASSERT_OK(SaveIdentity(dir2.str(), Identity{leaf.key, leaf.cert, other_ca->cert_pem()}));
  EXPECT_FALSE(LoadIdentity(dir2.str()).has_value());
}

}  // namespace
}  // namespace canopy::net::pki
