#include <gtest/gtest.h>

#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "net/http.h"

namespace canopy::net {
namespace {

using std::chrono::microseconds;
using std::chrono::milliseconds;

// The value of the sample whose name+labels is exactly `series`, or -1.
double Sample(const std::string& text, const std::string& series) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(series + " ", 0) == 0) {
      return std::stod(line.substr(series.size() + 1));
    }
  }
  return -1;
}

TEST(Metrics, CountsRequestsPerMethodRouteAndStatus) {
  Metrics m;
  m.Observe("GET", "/a/{id}", 200, milliseconds(1));
  m.Observe("GET", "/a/{id}", 200, milliseconds(1));
  m.Observe("GET", "/a/{id}", 404, milliseconds(1));
  m.Observe("POST", "", 413, milliseconds(1));
  std::string text = m.RenderPrometheus();
  EXPECT_EQ(
      Sample(text, R"(canopy_http_requests_total{method="GET",route="/a/{id}",status="200"})"), 2);
  EXPECT_EQ(
      Sample(text, R"(canopy_http_requests_total{method="GET",route="/a/{id}",status="404"})"), 1);
  EXPECT_EQ(
      Sample(text, R"(canopy_http_requests_total{method="POST",route="unmatched",status="413"})"),
      1);
  EXPECT_NE(text.find("# TYPE canopy_http_requests_total counter\n"), std::string::npos);
  EXPECT_NE(text.find("# TYPE canopy_http_request_duration_seconds histogram\n"),
            std::string::npos);
}

TEST(Metrics, HistogramBucketsAreCumulative) {
  Metrics m;
  m.Observe("GET", "/h", 200, microseconds(500));    // <= 0.001
  m.Observe("GET", "/h", 200, milliseconds(3));      // <= 0.005
  m.Observe("GET", "/h", 500, milliseconds(20000));  // beyond the last bucket
  std::string text = m.RenderPrometheus();
  const std::string p =
      R"(canopy_http_request_duration_seconds_bucket{method="GET",route="/h",le=")";
  EXPECT_EQ(Sample(text, p + "0.001\"}"), 1);
  EXPECT_EQ(Sample(text, p + "0.0025\"}"), 1);
  EXPECT_EQ(Sample(text, p + "0.005\"}"), 2);
  EXPECT_EQ(Sample(text, p + "10\"}"), 2);
  EXPECT_EQ(Sample(text, p + "+Inf\"}"), 3);
  EXPECT_EQ(Sample(text, R"(canopy_http_request_duration_seconds_count{method="GET",route="/h"})"),
            3);
  EXPECT_NEAR(Sample(text, R"(canopy_http_request_duration_seconds_sum{method="GET",route="/h"})"),
              20.0035, 1e-6);
}

TEST(Metrics, EscapesLabelsAndBoundsMethods) {
  Metrics m;
  m.Observe("BREW", "/q\"uo\\te\n", 200, milliseconds(1));
  std::string text = m.RenderPrometheus();
  EXPECT_EQ(
      Sample(text,
             R"(canopy_http_requests_total{method="OTHER",route="/q\"uo\\te\n",status="200"})"),
      1);
  EXPECT_EQ(text.find("BREW"), std::string::npos);
}

TEST(Metrics, ReportsProcessGauges) {
  Metrics m;
  std::string text = m.RenderPrometheus();
  EXPECT_GT(Sample(text, "process_resident_memory_bytes"), 1024 * 1024);
  double fds = Sample(text, "process_open_fds");
  EXPECT_GE(fds, 3);  // at least stdin, stdout, stderr
  EXPECT_NE(text.find("# TYPE process_open_fds gauge\n"), std::string::npos);
}

TEST(Metrics, ConcurrentObserversLoseNothing) {
  Metrics m;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&m] {
      for (int i = 0; i < 1000; ++i) {
        m.Observe("GET", "/c", 200, microseconds(10));
      }
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  std::string text = m.RenderPrometheus();
  EXPECT_EQ(Sample(text, R"(canopy_http_requests_total{method="GET",route="/c",status="200"})"),
            4000);
}

}  // namespace
}  // namespace canopy::net
