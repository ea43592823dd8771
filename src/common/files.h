// Small file helpers shared by the daemons (identity files, keys, state records). Thread-safe
// (no shared state); concurrent writers of one path leave one complete version.
#pragma once

#include <sys/types.h>

#include <string>
#include <string_view>

#include "common/json.h"
#include "common/result.h"

namespace canopy {

/// Replaces `path` atomically with `content`: written to a fresh temporary file in the same
/// directory created with `mode` (never readable by others meanwhile), fsync'd, then renamed.
/// Errors name the path, never the content.
Status WriteFileAtomic(const std::string& path, std::string_view content, mode_t mode = 0600);

/// The whole content of `path` (small files: keys, certificates). kNotFound when it cannot be read.
Result<std::string> ReadFileString(const std::string& path);

/// `path`'s content without trailing whitespace, "" when it cannot be read (token files).
std::string ReadTrimmedFile(const std::string& path);

/// The JSON object stored in `path`: kNotFound when the file is missing or unreadable,
/// kInvalidArgument when it is not a JSON object.
Result<Json> ReadJsonObjectFile(const std::string& path);

}  // namespace canopy
