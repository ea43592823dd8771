// CLI configuration file ($XDG_CONFIG_HOME/canopy/config.json): the root URL, the login token and
// the CA certificate the root's https certificate must chain to.
// Used by cli/commands. The file is written atomically with mode 0600 in a 0700 directory.
// Thread-compatible (plain functions over the file system).
#pragma once

#include <filesystem>
#include <functional>
#include <optional>
#include <string>

#include "common/result.h"
#include "common/secret.h"

namespace canopy::cli {

// Reads an environment variable; nullopt when unset. Injected so tests need not touch the
// process environment.
using EnvLookup = std::function<std::optional<std::string>(const std::string& name)>;
// The real process environment.
EnvLookup ProcessEnv();

struct Config {
  std::string root;  // base URL of the root, e.g. "https://canopy.example:8443"
  std::string username;
  SecretString token;      // the access token (JWT); empty after logout
  std::string expires_at;  // RFC 3339 UTC; empty when unknown
  // The CA (PEM) trusted for `root`, set only by a login (`canopy login --ca-file`,
  // `--ca-fingerprint`, a CA accepted at the prompt, or `canopy up`); empty: the system's roots.
  std::string ca_pem;

  bool HasToken() const { return !token.Reveal().empty(); }
};

// $XDG_CONFIG_HOME/canopy/config.json when XDG_CONFIG_HOME is set to an absolute path (the XDG
// spec says relative values are ignored), else $HOME/.config/canopy/config.json, else the
// password database's home directory. kFailedPrecondition when no home directory can be found.
Result<std::filesystem::path> ConfigPath(const EnvLookup& env);

// A missing file yields an empty Config. A malformed file is kInvalidArgument naming the path.
Result<Config> LoadConfig(const std::filesystem::path& path);

// Creates missing directories with mode 0700 (and tightens the config directory itself to 0700),
// then writes the file through a 0600 temporary file renamed over the old one.
Status SaveConfig(const std::filesystem::path& path, const Config& config);

}  // namespace canopy::cli
