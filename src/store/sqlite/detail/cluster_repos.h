// SQLite repositories of clusters, cluster tokens, cluster commands and workers (part of
// SqliteStore). Internal to store/sqlite. Thread-safe: every call holds the connection's mutex.
#pragma once

#include <memory>

#include "store/store.h"

namespace canopy::store::sqlite::detail {

class Connection;

std::unique_ptr<ClusterRepo> MakeClusterRepo(Connection& c);
std::unique_ptr<ClusterTokenRepo> MakeClusterTokenRepo(Connection& c);
std::unique_ptr<ClusterCommandRepo> MakeClusterCommandRepo(Connection& c);
std::unique_ptr<WorkerRepo> MakeWorkerRepo(Connection& c);    // worker_repo.cpp
std::unique_ptr<ServiceRepo> MakeServiceRepo(Connection& c);  // service_repo.cpp

}  // namespace canopy::store::sqlite::detail
