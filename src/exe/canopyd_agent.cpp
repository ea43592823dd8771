// canopyd-agent: the Canopy roles that run on instances (cluster, node, probe), linked statically
// so that it runs on any x86-64 Linux without packages. The installer pushes it as bin/canopyd;
// the root and the provider adapters stay in canopyd. See docs/decisions/portable-agent.md.
#include <CLI/CLI.hpp>

#include "exe/agent_roles.h"

int main(int argc, char** argv) {
  CLI::App app{"canopyd-agent - the Canopy roles that run on instances (cluster, node, probe)"};
  app.require_subcommand(1);
  app.fallthrough();  // global options (--log-level) may follow the subcommand too
  std::string log_level = "info";
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error")
      ->envname("CANOPY_LOG_LEVEL");
  canopy::exe::AgentRoles roles(app);
  CLI11_PARSE(app, argc, argv);
  return roles.Run(log_level).value_or(2);
}
