// The AWS provider's own behaviour against moto (signatures checked), beyond the contract suite:
// the cluster identity's IAM policy as moto enforces it, crash leftovers repaired (a key pair
// without its secret, an identity with unhanded keys), the root volume tagged, the console host
// key wait, and EC2 errors mapped to kinds.
#include <gtest/gtest.h>

#include <set>

#include "common/ids.h"
#include "providers/aws/aws_client.h"
#include "providers/aws/aws_provider.h"
#include "support/moto.h"
#include "support/test_util.h"

namespace canopy::providers::aws {
namespace {

using namespace std::chrono_literals;
using canopy::testing::MotoServer;

class AwsMoto : public ::testing::Test {
 protected:
  void SetUp() override {
    auto moto = MotoServer::Shared();
    if (!moto) GTEST_SKIP() << moto.error().message;
    moto_ = *moto;
    AwsOptions o;
    o.endpoints.all = moto_->url();
    o.pricing_api = false;
    o.console_host_keys = false;
    o.instance_type_patterns = {"t3.*"};
    provider_ = std::make_unique<AwsProvider>(o);
    ctx_ = CallContext{CredentialSecret(moto_->admin_credential()), "us-east-1"};
    auto offers = provider_->ListOffers(ctx_);
    ASSERT_OK(offers);
    image_ = offers->images.front().id;
  }
  Result<Xml> Raw(const Json& cred, const std::string& service, const std::string& action,
                  const QueryParams& p = {}) {
    AwsEndpoints ep;
    ep.all = moto_->url();
    AwsClient client(ep, RetryPolicy{1, 1ms, 1ms});
    SigV4Credentials c{cred["access_key_id"],
                       SecretString(cred["secret_access_key"].get<std::string>()), ""};
    return client.Query(c, service, "us-east-1", action, p);
  }
  InstanceSpec Spec(const std::string& cid) {
    InstanceSpec s;
    s.canopy_id = cid;
    s.idempotency_key = cid;
    s.instance_type = "t3.micro";
    s.image = image_;
    s.disk_gb = 30;
    return s;
  }

  MotoServer* moto_ = nullptr;
  std::unique_ptr<AwsProvider> provider_;
  CallContext ctx_;
  std::string image_;
};

TEST_F(AwsMoto, ClusterIdentityPolicyIsEnforcedByIam) {
  const std::string cluster = "cl-" + RandomHex(4);
  auto ident = provider_->CreateClusterIdentity(ctx_, cluster);
  ASSERT_OK(ident);
  const Json& cred = ident->credential.Reveal();
  EXPECT_EQ(cred["cluster_id"], cluster);
  // Straight to AWS with the identity's keys, bypassing the adapter's own checks.
  auto run = Raw(
      cred, "ec2", "RunInstances",
      {{"ImageId", image_}, {"InstanceType", "t3.micro"}, {"MinCount", "1"}, {"MaxCount", "1"}});
  ASSERT_FALSE(run);
  EXPECT_EQ(KindOf(run.error()), ProviderErrorKind::kAuth) << run.error().message;
  auto regions = Raw(cred, "ec2", "DescribeRegions");
  ASSERT_FALSE(regions);
  EXPECT_EQ(KindOf(regions.error()), ProviderErrorKind::kAuth);
  auto users = Raw(cred, "iam", "ListUsers");
  ASSERT_FALSE(users);
  EXPECT_EQ(KindOf(users.error()), ProviderErrorKind::kAuth);
  EXPECT_OK(Raw(cred, "ec2", "DescribeSecurityGroups"));
  // A second create replaces keys it never handed out: still one key, the new one works.
  auto again = provider_->CreateClusterIdentity(ctx_, cluster);
  ASSERT_OK(again);
  auto keys = Raw(moto_->admin_credential(), "iam", "ListAccessKeys", {{"UserName", again->id}});
  ASSERT_OK(keys);
  EXPECT_EQ(XmlItems(*keys, "ListAccessKeysResult.AccessKeyMetadata").size(), 1u);
  EXPECT_OK(Raw(again->credential.Reveal(), "ec2", "DescribeSecurityGroups"));
  auto old = Raw(cred, "ec2", "DescribeSecurityGroups");
  ASSERT_FALSE(old);
  EXPECT_EQ(KindOf(old.error()), ProviderErrorKind::kAuth);
  EXPECT_OK(provider_->DeleteClusterIdentity(ctx_, again->id));
  auto gone = Raw(moto_->admin_credential(), "iam", "GetUser", {{"UserName", again->id}});
  ASSERT_FALSE(gone);
  EXPECT_EQ(KindOf(gone.error()), ProviderErrorKind::kNotFound);
  auto policies = Raw(moto_->admin_credential(), "iam", "ListPolicies",
                      {{"Scope", "Local"}, {"PathPrefix", "/canopy/"}});
  ASSERT_OK(policies);
  for (const Xml* p : XmlItems(*policies, "ListPoliciesResult.Policies")) {
    EXPECT_NE(XmlText(*p, "PolicyName"), again->id);
  }
}

TEST_F(AwsMoto, KeyPairLeftWithoutItsSecretIsReplaced) {
  const std::string name = "kp-" + RandomHex(4);
  // A crash between EC2 CreateKeyPair and CreateSecret leaves this behind.
  ASSERT_OK(Raw(moto_->admin_credential(), "ec2", "CreateKeyPair", {{"KeyName", name}}));
  auto kp = provider_->CreateKeyPair(ctx_, name);
  ASSERT_OK(kp);
  auto stored = provider_->GetKeyPair(ctx_, name);
  ASSERT_OK(stored);
  EXPECT_EQ(stored->public_key, kp->public_key);
  // The stored key survives the EC2 half being deleted: it is imported again.
  ASSERT_OK(Raw(moto_->admin_credential(), "ec2", "DeleteKeyPair", {{"KeyName", name}}));
  auto back = provider_->CreateKeyPair(ctx_, name);
  ASSERT_OK(back);
  EXPECT_EQ(back->private_key.Reveal(), kp->private_key.Reveal());
  EXPECT_OK(Raw(moto_->admin_credential(), "ec2", "DescribeKeyPairs", {{"KeyName.1", name}}));
}

TEST_F(AwsMoto, RootVolumeIsTaggedAndSized) {
  const std::string cid = "vol-" + RandomHex(4);
  auto inst = provider_->CreateInstance(ctx_, Spec(cid));
  ASSERT_OK(inst);
  auto vols = Raw(moto_->admin_credential(), "ec2", "DescribeVolumes",
                  {{"Filter.1.Name", "tag:canopy-id"}, {"Filter.1.Value.1", cid}});
  ASSERT_OK(vols);
  auto items = XmlItems(*vols, "volumeSet");
  ASSERT_EQ(items.size(), 1u);
  EXPECT_EQ(XmlText(*items[0], "size"), "30");
  EXPECT_OK(provider_->TerminateInstance(ctx_, inst->handle));
}

// With a subnet configured for the region: instances launch into it, report their private
// address when asked to, and the provider's security groups are made in the subnet's VPC.
TEST_F(AwsMoto, SubnetsPlaceInstancesAndGroupsInTheSubnetsVpc) {
  const Json& admin = moto_->admin_credential();
  auto vpc = Raw(admin, "ec2", "CreateVpc", {{"CidrBlock", "198.19.250.0/24"}});
  ASSERT_OK(vpc);
  const std::string vpc_id = XmlText(*vpc, "vpc.vpcId");
  auto subnet =
      Raw(admin, "ec2", "CreateSubnet", {{"VpcId", vpc_id}, {"CidrBlock", "198.19.250.0/25"}});
  ASSERT_OK(subnet);
  const std::string subnet_id = XmlText(*subnet, "subnet.subnetId");
  AwsOptions o;
  o.endpoints.all = moto_->url();
  o.pricing_api = false;
  o.console_host_keys = false;
  o.subnets = {{"us-east-1", subnet_id}};
  o.private_addresses = true;
  AwsProvider in_vpc(o);
  auto fw = in_vpc.CreateFirewall(
      ctx_, FirewallSpec{"vpcfw-" + RandomHex(4), "in vpc", {FirewallRule{22, "tcp", {}}}, {}});
  ASSERT_OK(fw);
  auto groups = Raw(admin, "ec2", "DescribeSecurityGroups", {{"GroupId.1", fw->id}});
  ASSERT_OK(groups);
  ASSERT_EQ(XmlItems(*groups, "securityGroupInfo").size(), 1u);
  EXPECT_EQ(XmlText(*XmlItems(*groups, "securityGroupInfo")[0], "vpcId"), vpc_id);
  InstanceSpec spec = Spec("vpc-" + RandomHex(4));
  spec.firewalls = {fw->id};
  auto inst = in_vpc.CreateInstance(ctx_, spec);
  ASSERT_OK(inst);
  auto d = in_vpc.DescribeInstance(ctx_, inst->handle);
  ASSERT_OK(d);
  EXPECT_TRUE(d->address.starts_with("198.19.250.")) << d->address;
  EXPECT_EQ(d->address, d->private_address);
  EXPECT_EQ(d->handle.data.value("vpc_id", ""), vpc_id);
  EXPECT_OK(in_vpc.TerminateInstance(ctx_, inst->handle));
  // A subnet that does not exist is named when a group is made for it.
  o.subnets = {{"us-east-1", "subnet-0000000000000dead"}};
  AwsProvider wrong(o);
  auto bad = wrong.CreateFirewall(ctx_, FirewallSpec{"vpcfw-" + RandomHex(4), "x", {}, {}});
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("subnet-0000000000000dead"), std::string::npos)
      << bad.error().message;
}

TEST_F(AwsMoto, WaitingForConsoleHostKeysTimesOutClearly) {
  AwsOptions o;
  o.endpoints.all = moto_->url();
  o.pricing_api = false;
  AwsProvider strict(o);
  auto inst = strict.CreateInstance(ctx_, Spec("hk-" + RandomHex(4)));
  ASSERT_OK(inst);
  auto r = strict.WaitUntilRunning(ctx_, inst->handle, 1s);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kDeadlineExceeded);
  EXPECT_NE(r.error().message.find("host key"), std::string::npos) << r.error().message;
  EXPECT_OK(strict.TerminateInstance(ctx_, inst->handle));
}

TEST_F(AwsMoto, FirewallRulesConvergeOnTheSpec) {
  FirewallSpec spec{
      "fwc-" + RandomHex(4),
      "converge",
      {FirewallRule{8080, "tcp", {}}, FirewallRule{9000, "udp", {"10.0.0.0/8", "192.168.0.0/16"}}},
      {}};
  auto a = provider_->CreateFirewall(ctx_, spec);
  ASSERT_OK(a);
  spec.rules = {FirewallRule{9000, "udp", {"192.168.0.0/16", "10.0.0.0/8"}},
                FirewallRule{443, "tcp", {}}};
  auto b = provider_->CreateFirewall(ctx_, spec);
  ASSERT_OK(b);
  EXPECT_EQ(a->id, b->id);
  auto x = Raw(moto_->admin_credential(), "ec2", "DescribeSecurityGroups", {{"GroupId.1", a->id}});
  ASSERT_OK(x);
  auto groups = XmlItems(*x, "securityGroupInfo");
  ASSERT_EQ(groups.size(), 1u);
  std::set<std::string> ports;
  for (const Xml* perm : XmlItems(*groups[0], "ipPermissions")) {
    ports.insert(XmlText(*perm, "ipProtocol") + "/" + XmlText(*perm, "fromPort") + "/" +
                 std::to_string(XmlItems(*perm, "ipRanges").size()));
  }
  EXPECT_EQ(ports, (std::set<std::string>{"tcp/443/1", "udp/9000/2"}));
  EXPECT_OK(provider_->DeleteFirewall(ctx_, a->id));
}

TEST_F(AwsMoto, Ec2ErrorsKeepTheirKinds) {
  ProviderHandle missing{1, Json{{"instance_id", "i-0123456789abcdef0"}, {"region", "us-east-1"}}};
  auto d = provider_->DescribeInstance(ctx_, missing);
  ASSERT_FALSE(d);
  EXPECT_EQ(KindOf(d.error()), ProviderErrorKind::kNotFound);
  EXPECT_OK(provider_->TerminateInstance(ctx_, missing));  // not found counts as done
  ProviderHandle malformed{1, Json{{"instance_id", "not-an-id"}}};
  auto m = provider_->StopInstance(ctx_, malformed);
  ASSERT_FALSE(m);
  EXPECT_EQ(KindOf(m.error()), ProviderErrorKind::kInvalidRequest);
  auto bad_image = provider_->CreateInstance(ctx_, [&] {
    auto s = Spec("bad-" + RandomHex(4));
    s.image = "ami-00000000deadbeef0";
    return s;
  }());
  ASSERT_FALSE(bad_image);
  EXPECT_EQ(KindOf(bad_image.error()), ProviderErrorKind::kInvalidRequest)
      << bad_image.error().message;
  auto fw = provider_->FirewallExists(ctx_, "sg-0123456789abcdef0");
  ASSERT_OK(fw);
  EXPECT_FALSE(*fw);
  EXPECT_OK(provider_->DeleteFirewall(ctx_, "sg-0123456789abcdef0"));
}

}  // namespace
}  // namespace canopy::providers::aws
