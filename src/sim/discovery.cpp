#include "sim/discovery.h"

#include <fmt/format.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "common/ids.h"
#include "common/log.h"
#include "net/http.h"

namespace canopy::sim {
namespace {

constexpr int kMaxDepth = 64;

// "canIpForward" -> "can_ip_forward", as Google names fields in its messages (proto names).
std::string Snake(std::string_view name) {
  std::string out;
  for (char c : name) {
    if (c >= 'A' && c <= 'Z') {
      if (!out.empty()) out.push_back('_');
      out.push_back(static_cast<char>(c - 'A' + 'a'));
    } else {
      out.push_back(c);
    }
  }
  return out;
}

std::string Join(const std::string& where, std::string_view field) {
  return where.empty() ? Snake(field) : where + "." + Snake(field);
}

// The request message's field that holds the body, as Google names it in messages: "instance"
// for an Instance body; a body that is the request message itself ("...Request") has none.
std::string RootName(const std::string& schema) {
  if (schema.size() > 7 && schema.compare(schema.size() - 7, 7, "Request") == 0) return "";
  return Snake(schema);
}

std::string Shown(const Json& v) {
  std::string s = v.is_string() ? v.get<std::string>() : DumpJson(v);
  if (s.size() > 80) s = s.substr(0, 77) + "...";
  return v.is_string() ? "\"" + s + "\"" : s;
}

GoogleError InvalidValue(const std::string& where, std::string_view type, const Json& v) {
  return InvalidRequest(fmt::format("Invalid value at '{}' ({}), {}", where, type, Shown(v)));
}

bool ParseInt(std::string_view s, int64_t* out) {
  if (s.empty() || s.size() > 20) return false;
  std::string str(s);
  char* end = nullptr;
  errno = 0;
  long long v = std::strtoll(str.c_str(), &end, 10);
  if (errno != 0 || end != str.c_str() + str.size()) return false;
  for (char c : str) {
    if (!(c == '-' || (c >= '0' && c <= '9'))) return false;
  }
  *out = v;
  return true;
}

bool ParseUint(std::string_view s, uint64_t* out) {
  if (s.empty() || s.size() > 20) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  std::string str(s);
  errno = 0;
  unsigned long long v = std::strtoull(str.c_str(), nullptr, 10);
  if (errno != 0) return false;
  *out = v;
  return true;
}

bool ParseDouble(std::string_view s, double* out) {
  if (s.empty()) return false;
  std::string str(s);
  char* end = nullptr;
  errno = 0;
  double v = std::strtod(str.c_str(), &end);
  if (errno != 0 || end != str.c_str() + str.size()) return false;
  *out = v;
  return true;
}

// Base64 as Google's JSON parser takes `bytes`: standard or URL-safe alphabet, padding optional.
bool IsBase64(std::string_view s) {
  std::string norm;
  norm.reserve(s.size() + 3);
  for (char c : s) {
    if (c == '-') {
      norm.push_back('+');
    } else if (c == '_') {
      norm.push_back('/');
    } else {
      norm.push_back(c);
    }
  }
  while (norm.size() % 4 != 0) norm.push_back('=');
  std::string decoded;
  return Base64Decode(norm, &decoded);
}

std::string TypeName(const Json& schema) {
  std::string type = schema.value("type", "");
  std::string format = schema.value("format", "");
  if (schema.contains("enum")) return "TYPE_ENUM";
  if (type == "boolean") return "TYPE_BOOL";
  if (type == "integer") return format == "uint32" ? "TYPE_UINT32" : "TYPE_INT32";
  if (type == "number") return format == "float" ? "TYPE_FLOAT" : "TYPE_DOUBLE";
  if (type == "string" && (format == "int64" || format == "uint64")) {
    return format == "int64" ? "TYPE_INT64" : "TYPE_UINT64";
  }
  if (type == "string") return format == "byte" ? "TYPE_BYTES" : "TYPE_STRING";
  return "TYPE_MESSAGE";
}

// Whether integer `v` fits the integer schema/parameter `def` (format, minimum, maximum).
bool IntInRange(const Json& def, int64_t v) {
  std::string format = def.value("format", "int32");
  if (format == "int32" && (v < INT32_MIN || v > INT32_MAX)) return false;
  if (format == "uint32" && (v < 0 || v > static_cast<int64_t>(UINT32_MAX))) return false;
  int64_t bound = 0;
  if (def.contains("minimum") && def["minimum"].is_string() &&
      ParseInt(def["minimum"].get<std::string>(), &bound) && v < bound) {
    return false;
  }
  if (def.contains("maximum") && def["maximum"].is_string() &&
      ParseInt(def["maximum"].get<std::string>(), &bound) && v > bound) {
    return false;
  }
  return true;
}

bool InEnum(const Json& def, const std::string& v) {
  if (!def.contains("enum") || !def["enum"].is_array()) return true;
  for (const auto& e : def["enum"]) {
    if (e.is_string() && e.get<std::string>() == v) return true;
  }
  return false;
}

}  // namespace

Json GoogleError::ToJson() const {
  Json one{{"message", message}, {"domain", "global"}, {"reason", reason}};
  if (!location.empty()) one["location"] = location;
  if (!location_type.empty()) one["locationType"] = location_type;
  Json e{{"code", code}, {"message", message}, {"errors", Json::array({one})}};
  if (!status.empty()) e["status"] = status;
  return Json{{"error", e}};
}

GoogleError InvalidRequest(std::string message, std::string reason) {
  GoogleError e;
  e.message = std::move(message);
  e.reason = std::move(reason);
  return e;
}

std::optional<QueryList> ParseQueryString(std::string_view query) {
  QueryList out;
  size_t pos = 0;
  while (pos <= query.size() && !query.empty()) {
    size_t amp = query.find('&', pos);
    std::string_view part =
        query.substr(pos, amp == std::string_view::npos ? std::string_view::npos : amp - pos);
    if (!part.empty()) {
      size_t eq = part.find('=');
      std::string k, v;
      if (!net::UrlDecode(part.substr(0, eq), &k, true)) return std::nullopt;
      if (eq != std::string_view::npos && !net::UrlDecode(part.substr(eq + 1), &v, true)) {
        return std::nullopt;
      }
      out.emplace_back(std::move(k), std::move(v));
    }
    if (amp == std::string_view::npos) break;
    pos = amp + 1;
  }
  return out;
}

std::string ApiCall::Param(std::string_view name) const {
  if (auto it = path.find(std::string(name)); it != path.end()) return it->second;
  if (auto it = query.find(std::string(name)); it != query.end() && !it->second.empty()) {
    return it->second.front();
  }
  return "";
}

// A path template: literals, "{name}" (one segment) and "{+name}" (one or more segments).
struct Discovery::Template {
  struct Tok {
    enum Kind { kLit, kVar, kPlus } kind;
    std::string text;
  };
  std::vector<Tok> toks;
  size_t literal_chars = 0;

  static Template Parse(std::string_view t) {
    Template out;
    size_t pos = 0;
    while (pos < t.size()) {
      size_t open = t.find('{', pos);
      if (open == std::string_view::npos) open = t.size();
      if (open > pos) {
        out.toks.push_back({Tok::kLit, std::string(t.substr(pos, open - pos))});
        out.literal_chars += open - pos;
      }
      if (open == t.size()) break;
      size_t close = t.find('}', open);
      if (close == std::string_view::npos) close = t.size();
      std::string_view name = t.substr(open + 1, close - open - 1);
      if (!name.empty() && name.front() == '+') {
        out.toks.push_back({Tok::kPlus, std::string(name.substr(1))});
      } else {
        out.toks.push_back({Tok::kVar, std::string(name)});
      }
      pos = close + 1;
    }
    return out;
  }

  bool Match(std::string_view path, std::vector<std::pair<std::string, std::string>>* vars) const {
    vars->clear();
    return MatchFrom(0, path, 0, vars);
  }

 private:
  bool MatchFrom(size_t ti, std::string_view path, size_t pos,
                 std::vector<std::pair<std::string, std::string>>* vars) const {
    if (ti == toks.size()) return pos == path.size();
    const Tok& t = toks[ti];
    if (t.kind == Tok::kLit) {
      if (path.substr(pos, t.text.size()) != t.text) return false;
      return MatchFrom(ti + 1, path, pos + t.text.size(), vars);
    }
    size_t end_max = path.size();
    if (t.kind == Tok::kVar) {
      size_t slash = path.find('/', pos);
      if (slash != std::string_view::npos) end_max = slash;
    }
    for (size_t end = end_max; end > pos; --end) {
      vars->emplace_back(t.text, std::string(path.substr(pos, end - pos)));
      if (MatchFrom(ti + 1, path, end, vars)) return true;
      vars->pop_back();
    }
    return false;
  }
};

struct Discovery::Doc {
  Json json;
  std::string name;
  std::string service_path;
};

struct Discovery::MethodEntry {
  const Doc* doc = nullptr;
  const Json* def = nullptr;
  std::string id;
  std::string http_method;
  Template flat;  // servicePath + flatPath (or path): finds the method
  Template full;  // servicePath + path: yields the declared parameters
};

Discovery::Discovery() = default;
Discovery::~Discovery() = default;

Status Discovery::Add(const Json& doc_json) {
  if (!doc_json.is_object() || doc_json.value("kind", "") != "discovery#restDescription" ||
      !doc_json.contains("resources") || !doc_json.contains("schemas")) {
    return Error::InvalidArgument("not a discovery document (kind discovery#restDescription)");
  }
  auto doc = std::make_unique<Doc>();
  doc->json = doc_json;
  doc->name = doc->json.value("name", "");
  doc->service_path = doc->json.value("servicePath", "");
  const Doc* d = doc.get();
  docs_.push_back(std::move(doc));
  // Every method of every (nested) resource.
  std::vector<const Json*> stack{&d->json["resources"]};
  while (!stack.empty()) {
    const Json* resources = stack.back();
    stack.pop_back();
    if (!resources->is_object()) continue;
    for (const auto& [rname, res] : resources->items()) {
      if (res.contains("resources")) stack.push_back(&res["resources"]);
      if (!res.contains("methods") || !res["methods"].is_object()) continue;
      for (const auto& [mname, m] : res["methods"].items()) {
        MethodEntry e;
        e.doc = d;
        e.def = &m;
        e.id = m.value("id", "");
        e.http_method = m.value("httpMethod", "GET");
        std::string path = m.value("path", "");
        e.flat = Template::Parse(d->service_path + m.value("flatPath", path));
        e.full = Template::Parse(d->service_path + path);
        methods_.push_back(std::move(e));
      }
    }
  }
  by_id_.clear();
  for (const auto& e : methods_) by_id_[e.id] = &e;
  return OkStatus();
}

Status Discovery::AddFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error::NotFound("cannot read " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  auto j = ParseJson(ss.str());
  if (!j) return Error::InvalidArgument(path + ": " + j.error().message);
  Status st = Add(*j);
  if (!st) return Error::InvalidArgument(path + ": " + st.error().message);
  return OkStatus();
}

Result<std::unique_ptr<Discovery>> Discovery::LoadGcp(const std::string& dir) {
  auto d = std::make_unique<Discovery>();
  for (const char* f : {"compute-v1-api.json", "cloudresourcemanager-v1-api.json",
                        "iam-v1-api.json", "secretmanager-v1-api.json"}) {
    CANOPY_TRY(d->AddFile(dir + "/" + f));
  }
  return d;
}

const Discovery::Doc* Discovery::DocOf(std::string_view api) const {
  for (const auto& d : docs_) {
    if (d->name == api) return d.get();
  }
  return nullptr;
}

const Json* Discovery::Method(std::string_view method_id) const {
  auto it = by_id_.find(method_id);
  return it == by_id_.end() ? nullptr : it->second->def;
}

std::string Discovery::ResponseSchema(std::string_view method_id) const {
  const Json* m = Method(method_id);
  if (m == nullptr || !m->contains("response")) return "";
  return (*m)["response"].value("$ref", "");
}

bool Discovery::PatternMatches(const std::string& pattern, const std::string& value) const {
  std::shared_ptr<const std::regex> re;
  {
    std::lock_guard lock(regex_mu_);
    auto it = regexes_.find(pattern);
    if (it == regexes_.end()) {
      try {
        re = std::make_shared<const std::regex>(pattern, std::regex::ECMAScript);
      } catch (const std::regex_error&) {
        SPDLOG_WARN("Discovery pattern not checked (not an ECMAScript regex) pattern={}", pattern);
      }
      regexes_[pattern] = re;
    } else {
      re = it->second;
    }
  }
  if (!re) return true;
  try {
    return std::regex_match(value, *re);
  } catch (const std::regex_error&) {
    return true;  // too complex for std::regex: not checked
  }
}

std::optional<GoogleError> Discovery::CheckParam(const Json& def, std::string_view name,
                                                 const std::vector<std::string>& values,
                                                 bool in_path) const {
  if (values.size() > 1 && !def.value("repeated", false)) {
    return InvalidRequest(fmt::format("Invalid JSON payload received. Repeated values for "
                                      "non-repeated parameter '{}'",
                                      name),
                          "invalidParameter");
  }
  const std::string type = def.value("type", "string");
  const std::string format = def.value("format", "");
  for (const auto& v : values) {
    bool ok = true;
    if (type == "integer") {
      int64_t i = 0;
      ok = ParseInt(v, &i) && IntInRange(def, i);
    } else if (type == "boolean") {
      ok = v == "true" || v == "false";
    } else if (type == "number") {
      double d = 0;
      ok = ParseDouble(v, &d);
    } else if (format == "int64") {
      int64_t i = 0;
      ok = ParseInt(v, &i);
    } else if (format == "uint64") {
      uint64_t u = 0;
      ok = ParseUint(v, &u);
    }
    if (!ok) {
      GoogleError e = InvalidValue(Snake(name), TypeName(def), Json(v));
      e.reason = "invalidParameter";
      e.location = std::string(name);
      e.location_type = "parameter";
      return e;
    }
    if (!InEnum(def, v)) {
      GoogleError e = InvalidValue(Snake(name), "TYPE_ENUM", Json(v));
      e.reason = "invalidParameter";
      e.location = std::string(name);
      e.location_type = "parameter";
      return e;
    }
    if (def.contains("pattern") && def["pattern"].is_string() &&
        !PatternMatches(def["pattern"].get<std::string>(), v)) {
      GoogleError e = InvalidRequest(
          fmt::format("Invalid value for field '{}': '{}'. Must be a match of regex '{}'", name, v,
                      def["pattern"].get<std::string>()),
          "invalid");
      if (!in_path) {
        e.location = std::string(name);
        e.location_type = "parameter";
      }
      return e;
    }
  }
  return std::nullopt;
}

std::optional<GoogleError> Discovery::CheckValue(const Doc& doc, const Json& schema_in,
                                                 const Json& v, const std::string& where,
                                                 std::string_view method_id, int depth) const {
  if (depth > kMaxDepth) return InvalidRequest("Invalid JSON payload received. Nesting too deep.");
  const Json* schema = &schema_in;
  if (schema->contains("$ref")) {
    const std::string ref = (*schema)["$ref"].get<std::string>();
    const Json& schemas = doc.json["schemas"];
    if (!schemas.contains(ref)) return std::nullopt;  // unknown in the document: not checked
    schema = &schemas[ref];
  }
  if (v.is_null()) return std::nullopt;  // proto3 JSON: null is the field's default
  const std::string type = schema->value("type", "");
  const std::string format = schema->value("format", "");
  if (type == "any" || type.empty()) return std::nullopt;
  if (type == "string") {
    if (format == "int64" || format == "uint64") {
      if (v.is_number_integer()) {
        if (format == "uint64" && v.is_number_integer() && !v.is_number_unsigned() &&
            v.get<int64_t>() < 0) {
          return InvalidValue(where, TypeName(*schema), v);
        }
        return std::nullopt;
      }
      int64_t i = 0;
      uint64_t u = 0;
      if (!v.is_string() || (format == "int64" ? !ParseInt(v.get<std::string>(), &i)
                                               : !ParseUint(v.get<std::string>(), &u))) {
        return InvalidValue(where, TypeName(*schema), v);
      }
      return std::nullopt;
    }
    if (!v.is_string()) return InvalidValue(where, TypeName(*schema), v);
    const std::string s = v.get<std::string>();
    if (format == "byte" && !IsBase64(s)) return InvalidValue(where, "TYPE_BYTES", v);
    if (!InEnum(*schema, s)) return InvalidValue(where, "TYPE_ENUM", v);
    if (schema->contains("pattern") && (*schema)["pattern"].is_string() &&
        !PatternMatches((*schema)["pattern"].get<std::string>(), s)) {
      return InvalidRequest(fmt::format("Invalid value for field '{}': '{}'. Must be a match of "
                                        "regex '{}'",
                                        where, s, (*schema)["pattern"].get<std::string>()),
                            "invalid");
    }
    return std::nullopt;
  }
  if (type == "integer") {
    int64_t i = 0;
    if (v.is_number_integer()) {
      if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) {
        return InvalidValue(where, TypeName(*schema), v);
      }
      i = v.get<int64_t>();
    } else if (v.is_number_float()) {
      double d = v.get<double>();
      if (d != static_cast<double>(static_cast<int64_t>(d))) {
        return InvalidValue(where, TypeName(*schema), v);
      }
      i = static_cast<int64_t>(d);
    } else if (!v.is_string() || !ParseInt(v.get<std::string>(), &i)) {
      return InvalidValue(where, TypeName(*schema), v);
    }
    if (!IntInRange(*schema, i)) return InvalidValue(where, TypeName(*schema), v);
    return std::nullopt;
  }
  if (type == "number") {
    double d = 0;
    if (v.is_number()) return std::nullopt;
    if (v.is_string()) {
      const std::string s = v.get<std::string>();
      if (s == "NaN" || s == "Infinity" || s == "-Infinity" || ParseDouble(s, &d)) {
        return std::nullopt;
      }
    }
    return InvalidValue(where, TypeName(*schema), v);
  }
  if (type == "boolean") {
    if (!v.is_boolean()) return InvalidValue(where, "TYPE_BOOL", v);
    return std::nullopt;
  }
  if (type == "array") {
    if (!v.is_array()) {
      return InvalidRequest(
          fmt::format("Invalid value at '{}', {}: Starting an array on a scalar "
                      "field or a list expected",
                      where, Shown(v)));
    }
    const Json items = schema->contains("items") ? (*schema)["items"] : Json::object();
    const bool has_pattern = schema->contains("pattern") && (*schema)["pattern"].is_string();
    for (size_t i = 0; i < v.size(); ++i) {
      const std::string at = fmt::format("{}[{}]", where, i);
      if (auto e = CheckValue(doc, items, v[i], at, method_id, depth + 1)) return e;
      if (has_pattern && v[i].is_string() &&
          !PatternMatches((*schema)["pattern"].get<std::string>(), v[i].get<std::string>())) {
        return InvalidRequest(
            fmt::format("Invalid value for field '{}': '{}'. Must be a match of "
                        "regex '{}'",
                        at, v[i].get<std::string>(), (*schema)["pattern"].get<std::string>()),
            "invalid");
      }
    }
    return std::nullopt;
  }
  if (type == "object") {
    if (!v.is_object()) {
      return InvalidRequest(fmt::format("Invalid value at '{}' ({}), {}", where,
                                        schema->value("id", "TYPE_MESSAGE"), Shown(v)));
    }
    if (schema->contains("properties")) {
      const Json& props = (*schema)["properties"];
      for (const auto& [k, child] : v.items()) {
        if (!props.contains(k)) {
          return InvalidRequest(
              where.empty()
                  ? fmt::format("Invalid JSON payload received. Unknown name \"{}\": Cannot find "
                                "field.",
                                k)
                  : fmt::format("Invalid JSON payload received. Unknown name \"{}\" at '{}': "
                                "Cannot find field.",
                                k, where));
        }
        if (auto e = CheckValue(doc, props[k], child, Join(where, k), method_id, depth + 1)) {
          return e;
        }
      }
      if (!method_id.empty()) {
        for (const auto& [k, p] : props.items()) {
          if (!p.contains("annotations") || v.contains(k)) continue;
          const Json& req = p["annotations"].value("required", Json::array());
          for (const auto& m : req) {
            if (m.is_string() && m.get<std::string>() == method_id) {
              return InvalidRequest(
                  fmt::format("Required field '{}' not specified", Join(where, k)), "required");
            }
          }
        }
      }
      return std::nullopt;
    }
    if (schema->contains("additionalProperties")) {
      const Json& ap = (*schema)["additionalProperties"];
      for (const auto& [k, child] : v.items()) {
        if (auto e =
                CheckValue(doc, ap, child, fmt::format("{}[{}]", where, k), method_id, depth + 1)) {
          return e;
        }
      }
    }
    return std::nullopt;
  }
  return std::nullopt;
}

std::optional<GoogleError> Discovery::ValidateValue(std::string_view api, std::string_view schema,
                                                    const Json& value, std::string_view what,
                                                    std::string_view method_id) const {
  const Doc* doc = DocOf(api);
  if (doc == nullptr) return InvalidRequest(fmt::format("no discovery document for {}", api));
  if (!doc->json["schemas"].contains(std::string(schema))) {
    return InvalidRequest(fmt::format("no schema {} in {}", schema, api));
  }
  return CheckValue(*doc, Json{{"$ref", std::string(schema)}}, value, std::string(what), method_id,
                    0);
}

std::optional<GoogleError> Discovery::Validate(std::string_view http_method,
                                               std::string_view target, std::string_view body,
                                               ApiCall* call) const {
  size_t q = target.find('?');
  std::string_view raw_path = target.substr(0, q);
  std::string_view raw_query = q == std::string_view::npos ? "" : target.substr(q + 1);
  if (!raw_path.empty() && raw_path.front() == '/') raw_path.remove_prefix(1);

  // The method: the template with the most literal characters wins ("{id}:access" over "{id}").
  const MethodEntry* best = nullptr;
  std::vector<std::pair<std::string, std::string>> vars;
  for (const auto& m : methods_) {
    if (m.http_method != http_method) continue;
    if (best != nullptr && m.flat.literal_chars <= best->flat.literal_chars) continue;
    if (m.flat.Match(raw_path, &vars)) best = &m;
  }
  if (best == nullptr) {
    GoogleError e;
    e.code = 404;
    e.status = "NOT_FOUND";
    e.reason = "notFound";
    e.message = fmt::format("The requested URL /{} was not found on this server ({}).",
                            std::string(raw_path), std::string(http_method));
    return e;
  }
  const Json& def = *best->def;
  const Json params = def.value("parameters", Json::object());
  ApiCall out;
  out.api = best->doc->name;
  out.method_id = best->id;
  out.http_method = std::string(http_method);

  // Path parameters, from the method's `path` (IAM's "{+name}" spans segments).
  if (!best->full.Match(raw_path, &vars) && !best->flat.Match(raw_path, &vars)) vars.clear();
  for (const auto& [name, raw] : vars) {
    if (!params.contains(name)) continue;
    std::string decoded;
    if (!net::UrlDecode(raw, &decoded, false)) {
      return InvalidRequest(fmt::format("Invalid value for path parameter '{}'", name), "invalid");
    }
    out.path[name] = decoded;
  }
  for (const auto& [name, p] : params.items()) {
    if (p.value("location", "") != "path") continue;
    auto it = out.path.find(name);
    if (it == out.path.end()) {
      if (p.value("required", false)) {
        return InvalidRequest(fmt::format("Required parameter '{}' is missing", name), "required");
      }
      continue;
    }
    if (auto e = CheckParam(p, name, {it->second}, true)) return e;
  }

  // Query parameters: the method's, and the API's standard ones; anything else is refused.
  auto query = ParseQueryString(raw_query);
  if (!query) return InvalidRequest("Invalid query string (bad percent-encoding)");
  for (auto& [k, v] : *query) out.query[k].push_back(v);
  const Json& standard = best->doc->json.value("parameters", Json::object());
  for (const auto& [name, values] : out.query) {
    const Json* p = nullptr;
    if (params.contains(name) && params[name].value("location", "") == "query") {
      p = &params[name];
    } else if (standard.contains(name)) {
      p = &standard[name];
    }
    if (p == nullptr) {
      GoogleError e = InvalidRequest(
          fmt::format("Invalid JSON payload received. Unknown name \"{}\": Cannot bind query "
                      "parameter. Field '{}' could not be found in request message.",
                      name, name),
          "invalidParameter");
      e.location = name;
      e.location_type = "parameter";
      return e;
    }
    if (auto e = CheckParam(*p, name, values, false)) return e;
  }
  for (const auto& [name, p] : params.items()) {
    if (p.value("location", "") == "query" && p.value("required", false) &&
        !out.query.count(name)) {
      GoogleError e =
          InvalidRequest(fmt::format("Required parameter '{}' is missing", name), "required");
      e.location = name;
      e.location_type = "parameter";
      return e;
    }
  }

  // The body, against the request schema.
  if (def.contains("request")) {
    const std::string ref = def["request"].value("$ref", "");
    Json b = Json::object();
    bool blank = body.find_first_not_of(" \t\r\n") == std::string_view::npos;
    if (!blank) {
      auto parsed = ParseJson(body);
      if (!parsed) {
        return InvalidRequest(
            "Invalid JSON payload received. Unexpected token: the body is not "
            "JSON.");
      }
      b = std::move(*parsed);
    }
    if (!b.is_object()) {
      return InvalidRequest(
          fmt::format("Invalid JSON payload received. Expected an object for "
                      "'{}', got {}",
                      RootName(ref), Shown(b)));
    }
    if (auto e = CheckValue(*best->doc, Json{{"$ref", ref}}, b, RootName(ref), best->id, 0)) {
      return e;
    }
    out.body = std::move(b);
  }
  if (call != nullptr) *call = std::move(out);
  return std::nullopt;
}

}  // namespace canopy::sim
