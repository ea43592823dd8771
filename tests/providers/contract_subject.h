// What the provider contract suite (contract_test.cpp) needs of one implementation. A provider
// joins the suite by writing a SubjectMaker (e.g. in tests/providers/local_contract_subject.h)
// and adding one line to kSubjects. Test-only; not thread-safe.
#pragma once

#include <functional>
#include <memory>
#include <optional>

#include "common/json.h"
#include "common/result.h"
#include "providers/fake/fake_provider.h"
#include "providers/provider.h"

namespace canopy::providers::contract {

struct Subject {
  Provider* provider = nullptr;
  CallContext ctx;                           // a valid credential and region
  std::optional<Json> malformed_credential;  // -> invalid_request (nullopt: not applicable)
  std::optional<Json> rejected_credential;   // -> auth (nullopt: not applicable)
  fake::FakeProvider* fake = nullptr;        // set when failures can be injected
  std::shared_ptr<void> keep;                // owns everything above; released after each test
};
// Builds a subject, or an error meaning "skip here" (e.g. the local provider without root).
using SubjectMaker = std::function<Result<Subject>()>;

}  // namespace canopy::providers::contract
