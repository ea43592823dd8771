// Services on the command line: `--port` and `--env` values of `canopy service create`, and the
// text that shows a service's command line, ports and environment back. Pure functions;
// thread-safe.
#pragma once

#include <string>
#include <string_view>
#include <utility>

#include "common/json.h"
#include "common/result.h"

namespace canopy::cli {

// "8080", "8080/tcp" or "53/udp" (port 1..65535, protocol tcp by default) as the API's port
// object {"port":8080,"protocol":"tcp"}. kInvalidArgument otherwise.
Result<Json> ParsePortSpec(std::string_view spec);

// "KEY=VALUE" as {KEY, VALUE}: KEY is a variable name ([A-Za-z_][A-Za-z0-9_]*), VALUE anything
// (empty, or holding '='). kInvalidArgument otherwise.
Result<std::pair<std::string, std::string>> ParseEnvAssignment(std::string_view assignment);

// A command (a JSON array of strings) as one line a POSIX shell would split back into the same
// words: words with other characters than [A-Za-z0-9_@%+=:,./-] are single-quoted. "-" when
// `argv` is not an array.
std::string ShellJoin(const Json& argv);

// Ports as "8080/tcp,53/udp"; with `with_sources`, a port limited to source CIDRs reads
// "8080/tcp from 10.0.0.0/8 192.168.0.0/16" and the ports are separated by ", ". "-" when none.
std::string PortsText(const Json& ports, bool with_sources);

// An env object as "A=1, B=x y" (keys sorted); "-" when empty or not an object.
std::string EnvText(const Json& env);

}  // namespace canopy::cli
