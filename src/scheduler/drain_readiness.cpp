#include "scheduler/drain_readiness.h"

#include <algorithm>

#include "net/probe.h"

namespace canopy::scheduler {

TcpCheck DefaultTcpCheck() {
  return [](const std::string& addr, int port) {
    return net::TcpConnects(addr, port, std::chrono::milliseconds(300));
  };
}

Result<std::vector<std::string>> JobsNotYetMoved(store::Store& store,
                                                 const std::vector<std::string>& jobs,
                                                 const std::string& old_node, const TcpCheck& tcp) {
  CANOPY_ASSIGN_OR_RETURN(auto instances, store.services().ListInstances(""));
  CANOPY_ASSIGN_OR_RETURN(auto services, store.services().List());
  std::vector<std::string> waiting;
  for (const auto& job : jobs) {
    auto it = std::find_if(instances.begin(), instances.end(),
                           [&](const core::ServiceInstance& i) { return i.job_id == job; });
    if (it == instances.end() || it->state == core::InstanceState::kRemoving) continue;
    bool ready = it->state == core::InstanceState::kRunning && !it->node_id.empty() &&
                 it->node_id != old_node;
    if (ready) {
      auto svc = std::find_if(services.begin(), services.end(),
                              [&](const core::Service& s) { return s.id == it->service_id; });
      if (svc != services.end()) {
        for (const auto& port : svc->spec.value("ports", Json::array())) {
          if (port.value("protocol", "tcp") != "tcp" ||
              !port.value("source_cidrs", Json::array()).empty()) {
            continue;
          }
          if (!tcp(it->address, static_cast<int>(port.value("port", 0)))) ready = false;
          break;
        }
      }
    }
    if (!ready) waiting.push_back(job);
  }
  return waiting;
}

}  // namespace canopy::scheduler
