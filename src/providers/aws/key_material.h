// OpenSSH public key and fingerprint of a private key as EC2 hands it out (CreateKeyPair's PEM
// keyMaterial: RSA, or Ed25519 in PKCS#8). EC2 does not return the public key itself. Pure
// functions over OpenSSL; thread-safe.
#pragma once

#include <string>

#include "common/result.h"
#include "common/secret.h"

namespace canopy::providers::aws {

struct PublicKeyInfo {
  std::string public_key;   ///< "ssh-rsa AAAA..." / "ssh-ed25519 AAAA..."
  std::string fingerprint;  ///< "SHA256:<base64 without padding>", as `ssh-keygen -lf` prints
};

/// kInvalidArgument when the PEM cannot be read or the key type is neither RSA nor Ed25519.
Result<PublicKeyInfo> PublicKeyFromPem(const SecretString& private_key_pem);

}  // namespace canopy::providers::aws
