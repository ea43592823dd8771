#include "store/row_mutations.h"

namespace canopy::store {
namespace {

constexpr int kCasRetries = 20;

template <class Row, class GetFn, class UpdateFn>
Result<Row> Mutate(GetFn get, UpdateFn update, const Clock& clock,
                   const std::function<Status(Row&)>& fn) {
  for (int i = 0; i < kCasRetries; ++i) {
    CANOPY_ASSIGN_OR_RETURN(Row row, get());
    CANOPY_TRY(fn(row));
    row.updated_at = clock.Now();
    auto st = update(row);
    if (st) {
      ++row.version;
      return row;
    }
    if (st.error().code != ErrorCode::kConflict) return st.error();
  }
  return Error::Unavailable("row kept changing; will retry");
}

}  // namespace

Result<core::Cluster> MutateCluster(Store& s, const Clock& clock, const std::string& id,
                                    const std::function<Status(core::Cluster&)>& fn) {
  return Mutate<core::Cluster>([&] { return s.clusters().Get(id); },
                               [&](const core::Cluster& c) { return s.clusters().Update(c); },
                               clock, fn);
}

Result<core::Worker> MutateWorker(Store& s, const Clock& clock, const std::string& id,
                                  const std::function<Status(core::Worker&)>& fn) {
  return Mutate<core::Worker>([&] { return s.workers().Get(id); },
                              [&](const core::Worker& w) { return s.workers().Update(w); }, clock,
                              fn);
}

}  // namespace canopy::store
