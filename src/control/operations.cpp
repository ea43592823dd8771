#include "control/operations.h"

#include "ops/test_kind.h"

namespace canopy::control {

Operations::Operations(store::Store& store, IdGeneratorPtr ids, ops::OperationQueue& queue,
                       std::string test_marker_file)
    : store_(store),
      ids_(std::move(ids)),
      queue_(queue),
      test_marker_file_(std::move(test_marker_file)) {}

Result<core::Operation> Operations::Get(const std::string& id) {
  auto op = store_.operations().Get(id);
  if (!op && op.error().code == ErrorCode::kNotFound) return Error::NotFound("operation not found");
  return op;
}

Result<std::vector<core::Operation>> Operations::List(const std::string& target) {
  if (!target.empty()) return store_.operations().ListByTarget(target);
  return store_.operations().List(100);
}

Result<TestOperationStarted> Operations::StartTest(const TestOperationRequest& r) {
  Json data = {{"steps", r.steps}, {"step_ms", r.step_ms}, {"marker_file", test_marker_file_}};
  if (r.fail_at) data["fail_at"] = *r.fail_at;
  if (r.transient_failures) data["transient_failures"] = *r.transient_failures;
  std::string target = ids_->NewId("tst");
  core::Operation op;
  CANOPY_TRY(store_.Transaction([&](store::Store& tx) -> Status {
    CANOPY_ASSIGN_OR_RETURN(op, queue_.Enqueue(tx, ops::TestStepsKind::kName, target, data));
    return OkStatus();
  }));
  queue_.Wake();
  return TestOperationStarted{op.id, target};
}

}  // namespace canopy::control
