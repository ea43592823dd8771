#include "common/error.h"

#include <gtest/gtest.h>

namespace canopy {
namespace {

TEST(ErrorCodeFromName, RoundTripsEveryKnownName) {
  for (ErrorCode c :
       {ErrorCode::kInvalidArgument, ErrorCode::kConflict, ErrorCode::kUnprocessable,
        ErrorCode::kDeadlineExceeded, ErrorCode::kProviderError, ErrorCode::kNotSupported}) {
    auto back = ErrorCodeFromName(ErrorCodeName(c));
    ASSERT_TRUE(back.has_value());
    EXPECT_EQ(*back, c);
  }
  EXPECT_FALSE(ErrorCodeFromName("teapot").has_value());
}

TEST(ErrorCodeFromName, OkIsNotAnErrorName) { EXPECT_FALSE(ErrorCodeFromName("ok").has_value()); }

}  // namespace
}  // namespace canopy
