#include "node/resources.h"

#include <gtest/gtest.h>
#include <sys/utsname.h>

namespace canopy::node {
namespace {

TEST(Resources, ParsesMeminfoWithMemAvailable) {
  auto m =
      ParseMeminfo("MemTotal:       16384000 kB\nMemFree:  100 kB\nMemAvailable:    8192000 kB\n");
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->total_mib, 16000);
  EXPECT_EQ(m->available_mib, 8000);
}

TEST(Resources, FallsBackToFreePlusCachesWithoutMemAvailable) {
  auto m = ParseMeminfo("MemTotal: 2048 kB\nMemFree: 1024 kB\nBuffers: 1024 kB\nCached: 2048 kB\n");
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->total_mib, 2);
  EXPECT_EQ(m->available_mib, 4);
}

TEST(Resources, RejectsMeminfoWithoutTotalOrWithGarbage) {
  EXPECT_FALSE(ParseMeminfo("").has_value());
  EXPECT_FALSE(ParseMeminfo("MemFree: 1 kB\n").has_value());
  EXPECT_FALSE(ParseMeminfo("MemTotal: lots\n").has_value());
  EXPECT_FALSE(ParseMeminfo("MemTotalX: 5 kB\n").has_value());
}

TEST(Resources, ParsesLoadavg) {
  EXPECT_DOUBLE_EQ(ParseLoadavg("0.52 0.58 0.59 1/389 12345\n").value(), 0.52);
  EXPECT_FALSE(ParseLoadavg("").has_value());
  EXPECT_FALSE(ParseLoadavg("x 1 2").has_value());
}

TEST(Resources, ReadsLiveFiguresOfThisMachine) {
  NodeResources r = ReadResources();
  EXPECT_GE(r.cpu_millis, 1000);
  EXPECT_GT(r.memory_mib, 0);
  EXPECT_GT(r.memory_available_mib, 0);
  EXPECT_LE(r.memory_available_mib, r.memory_mib);
  EXPECT_EQ(r.ToJson()["cpu_millis"], r.cpu_millis);
}

TEST(Resources, GivenCapacityReplacesTheRealFigures) {
  NodeResources real;
  real.cpu_millis = 8000;
  real.memory_mib = 16000;
  real.memory_available_mib = 9000;
  real.load1 = 1.5;
  NodeResources same = WithCapacity(real, 0, 0);
  EXPECT_EQ(same.ToJson(), real.ToJson());
  NodeResources small = WithCapacity(real, 2000, 4096);
  EXPECT_EQ(small.cpu_millis, 2000);
  EXPECT_EQ(small.memory_mib, 4096);
  EXPECT_EQ(small.memory_available_mib, 4096);  // min(real available, given)
  EXPECT_DOUBLE_EQ(small.load1, 1.5);
  NodeResources big = WithCapacity(real, 0, 32000);
  EXPECT_EQ(big.cpu_millis, 8000);
  EXPECT_EQ(big.memory_mib, 32000);
  EXPECT_EQ(big.memory_available_mib, 9000);
  EXPECT_EQ(WithCapacity(real, 500, 0).cpu_millis, 500);
  EXPECT_EQ(WithCapacity(real, 500, 0).memory_mib, 16000);
}

TEST(Resources, OsReleasePrettyNameWithQuotesAndEscapes) {
  EXPECT_EQ(
      ParseOsRelease("NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 11 (bullseye)\"\n"),
      "Debian GNU/Linux 11 (bullseye)");
  EXPECT_EQ(ParseOsRelease("PRETTY_NAME='Amazon Linux 2023'\n"), "Amazon Linux 2023");
  EXPECT_EQ(ParseOsRelease("PRETTY_NAME=Plain\r\n"), "Plain");
  EXPECT_EQ(ParseOsRelease("PRETTY_NAME=\"say \\\"hi\\\"\"\n"), "say \"hi\"");
  // PRETTY_NAME absent: NAME and VERSION; a key that only starts alike does not count.
  EXPECT_EQ(ParseOsRelease("PRETTY_NAMES=x\nNAME=Ubuntu\nVERSION=\"22.04 LTS\"\n"),
            "Ubuntu 22.04 LTS");
  EXPECT_EQ(ParseOsRelease("NAME=Alpine\n"), "Alpine");
  EXPECT_EQ(ParseOsRelease(""), "");
  EXPECT_EQ(ParseOsRelease("garbage without equals\n"), "");
}

TEST(Resources, ReadsTheSystemOfThisMachine) {
  core::NodeSystem s = ReadSystem();
  utsname u{};
  ASSERT_EQ(::uname(&u), 0);
  EXPECT_EQ(s.kernel, u.release);
  EXPECT_EQ(s.arch, u.machine);
  EXPECT_GT(s.cpus, 0);
  EXPECT_GT(s.memory_mib, 0);
  EXPECT_FALSE(s.os.empty());  // every machine here has /etc/os-release
}

}  // namespace
}  // namespace canopy::node
