// providers::CurlClient (cloud APIs) against the outbound HTTP client contract.
#include "providers/http/curl_client.h"

#include "net/client_contract.h"

namespace canopy::net::testing {

INSTANTIATE_TYPED_TEST_SUITE_P(Curl, HttpClientContract, ::testing::Types<providers::CurlClient>);

}  // namespace canopy::net::testing
