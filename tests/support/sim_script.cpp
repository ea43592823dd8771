#include "support/sim_script.h"

#include <unistd.h>

#include <filesystem>

#include "support/moto.h"
#include "support/test_util.h"

namespace canopy::testing {

Result<Json> StartSimScript(const std::string& script, const std::string& dir,
                            const std::vector<std::string>& args) {
  std::string py = FindPython();
  if (py.empty()) return Error::FailedPrecondition("python3 is not on PATH");
  const std::string log = dir + "/start.log";
  std::vector<std::string> argv{
      py, SourceDir() + "/scripts/sim/" + script, "start", "--quiet", "--dir", dir + "/sim"};
  argv.insert(argv.end(), args.begin(), args.end());
  argv.insert(argv.end(), {"--canopy-sim", BinDir() + "/canopy-sim", "--parent-pid",
                           std::to_string(::getpid())});
  Process start(argv, {}, log);
  int rc = start.Wait();
  if (rc != 0) {
    return Error::Unavailable("scripts/sim/" + script + " start failed (" + std::to_string(rc) +
                              "): " + ReadFile(log));
  }
  return ParseJson(ReadFile(dir + "/sim/sim.json"));
}

void StopSimScript(const std::string& script, const std::string& dir) {
  Process stop({FindPython(), SourceDir() + "/scripts/sim/" + script, "stop", "--keep-logs",
                "--dir", dir + "/sim"},
               {}, dir + "/stop.log");
  stop.Wait();
}

std::vector<Json> SimMachineRecords(const std::string& dir) {
  std::vector<Json> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir + "/sim/machines/instances", ec)) {
    auto rec = ParseJson(ReadFile((e.path() / "instance.json").string()));
    if (rec && rec->is_object()) out.push_back(*rec);
  }
  return out;
}

}  // namespace canopy::testing
