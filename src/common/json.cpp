#include "common/json.h"

#include <fmt/format.h>

#include <algorithm>
#include <string>

namespace canopy {

namespace {
// The deepest nesting of arrays and objects in `text` (outside strings); stops counting past
// `limit`. Linear, no allocation: it runs before the parser builds (and later frees,
// recursively) a document an attacker nested a million levels deep.
size_t NestingDepth(std::string_view text, size_t limit) {
  size_t depth = 0, deepest = 0;
  bool in_string = false, escaped = false;
  for (char ch : text) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (ch == '\\') {
        escaped = true;
      } else if (ch == '"') {
        in_string = false;
      }
      continue;
    }
    if (ch == '"') {
      in_string = true;
    } else if (ch == '[' || ch == '{') {
      deepest = std::max(deepest, ++depth);
      if (deepest > limit) return deepest;
    } else if ((ch == ']' || ch == '}') && depth > 0) {
      --depth;
    }
  }
  return deepest;
}
}  // namespace

Result<Json> ParseJson(std::string_view text) {
  if (NestingDepth(text, kMaxJsonDepth) > kMaxJsonDepth) {
    return Error::InvalidArgument("malformed JSON body: nested deeper than " +
                                  std::to_string(kMaxJsonDepth) + " levels");
  }
  Json j = Json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Error::InvalidArgument("malformed JSON body");
  return j;
}

Result<Json> ParseJsonObject(std::string_view text) {
  CANOPY_ASSIGN_OR_RETURN(Json j, ParseJson(text));
  if (!j.is_object()) return Error::InvalidArgument("request body must be a JSON object");
  return j;
}

std::string DumpJson(const Json& j, int indent) {
  return j.dump(indent, ' ', false, Json::error_handler_t::replace);
}

namespace {
const Json* Find(const Json& obj, std::string_view field) {
  if (!obj.is_object()) return nullptr;
  auto it = obj.find(std::string(field));
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}
}  // namespace

Result<std::optional<std::string>> GetOptString(const Json& obj, std::string_view field,
                                                size_t max_len) {
  const Json* v = Find(obj, field);
  if (v == nullptr) return std::optional<std::string>();
  if (!v->is_string())
    return Error::InvalidArgument(fmt::format("field '{}' must be a string", field));
  const auto& s = v->get_ref<const std::string&>();
  if (s.size() > max_len) {
    return Error::InvalidArgument(
        fmt::format("field '{}' is longer than {} characters", field, max_len));
  }
  return std::optional<std::string>(s);
}

Result<std::string> GetString(const Json& obj, std::string_view field, size_t max_len) {
  CANOPY_ASSIGN_OR_RETURN(auto s, GetOptString(obj, field, max_len));
  if (!s || s->empty()) return Error::InvalidArgument(fmt::format("field '{}' is required", field));
  return *s;
}

Result<std::optional<int64_t>> GetOptInt(const Json& obj, std::string_view field, int64_t min,
                                         int64_t max) {
  const Json* v = Find(obj, field);
  if (v == nullptr) return std::optional<int64_t>();
  if (!v->is_number_integer()) {
    return Error::InvalidArgument(fmt::format("field '{}' must be an integer", field));
  }
  int64_t n = 0;
  if (v->is_number_unsigned()) {
    uint64_t u = v->get<uint64_t>();
    if (u > static_cast<uint64_t>(INT64_MAX)) {
      return Error::InvalidArgument(
          fmt::format("field '{}' must be between {} and {}", field, min, max));
    }
    n = static_cast<int64_t>(u);
  } else {
    n = v->get<int64_t>();
  }
  if (n < min || n > max) {
    return Error::InvalidArgument(
        fmt::format("field '{}' must be between {} and {}", field, min, max));
  }
  return std::optional<int64_t>(n);
}

Result<int64_t> GetInt(const Json& obj, std::string_view field, int64_t min, int64_t max) {
  CANOPY_ASSIGN_OR_RETURN(auto n, GetOptInt(obj, field, min, max));
  if (!n) return Error::InvalidArgument(fmt::format("field '{}' is required", field));
  return *n;
}

Result<bool> GetOptBool(const Json& obj, std::string_view field, bool def) {
  const Json* v = Find(obj, field);
  if (v == nullptr) return def;
  if (!v->is_boolean())
    return Error::InvalidArgument(fmt::format("field '{}' must be a boolean", field));
  return v->get<bool>();
}

Result<std::vector<std::string>> GetStringArray(const Json& obj, std::string_view field,
                                                size_t max_items, size_t max_len) {
  const Json* v = Find(obj, field);
  if (v == nullptr) return Error::InvalidArgument(fmt::format("field '{}' is required", field));
  if (!v->is_array()) {
    return Error::InvalidArgument(fmt::format("field '{}' must be an array of strings", field));
  }
  if (v->size() > max_items) {
    return Error::InvalidArgument(
        fmt::format("field '{}' has more than {} items", field, max_items));
  }
  std::vector<std::string> out;
  for (const auto& e : *v) {
    if (!e.is_string() || e.get_ref<const std::string&>().size() > max_len) {
      return Error::InvalidArgument(fmt::format("field '{}' must be an array of strings", field));
    }
    out.push_back(e.get<std::string>());
  }
  return out;
}

Result<Json> GetObject(const Json& obj, std::string_view field) {
  const Json* v = Find(obj, field);
  if (v == nullptr) return Error::InvalidArgument(fmt::format("field '{}' is required", field));
  if (!v->is_object())
    return Error::InvalidArgument(fmt::format("field '{}' must be an object", field));
  return *v;
}

}  // namespace canopy
