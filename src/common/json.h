// Safe JSON helpers: parsing and field access that return Results instead of throwing.
// Exceptions from nlohmann::json never leave this file. Thread-compatible.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace canopy {

using Json = nlohmann::json;

// Deepest nesting of arrays and objects ParseJson accepts (no API body or cloud answer comes
// near it; Google's discovery documents nest ~12 levels).
inline constexpr size_t kMaxJsonDepth = 64;
// Parses text; malformed JSON, or JSON nested deeper than kMaxJsonDepth -> kInvalidArgument.
Result<Json> ParseJson(std::string_view text);
// Parses and requires an object.
Result<Json> ParseJsonObject(std::string_view text);
// Serializes; invalid UTF-8 is replaced rather than throwing.
std::string DumpJson(const Json& j, int indent = -1);

// Field readers for request validation. "field" names appear in messages.
Result<std::string> GetString(const Json& obj, std::string_view field, size_t max_len = 1024);
Result<std::optional<std::string>> GetOptString(const Json& obj, std::string_view field,
                                                size_t max_len = 1024);
Result<int64_t> GetInt(const Json& obj, std::string_view field, int64_t min, int64_t max);
Result<std::optional<int64_t>> GetOptInt(const Json& obj, std::string_view field, int64_t min,
                                         int64_t max);
Result<bool> GetOptBool(const Json& obj, std::string_view field, bool def);
Result<std::vector<std::string>> GetStringArray(const Json& obj, std::string_view field,
                                                size_t max_items = 64, size_t max_len = 1024);
Result<Json> GetObject(const Json& obj, std::string_view field);

}  // namespace canopy
