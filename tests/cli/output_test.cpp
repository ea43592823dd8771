// cli/output: table layout, cell text, key/value blocks, JSON printing, the error line.
#include "cli/output.h"

#include <gtest/gtest.h>

#include <sstream>

#include "support/test_util.h"

namespace canopy::cli {
namespace {

std::vector<std::string> Lines(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  std::string line;
  while (std::getline(in, line)) {
    out.push_back(line);
  }
  return out;
}

TEST(RenderTable, AlignsColumnsToWidestCell) {
  std::ostringstream out;
  Json rows = Json::array({Json{{"id", "prv-1"}, {"type", "local"}, {"status", "live"}},
                           Json{{"id", "prv-2222"}, {"type", "aws"}, {"status", "down"}}});
  RenderTable(out, {{"ID", "id"}, {"TYPE", "type"}, {"STATUS", "status"}}, rows);
  EXPECT_EQ(out.str(),
            "ID         TYPE    STATUS\n"
            "prv-1      local   live\n"
            "prv-2222   aws     down\n");
}

TEST(RenderTable, HeaderWiderThanCellsSetsWidth) {
  std::ostringstream out;
  RenderTable(out, {{"LAST SEEN", "t"}, {"X", "x"}}, Json::array({Json{{"t", "a"}, {"x", "b"}}}));
  EXPECT_EQ(out.str(), "LAST SEEN   X\na           b\n");
}

TEST(RenderTable, EmptyListPrintsOnlyHeader) {
  std::ostringstream out;
  RenderTable(out, {{"ID", "id"}, {"NAME", "name"}}, Json::array());
  EXPECT_EQ(out.str(), "ID   NAME\n");
}

TEST(RenderTable, MissingFieldsShowDashAndNoTrailingSpaces) {
  std::ostringstream out;
  RenderTable(out, {{"A", "a"}, {"B", "b"}},
              Json::array({Json{{"a", "long-value"}}, Json{{"b", "x"}}, Json("not-an-object")}));
  auto lines = Lines(out.str());
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_EQ(lines[1], "long-value   -");
  EXPECT_EQ(lines[2], "-            x");
  EXPECT_EQ(lines[3], "-            -");
  for (const auto& l : lines) {
    EXPECT_NE(l.back(), ' ') << "'" << l << "'";
  }
}

TEST(RenderTable, CountsUtf8CodePointsForAlignment) {
  std::ostringstream out;
  RenderTable(
      out, {{"N", "n"}, {"V", "v"}},
      Json::array({Json{{"n", "\xc3\xa9t\xc3\xa9"}, {"v", "1"}}, Json{{"n", "abc"}, {"v", "2"}}}));
  auto lines = Lines(out.str());
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[1], "\xc3\xa9t\xc3\xa9   1");
  EXPECT_EQ(lines[2], "abc   2");
}

TEST(RenderTable, CustomRenderOverridesField) {
  std::ostringstream out;
  RenderTable(out, {{"X", "", [](const Json& r) { return "<" + r.value("a", "") + ">"; }}},
              Json::array({Json{{"a", "q"}}}));
  EXPECT_EQ(out.str(), "X\n<q>\n");
}

TEST(CellText, FormatsEachJsonKind) {
  EXPECT_EQ(CellText(Json("2026-11-28T12:00:00Z")), "2026-11-28T12:00:00Z");  // times as given
  EXPECT_EQ(CellText(Json(nullptr)), "-");
  EXPECT_EQ(CellText(Json(42)), "42");
  EXPECT_EQ(CellText(Json(true)), "true");
  EXPECT_EQ(CellText(Json::array({"admin", "infra"})), "admin,infra");
  EXPECT_EQ(CellText(Json{{"k", 1}}), "{\"k\":1}");
}

TEST(CellText, ReplacesControlCharacters) {
  EXPECT_EQ(CellText(Json("a\nb\x1b[2Jc\t")), "a?b?[2Jc?");
}

TEST(RenderKeyValues, AlignsValues) {
  std::ostringstream out;
  RenderKeyValues(out, {{"ID", "crd-1"}, {"Provider", "local"}, {"Empty", ""}});
  EXPECT_EQ(out.str(),
            "ID:         crd-1\n"
            "Provider:   local\n"
            "Empty:\n");
}

TEST(PrintJson, PrintsParseablePrettyJsonWithOneTrailingNewline) {
  std::ostringstream out;
  Json j = {{"a", Json::array({1, 2})}, {"b", "x"}};
  PrintJson(out, j);
  std::string s = out.str();
  ASSERT_FALSE(s.empty());
  EXPECT_EQ(s.back(), '\n');
  EXPECT_NE(s[s.size() - 2], '\n');
  EXPECT_NE(s.find("\n  \"a\""), std::string::npos);  // indented
  auto back = ParseJson(s);
  ASSERT_OK(back);
  EXPECT_EQ(*back, j);
}

TEST(ListItems, AcceptsArrayOrWrappedArray) {
  Json arr = Json::array({1, 2});
  EXPECT_EQ(ListItems(arr), arr);
  EXPECT_EQ(ListItems(Json{{"items", arr}, {"other", Json::array()}}), arr);
  EXPECT_EQ(ListItems(Json{{"users", arr}, {"count", 2}}), arr);
  EXPECT_EQ(ListItems(Json{{"a", arr}, {"b", arr}}), Json::array());
  EXPECT_EQ(ListItems(Json("x")), Json::array());
}

TEST(ParseOutputFormat, AcceptsTableAndJsonOnly) {
  auto t = ParseOutputFormat("table");
  ASSERT_OK(t);
  EXPECT_EQ(*t, OutputFormat::kTable);
  auto j = ParseOutputFormat("json");
  ASSERT_OK(j);
  EXPECT_EQ(*j, OutputFormat::kJson);
  auto bad = ParseOutputFormat("yaml");
  ASSERT_FALSE(bad.has_value());
  EXPECT_NE(bad.error().message.find("yaml"), std::string::npos);
}

TEST(FormatErrorLine, PrefixesAndKeepsOneLine) {
  EXPECT_EQ(FormatErrorLine("user not found (not_found, HTTP 404)"),
            "error: user not found (not_found, HTTP 404)");
  EXPECT_EQ(FormatErrorLine("two\nlines\r"), "error: two lines ");
}

}  // namespace
}  // namespace canopy::cli
