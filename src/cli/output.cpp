#include "cli/output.h"

#include <fmt/format.h>

#include <algorithm>

namespace canopy::cli {

namespace {

constexpr std::string_view kColumnGap = "   ";

// Display width approximated by code points: UTF-8 continuation bytes take no column.
size_t Width(std::string_view s) {
  return static_cast<size_t>(std::count_if(
      s.begin(), s.end(), [](char ch) { return (static_cast<unsigned char>(ch) & 0xC0) != 0x80; }));
}

std::string Sanitize(std::string_view in) {
  std::string out(in);
  for (char& ch : out) {
    auto c = static_cast<unsigned char>(ch);
    if (c < 0x20 || c == 0x7f) {
      ch = '?';
    }
  }
  return out;
}

void WriteRow(std::ostream& out, const std::vector<std::string>& cells,
              const std::vector<size_t>& widths) {
  std::string line;
  for (size_t i = 0; i < cells.size(); ++i) {
    line += cells[i];
    if (i + 1 < cells.size()) {
      line.append(widths[i] - Width(cells[i]), ' ');
      line += kColumnGap;
    }
  }
  // A trailing empty cell would otherwise leave padding behind.
  while (!line.empty() && line.back() == ' ') {
    line.pop_back();
  }
  out << line << '\n';
}

}  // namespace

Result<OutputFormat> ParseOutputFormat(std::string_view s) {
  if (s == "table") {
    return OutputFormat::kTable;
  }
  if (s == "json") {
    return OutputFormat::kJson;
  }
  return Error::InvalidArgument(
      fmt::format("unknown output format '{}': use json or table", Sanitize(s)));
}

std::string CellText(const Json& v) {
  if (v.is_null()) {
    return "-";
  }
  if (v.is_string()) {
    return Sanitize(v.get_ref<const std::string&>());
  }
  if (v.is_array()) {
    bool scalars = std::all_of(v.begin(), v.end(), [](const Json& e) { return e.is_primitive(); });
    if (scalars) {
      std::string s;
      for (const Json& e : v) {
        if (!s.empty()) {
          s += ',';
        }
        s += CellText(e);
      }
      return s;
    }
  }
  return Sanitize(DumpJson(v));
}

std::string FieldText(const Json& obj, std::string_view field) {
  if (!obj.is_object()) {
    return "-";
  }
  auto it = obj.find(std::string(field));
  if (it == obj.end()) {
    return "-";
  }
  return CellText(*it);
}

void RenderTable(std::ostream& out, const std::vector<Column>& columns, const Json& rows) {
  std::vector<std::vector<std::string>> cells;
  std::vector<std::string> header;
  std::vector<size_t> widths;
  for (const Column& c : columns) {
    header.push_back(c.header);
    widths.push_back(Width(c.header));
  }
  if (rows.is_array()) {
    for (const Json& row : rows) {
      std::vector<std::string> line;
      for (size_t i = 0; i < columns.size(); ++i) {
        std::string cell =
            columns[i].render ? Sanitize(columns[i].render(row)) : FieldText(row, columns[i].field);
        widths[i] = std::max(widths[i], Width(cell));
        line.push_back(std::move(cell));
      }
      cells.push_back(std::move(line));
    }
  }
  WriteRow(out, header, widths);
  for (const auto& line : cells) {
    WriteRow(out, line, widths);
  }
}

void RenderKeyValues(std::ostream& out,
                     const std::vector<std::pair<std::string, std::string>>& rows) {
  size_t width = 0;
  for (const auto& [key, value] : rows) {
    width = std::max(width, Width(key) + 1);
  }
  for (const auto& [key, value] : rows) {
    std::string line = key + ":";
    line.append(width - Width(key) - 1, ' ');
    line += kColumnGap;
    line += Sanitize(value);
    while (!line.empty() && line.back() == ' ') {
      line.pop_back();
    }
    out << line << '\n';
  }
}

void PrintJson(std::ostream& out, const Json& j) { out << DumpJson(j, 2) << '\n'; }

Json ListItems(const Json& response) {
  if (response.is_array()) {
    return response;
  }
  if (response.is_object()) {
    auto items = response.find("items");
    if (items != response.end() && items->is_array()) {
      return *items;
    }
    const Json* only = nullptr;
    for (const auto& [key, value] : response.items()) {
      if (value.is_array()) {
        if (only != nullptr) {
          return Json::array();
        }
        only = &value;
      }
    }
    if (only != nullptr) {
      return *only;
    }
  }
  return Json::array();
}

std::string FormatErrorLine(std::string_view message) {
  std::string line = "error: ";
  for (char ch : message) {
    auto c = static_cast<unsigned char>(ch);
    line += (c < 0x20 || c == 0x7f) ? ' ' : ch;
  }
  return line;
}

}  // namespace canopy::cli
