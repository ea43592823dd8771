// Running host tools (ip, nft, sshd, ssh-keygen) for the local provider, without a shell.
// Used only by src/providers/local. Thread-safe (posix_spawn; children get a clean signal state
// and no inherited file descriptors beyond stdin/stdout/stderr).
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace canopy::providers::local {

struct CommandResult {
  int exit_code = -1;  ///< exit status, or 128+signal
  std::string out;
  std::string err;
};

/// Runs argv[0] (absolute path) with `input` on stdin; collects stdout/stderr. A minimal
/// environment (PATH, LC_ALL=C) is passed so no adapter secret leaks into long-lived children.
Result<CommandResult> RunCommand(const std::vector<std::string>& argv, std::string_view input = {},
                                 std::chrono::milliseconds timeout = std::chrono::seconds(30));

/// RunCommand that turns a non-zero exit into kInternal "<what> failed: <stderr>".
Status RunChecked(const std::vector<std::string>& argv, std::string_view what,
                  std::string_view input = {});

/// The first existing executable among /usr/sbin, /usr/bin, /sbin, /bin named `name`, or "".
std::string FindTool(const std::string& name);

/// PIDs of the processes in the named network namespace (same test as `ip netns pids`).
std::vector<int> NetnsPids(const std::string& netns);

}  // namespace canopy::providers::local
