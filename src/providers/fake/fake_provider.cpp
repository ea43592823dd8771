#include "providers/fake/fake_provider.h"

namespace canopy::providers::fake {

ProviderInfo FakeProvider::Info() const {
  return ProviderInfo{"fake", "0.1.0", {1}, {"credentials"}};
}

Status FakeProvider::ValidateCredential(const CredentialSecret& secret) {
  const Json& s = secret.Reveal();
  if (!s.is_object()) return Error::InvalidArgument("secret must be a JSON object");
  auto it = s.find("api_key");
  if (it == s.end() || !it->is_string() || it->get_ref<const std::string&>().empty()) {
    return Error::InvalidArgument("secret must contain a non-empty string field 'api_key'");
  }
  if (it->get_ref<const std::string&>().rfind("invalid", 0) == 0) {
    return Error::Unauthenticated("the provider rejected the credential");
  }
  return OkStatus();
}

}  // namespace canopy::providers::fake
