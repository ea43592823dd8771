#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include "api/api.h"
#include "common/json.h"

namespace canopy::api {
namespace {

std::string Lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

TEST(OpenApi, DocumentListsExactlyTheServedRoutes) {
  auto doc = ParseJson(OpenApiDocument());
  ASSERT_TRUE(doc.has_value());
  std::set<std::string> documented;
  for (auto& [path, item] : (*doc)["paths"].items()) {
    for (auto& [method, op] : item.items()) documented.insert(Lower(method) + " " + path);
  }
  std::set<std::string> served;
  for (const auto& r : RouteTable(ApiOptions{})) served.insert(Lower(r.method) + " " + r.pattern);
  EXPECT_EQ(documented, served);
}

TEST(OpenApi, EveryOperationDocumentsItsRolesAndErrors) {
  auto doc = ParseJson(OpenApiDocument());
  ASSERT_TRUE(doc.has_value());
  for (auto& [path, item] : (*doc)["paths"].items()) {
    for (auto& [method, op] : item.items()) {
      SCOPED_TRACE(method + " " + path);
      EXPECT_TRUE(op.contains("x-canopy-roles"));
      EXPECT_TRUE(op["responses"].contains("default"));
    }
  }
}

TEST(RouteTable, TestRoutesOnlyWhenEnabled) {
  ApiOptions on;
  on.enable_test_ops = true;
  EXPECT_EQ(RouteTable(on).size(), RouteTable(ApiOptions{}).size() + 1);
}

}  // namespace
}  // namespace canopy::api
