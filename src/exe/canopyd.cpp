// canopyd: every Canopy daemon in one binary (root, cluster, node, provider).
#include <CLI/CLI.hpp>

int main(int argc, char** argv) {
  CLI::App app{"canopyd - Canopy daemons"};
  app.require_subcommand(1);
  app.add_subcommand("root", "Run the root control plane");
  CLI11_PARSE(app, argc, argv);
  return 0;
}
