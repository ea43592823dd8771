// net::HttpClient (Beast) against the outbound HTTP client contract.
#include "net/client.h"

#include "net/client_contract.h"

namespace canopy::net::testing {

INSTANTIATE_TYPED_TEST_SUITE_P(Beast, HttpClientContract, ::testing::Types<HttpClient>);

}  // namespace canopy::net::testing
