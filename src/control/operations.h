// Operations: reading persisted operations (GET /api/v1/operations), and starting the observable
// test.steps kind when the root runs with --enable-test-ops. Thread-safe.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "common/ids.h"
#include "core/types.h"
#include "ops/engine.h"
#include "store/store.h"

namespace canopy::control {

struct TestOperationRequest {
  int64_t steps = 1;
  int64_t step_ms = 0;
  std::optional<int64_t> fail_at;
  std::optional<int64_t> transient_failures;
};

struct TestOperationStarted {
  std::string operation_id;
  std::string target_id;
};

class Operations {
 public:
  // `test_marker_file`: where test.steps operations write their markers.
  Operations(store::Store& store, IdGeneratorPtr ids, ops::OperationQueue& queue,
             std::string test_marker_file);

  Result<core::Operation> Get(const std::string& id);  // kNotFound "operation not found"
  // The operations of `target` (all of them), or the latest 100 when target is empty.
  Result<std::vector<core::Operation>> List(const std::string& target);
  Result<TestOperationStarted> StartTest(const TestOperationRequest& r);

 private:
  store::Store& store_;
  IdGeneratorPtr ids_;
  ops::OperationQueue& queue_;
  std::string test_marker_file_;
};

}  // namespace canopy::control
