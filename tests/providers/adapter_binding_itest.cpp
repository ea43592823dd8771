// The adapter's HTTP binding around registration: RemoteProvider -> HTTP -> AdapterServer ->
// FakeProvider in this process. The root knows an adapter's key as soon as it commits the
// registration, a moment before the adapter has read the answer; a call in that window must wait
// for the key, and a refused adapter key must never read as the user's credential being refused.
#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <thread>

#include "net/client.h"
#include "providers/adapter/adapter_server.h"
#include "providers/fake/fake_provider.h"
#include "providers/remote/remote_provider.h"
#include "providers/wire.h"
#include "support/test_util.h"

namespace canopy::providers {
namespace {

using namespace std::chrono_literals;

CallContext FakeCtx() { return CallContext{CredentialSecret(Json{{"api_key", "k"}}), "fake-east"}; }

struct Stack {
  fake::FakeProvider fake;
  std::unique_ptr<adapter::AdapterServer> server;

  explicit Stack(const std::string& key) {
    server = std::make_unique<adapter::AdapterServer>(fake, SecretString(key));
    EXPECT_OK(server->Start("127.0.0.1:0"));
  }
  remote::RemoteProvider Remote(const std::string& key) const {
    return remote::RemoteProvider("http://127.0.0.1:" + std::to_string(server->port()),
                                  SecretString(key), fake.Info());
  }
};

TEST(AdapterBinding, ACallBeforeTheKeyArrivesWaitsForItAndSucceeds) {
  Stack s("");  // listening, registration answer not read yet
  auto remote = s.Remote("the-key");
  auto call = std::async(std::launch::async, [&] { return remote.ValidateCredential(FakeCtx()); });
  EXPECT_EQ(call.wait_for(300ms), std::future_status::timeout) << "answered before the key was set";
  s.server->SetKey(SecretString("the-key"));
  ASSERT_EQ(call.wait_for(5s), std::future_status::ready);
  EXPECT_OK(call.get());
}

TEST(AdapterBinding, AWrongAdapterKeyIsTransientNotARefusedCredential) {
  Stack s("the-key");
  auto remote = s.Remote("another-key");
  auto r = remote.ValidateCredential(FakeCtx());
  ASSERT_FALSE(r);
  EXPECT_EQ(KindOf(r.error()), ProviderErrorKind::kTransient);
  EXPECT_NE(r.error().code, ErrorCode::kUnauthenticated);
  EXPECT_NE(r.error().message.find("adapter key"), std::string::npos) << r.error().message;

  // The credential itself refused by the cloud stays an auth error.
  auto good = s.Remote("the-key");
  auto refused = good.ValidateCredential(
      CallContext{CredentialSecret(Json{{"api_key", "invalid-key"}}), "fake-east"});
  ASSERT_FALSE(refused);
  EXPECT_EQ(KindOf(refused.error()), ProviderErrorKind::kAuth);
}

TEST(AdapterBinding, TheAdaptersRefusalCarriesItsReasonOnTheWire) {
  Stack s("the-key");
  net::HttpClient http;
  net::ClientRequest req;
  req.method = "POST";
  req.url = "http://127.0.0.1:" + std::to_string(s.server->port()) + "/v1/validate_credential";
  req.headers["Authorization"] = "Bearer nope";
  req.body = "{}";
  auto resp = http.Do(req);
  ASSERT_OK(resp);
  EXPECT_EQ(resp->status, 401);
  auto j = ParseJson(resp->body);
  ASSERT_OK(j);
  EXPECT_EQ((*j)["error"]["reason"], std::string(wire::kReasonAdapterKey));
}

}  // namespace
}  // namespace canopy::providers
