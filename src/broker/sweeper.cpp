#include "broker/sweeper.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <condition_variable>
#include <map>
#include <mutex>
#include <set>

#include "control/operation_kinds.h"

namespace canopy::broker {
namespace {

struct Candidate {
  std::string cluster_id;
  std::string credential_id;
  std::string region;
};

std::vector<Candidate> Candidates(store::Store& store, SweepReport& report) {
  std::map<std::string, Candidate> out;
  if (auto clusters = store.clusters().List(); clusters) {
    for (const auto& c : *clusters) {
      if (c.kind != core::ClusterKind::kCloud || !c.credential_id) continue;
      out[c.id] = {c.id, *c.credential_id, c.region.value_or("")};
    }
  } else {
    report.errors.push_back("cannot list clusters: " + clusters.error().message);
  }
  if (auto ops = store.operations().List(100000); ops) {
    for (const auto& op : *ops) {
      if (op.kind != control::kOpClusterCreate || out.count(op.target_id) != 0) continue;
      std::string cred = op.data.value("credential_id", "");
      if (cred.empty()) continue;
      out[op.target_id] = {op.target_id, cred, op.data.value("region", "")};
    }
  } else {
    report.errors.push_back("cannot list operations: " + ops.error().message);
  }
  std::vector<Candidate> v;
  for (auto& [id, c] : out) v.push_back(std::move(c));
  return v;
}

}  // namespace

SweepReport SweepOnce(store::Store& store, control::CloudAccess& clouds, bool remove) {
  SweepReport report;
  // Which canopy ids rows own now: live clusters and every worker's current generation. A
  // worker being recreated (BOOTING) also owns its previous generations until its operation
  // has terminated them.
  std::set<std::string> owned;
  std::map<std::string, std::string> booting;  // worker id -> its cluster
  if (auto clusters = store.clusters().List(); clusters) {
    for (const auto& c : *clusters) owned.insert(c.id);
  }
  auto workers = store.workers().List();
  if (!workers) {
    report.errors.push_back("cannot list workers: " + workers.error().message);
    return report;
  }
  for (const auto& w : *workers) {
    owned.insert(w.InstanceCanopyId());
    if (w.state == core::WorkerState::kBooting) booting[w.id] = w.cluster_id;
  }
  for (const auto& cand : Candidates(store, report)) {
    auto opened = clouds.Open(cand.credential_id);
    if (!opened) {
      report.errors.push_back(
          fmt::format("cluster {}: {}", cand.cluster_id, opened.error().message));
      continue;
    }
    auto ctx = opened->Context(cand.region);
    auto found = opened->provider->FindInstancesByTag(ctx, providers::kClusterTag, cand.cluster_id);
    if (!found) {
      report.errors.push_back(
          fmt::format("cluster {}: {}", cand.cluster_id, found.error().message));
      continue;
    }
    ++report.clusters_checked;
    for (const auto& inst : *found) {
      ++report.instances_seen;
      if (owned.count(inst.canopy_id) != 0) continue;
      auto worker_tag = inst.tags.find("canopy-worker");
      if (worker_tag != inst.tags.end() && booting.count(worker_tag->second) != 0) continue;
      std::string what = fmt::format("{} ({})", inst.provider_id, inst.canopy_id);
      report.orphans.push_back(what);
      SPDLOG_WARN("Orphan instance: no row owns it cluster={} instance={} canopy_id={} remove={}",
                  cand.cluster_id, inst.provider_id, inst.canopy_id, remove);
      if (!remove) continue;
      auto st = opened->provider->TerminateInstance(ctx, inst.handle);
      if (st) {
        ++report.removed;
        SPDLOG_INFO("Orphan instance terminated instance={}", inst.provider_id);
      } else {
        report.errors.push_back(
            fmt::format("terminate {}: {}", inst.provider_id, st.error().message));
      }
    }
  }
  return report;
}

PeriodicSweeper::PeriodicSweeper(store::Store& store, control::CloudAccess& clouds,
                                 std::chrono::seconds interval, bool remove)
    : thread_([&store, &clouds, interval, remove](std::stop_token stop) {
        std::mutex mu;
        std::condition_variable_any cv;
        while (!stop.stop_requested()) {
          {
            std::unique_lock lock(mu);
            cv.wait_for(lock, stop, interval, [] { return false; });
          }
          if (stop.stop_requested()) break;
          auto r = SweepOnce(store, clouds, remove);
          SPDLOG_INFO("Sweep done clusters={} instances={} orphans={} removed={} errors={}",
                      r.clusters_checked, r.instances_seen, r.orphans.size(), r.removed,
                      r.errors.size());
          for (const auto& e : r.errors) SPDLOG_WARN("Sweep error: {}", e);
        }
      }) {}

PeriodicSweeper::~PeriodicSweeper() {
  thread_.request_stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace canopy::broker
