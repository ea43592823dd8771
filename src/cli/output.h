// Output of the CLI: aligned tables, key/value blocks, pretty JSON and the one-line error message.
// Used by cli/commands. Pure functions writing to the given stream; thread-compatible.
#pragma once

#include <functional>
#include <ostream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/json.h"
#include "common/result.h"

namespace canopy::cli {

enum class OutputFormat { kTable, kJson };

// "table" or "json"; kInvalidArgument otherwise.
Result<OutputFormat> ParseOutputFormat(std::string_view s);

// One column of a table: the header and how to get the cell from a row object. By default the
// cell is CellText(row[field]); `render` overrides that.
struct Column {
  std::string header;
  std::string field;
  std::function<std::string(const Json& row)> render = nullptr;
};

// Text for one value: strings as given, null or missing as "-", arrays of scalars joined with
// ",", other values as compact JSON. Control characters become '?' so a value cannot break the
// layout or send escape sequences to the terminal.
std::string CellText(const Json& v);
// CellText of obj[field] ("-" when obj is not an object or lacks the field).
std::string FieldText(const Json& obj, std::string_view field);

// Header line and one line per element of `rows` (elements that are not objects give "-" cells).
// Columns are separated by three spaces and padded to the widest cell (in code points); lines
// carry no trailing spaces.
void RenderTable(std::ostream& out, const std::vector<Column>& columns, const Json& rows);

// "Key:   value" lines with the values aligned.
void RenderKeyValues(std::ostream& out,
                     const std::vector<std::pair<std::string, std::string>>& rows);

// Pretty-printed JSON (indent 2) and a newline: the whole of stdout for `-o json`.
void PrintJson(std::ostream& out, const Json& j);

// The elements of a list response: the array itself, or the one array member of an object
// (e.g. {"items":[...]}); an empty array when neither applies.
Json ListItems(const Json& response);

// "error: <message>" (no newline), the single stderr line of a failed command.
std::string FormatErrorLine(std::string_view message);

}  // namespace canopy::cli
