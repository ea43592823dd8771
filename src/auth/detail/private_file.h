// Private key files (mode 0600) for JwtKeys and SecretBox: strict-permission reads and atomic,
// no-clobber creation. Internal to canopy_auth. Thread-safe; safe across processes.
#pragma once

#include <cstddef>
#include <functional>
#include <optional>
#include <string>

#include "common/result.h"
#include "common/secret.h"

namespace canopy::auth::detail {

// Reads `path`. std::nullopt when it does not exist. kFailedPrecondition when it is not a regular
// file, is accessible by group or others (any of mode 077), is larger than `max_bytes`, or cannot
// be read. `what` names the file in messages ("JWT signing key").
Result<std::optional<SecretString>> ReadPrivateFile(const std::string& path, size_t max_bytes,
                                                    std::string_view what);

// Creates `path` holding `content` with mode 0600: written to a temporary file created O_EXCL with
// 0600 in the same directory, fsynced, then moved into place without replacing an existing file
// (renameat2 RENAME_NOREPLACE, falling back to link()). Returns false when `path` already existed,
// e.g. another process created it first; the caller then reads that file.
Result<bool> CreatePrivateFile(const std::string& path, const SecretString& content,
                               std::string_view what);

// Reads `path`, or creates it from `generate()` when missing. Handles the creation race between
// processes: whoever loses reads the winner's file. `created` (optional) tells which happened.
Result<SecretString> LoadOrCreatePrivateFile(const std::string& path, size_t max_bytes,
                                             std::string_view what,
                                             const std::function<Result<SecretString>()>& generate,
                                             bool* created = nullptr);

}  // namespace canopy::auth::detail
