#include "common/clock.h"

#include <gtest/gtest.h>

namespace canopy {
namespace {

TEST(ParseRfc3339, ParsesUtcFractionsAndOffsets) {
  auto a = ParseRfc3339("2026-11-28T12:00:00Z");
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(UnixSeconds(*a), 1795867200);
  auto b = ParseRfc3339("2026-11-28T12:00:00.250Z");
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(UnixMillis(*b), 1795867200250);
  auto c = ParseRfc3339("2026-11-28T13:30:00+01:30");
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(UnixSeconds(*c), 1795867200);
  // Our own formatter's output parses back.
  TimePoint t = FromUnixMillis(1795867200123);
  auto d = ParseRfc3339(FormatRfc3339(t));
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(UnixMillis(*d), 1795867200123);
}

TEST(ParseRfc3339, RejectsMalformedInput) {
  for (const char* bad : {"", "2026-11-28", "2026-11-28T12:00:00", "2026-13-28T12:00:00Z",
                          "2026-11-28T12:00:00.Z", "2026-11-28T12:00:00Zjunk", "yesterday"}) {
    EXPECT_FALSE(ParseRfc3339(bad).has_value()) << bad;
  }
}

TEST(ParseRfc3339, AcceptsWhatClustersReport) {
  auto t = ParseRfc3339("2026-01-02T03:04:05.123456789Z");  // nanoseconds: cut to milliseconds
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(UnixMillis(*t) % 1000, 123);
}

}  // namespace
}  // namespace canopy
