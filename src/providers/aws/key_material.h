// The key material helpers EC2's key pairs need, shared with the other adapters in
// providers/ssh_keys.h: the OpenSSH public key and fingerprint of a PEM private key
// (CreateKeyPair's keyMaterial: RSA, or Ed25519 in PKCS#8; EC2 does not return the public key).
#pragma once

#include "providers/ssh_keys.h"

namespace canopy::providers::aws {

using providers::PublicKeyFromPem;
using providers::PublicKeyInfo;

}  // namespace canopy::providers::aws
