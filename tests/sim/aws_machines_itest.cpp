// AwsMachines against moto (signatures checked) on a test network: a machine per EC2 instance
// in the subnet, at the instance's address, its host key on the console, its firewall following
// the security groups, stopped / started / terminated with the instance; an AMI without an image
// gets a console that says why. Needs root (machines are namespaces) and moto.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>

#include "common/ids.h"
#include "providers/aws/aws_client.h"
#include "providers/aws/aws_provider.h"
#include "sim/aws_machines.h"
#include "support/daemons.h"
#include "support/local_env.h"
#include "support/moto.h"
#include "support/test_util.h"

namespace canopy::sim {
namespace {

using namespace std::chrono_literals;
namespace aws = providers::aws;
using testing::LocalTestNet;
using testing::MotoServer;

class AwsMachinesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!LocalTestNet::Available()) GTEST_SKIP() << "machines need root";
    auto moto = MotoServer::Shared();
    if (!moto) GTEST_SKIP() << moto.error().message;
    moto_ = *moto;
    ASSERT_TRUE(testing::ExpectBlankImageBuilt("debian-12-minbase"));
    const std::string cidr = net_.Options().subnet;
    auto vpc = Ec2("CreateVpc", {{"CidrBlock", cidr}});
    ASSERT_OK(vpc);
    vpc_ = aws::XmlText(*vpc, "vpc.vpcId");
    auto subnet = Ec2("CreateSubnet", {{"VpcId", vpc_}, {"CidrBlock", cidr}});
    ASSERT_OK(subnet);
    AwsMachinesOptions o;
    o.endpoint = moto_->url();
    o.subnet_id = aws::XmlText(*subnet, "subnet.subnetId");
    o.access_key_id = moto_->admin_credential()["access_key_id"];
    o.secret_access_key =
        SecretString(moto_->admin_credential()["secret_access_key"].get<std::string>());
    o.console_dir = dir_.str() + "/console";
    o.local = net_.Options();
    o.local.state_dir = dir_.str() + "/machines";
    subnet_ = o.subnet_id;
    local_ = o.local;
    auto m = AwsMachines::Create(o);
    ASSERT_OK(m);
    machines_ = std::move(*m);
  }
  void TearDown() override {
    if (machines_) machines_->TerminateAll();
    machines_.reset();
    providers::local::LocalProvider::Purge(local_);
  }

  Result<aws::Xml> Ec2(const std::string& action, const aws::QueryParams& p) {
    aws::AwsEndpoints ep;
    ep.all = moto_->url();
    aws::AwsClient client(ep, aws::RetryPolicy{1, 1ms, 1ms});
    const Json& a = moto_->admin_credential();
    aws::SigV4Credentials c{a["access_key_id"],
                            SecretString(a["secret_access_key"].get<std::string>()), ""};
    return client.Query(c, "ec2", "us-east-1", action, p);
  }
  std::string Console(const std::string& id) {
    return testing::ReadFile(dir_.str() + "/console/" + id);
  }
  // Syncs until `pred` holds (or 30 s pass).
  bool SyncUntil(const std::function<bool()>& pred) {
    return testing::WaitFor(
        [&] {
          EXPECT_OK(machines_->SyncOnce());
          return pred();
        },
        30s);
  }
  std::string State(const std::string& id) {
    auto all = machines_->Machines();
    auto it = all.find(id);
    return it == all.end() ? "" : it->second;
  }

  testing::TempDir dir_;
  LocalTestNet net_;
  MotoServer* moto_ = nullptr;
  std::string vpc_, subnet_;
  providers::local::LocalOptions local_;
  std::unique_ptr<AwsMachines> machines_;
};

TEST_F(AwsMachinesTest, MachinesFollowTheInstancesTheirGroupsAndTheirStates) {
  auto img = Ec2("RegisterImage", {{"Name", "debian-12-amd64-itest-" + RandomHex(3)},
                                   {"RootDeviceName", "/dev/xvda"},
                                   {"Architecture", "x86_64"}});
  ASSERT_OK(img);
  const std::string ami = aws::XmlText(*img, "imageId");
  const std::string key = "sim-itest-" + RandomHex(3);
  ASSERT_OK(Ec2("CreateKeyPair", {{"KeyName", key}}));
  auto sg =
      Ec2("CreateSecurityGroup",
          {{"GroupName", "ssh-" + RandomHex(3)}, {"GroupDescription", "ssh"}, {"VpcId", vpc_}});
  ASSERT_OK(sg);
  const std::string group = aws::XmlText(*sg, "groupId");
  const aws::QueryParams ssh_rule{{"GroupId", group},
                                  {"IpPermissions.1.IpProtocol", "tcp"},
                                  {"IpPermissions.1.FromPort", "22"},
                                  {"IpPermissions.1.ToPort", "22"},
                                  {"IpPermissions.1.IpRanges.1.CidrIp", "0.0.0.0/0"}};
  ASSERT_OK(Ec2("AuthorizeSecurityGroupIngress", ssh_rule));
  auto run = Ec2("RunInstances", {{"ImageId", ami},
                                  {"InstanceType", "t3.micro"},
                                  {"MinCount", "1"},
                                  {"MaxCount", "1"},
                                  {"KeyName", key},
                                  {"SubnetId", subnet_},
                                  {"SecurityGroupId.1", group}});
  ASSERT_OK(run);
  const aws::Xml& inst = *aws::XmlItems(*run, "instancesSet").front();
  const std::string id = aws::XmlText(inst, "instanceId");
  const std::string addr = aws::XmlText(inst, "privateIpAddress");
  ASSERT_TRUE(addr.starts_with(net_.gateway().substr(0, net_.gateway().size() - 1))) << addr;

  // Up: the console shows the host key, and SSH answers at the instance's own address.
  ASSERT_TRUE(SyncUntil([&] { return !aws::AwsProvider::HostKeyFromConsole(Console(id)).empty(); }))
      << Console(id);
  EXPECT_EQ(State(id), "running");
  EXPECT_TRUE(testing::TcpConnects(addr, 22));
  // The group's rule goes: the machine's firewall closes 22; back: it opens again.
  aws::QueryParams revoke = ssh_rule;
  ASSERT_OK(Ec2("RevokeSecurityGroupIngress", revoke));
  EXPECT_TRUE(SyncUntil([&] { return !testing::TcpConnects(addr, 22); }));
  ASSERT_OK(Ec2("AuthorizeSecurityGroupIngress", ssh_rule));
  EXPECT_TRUE(SyncUntil([&] { return testing::TcpConnects(addr, 22); }));

  // Stop: console cleared, machine stopped; start: the same host key again.
  const std::string fp = aws::AwsProvider::HostKeyFromConsole(Console(id));
  ASSERT_OK(Ec2("StopInstances", {{"InstanceId.1", id}}));
  EXPECT_TRUE(SyncUntil([&] { return State(id) == "stopped"; }));
  EXPECT_EQ(Console(id), "");
  EXPECT_FALSE(testing::TcpConnects(addr, 22));
  ASSERT_OK(Ec2("StartInstances", {{"InstanceId.1", id}}));
  EXPECT_TRUE(SyncUntil([&] { return !Console(id).empty() && State(id) == "running"; }));
  EXPECT_EQ(aws::AwsProvider::HostKeyFromConsole(Console(id)), fp);
  EXPECT_TRUE(testing::TcpConnects(addr, 22));

  // An AMI the sim has no image for: no machine, and the console says why.
  auto other = Ec2("RegisterImage", {{"Name", "al2023-ami-itest-" + RandomHex(3)},
                                     {"RootDeviceName", "/dev/xvda"},
                                     {"Architecture", "x86_64"}});
  ASSERT_OK(other);
  auto run2 = Ec2("RunInstances", {{"ImageId", aws::XmlText(*other, "imageId")},
                                   {"InstanceType", "t3.micro"},
                                   {"MinCount", "1"},
                                   {"MaxCount", "1"},
                                   {"KeyName", key},
                                   {"SubnetId", subnet_}});
  ASSERT_OK(run2);
  const std::string id2 = aws::XmlText(*aws::XmlItems(*run2, "instancesSet").front(), "instanceId");
  EXPECT_TRUE(SyncUntil([&] { return !Console(id2).empty(); }));
  EXPECT_NE(Console(id2).find("no blank image"), std::string::npos) << Console(id2);
  EXPECT_EQ(State(id2), "failed");

  // Terminate: the machine goes.
  ASSERT_OK(Ec2("TerminateInstances", {{"InstanceId.1", id}, {"InstanceId.2", id2}}));
  EXPECT_TRUE(SyncUntil([&] { return State(id).empty() && State(id2).empty(); }));
  machines_->Wait();
  EXPECT_EQ(Console(id), "");
  EXPECT_FALSE(testing::TcpConnects(addr, 22));
  EXPECT_FALSE(std::filesystem::exists("/run/netns/canopy-" + id));
}

}  // namespace
}  // namespace canopy::sim
