// Validation of the names and URLs the root accepts (users, credentials, clusters, services,
// provider types, advertised URLs). Pure functions; thread-safe.
#pragma once

#include <string_view>

namespace canopy::control {

// Names of users, credentials, clusters, services: 1-64 of [A-Za-z0-9._-], starting alphanumeric.
bool IsValidName(std::string_view s);
inline constexpr const char* kNameRule =
    "1-64 letters, digits, '.', '_' or '-', starting with a letter or digit";
// Provider type names: 1-32 of [a-z0-9_-], starting with a letter.
bool IsValidTypeName(std::string_view s);
// http(s)://host[:port][/path] with no spaces or control characters.
bool IsValidHttpUrl(std::string_view s);

}  // namespace canopy::control
