// SSH key material shared by the cloud adapters: the OpenSSH public key and SHA256 fingerprint of
// a private key (PEM as EC2 hands it out, or OpenSSH's own format), fresh Ed25519 keys in OpenSSH
// format (GCP has no key pairs: the adapter makes them), fingerprints of public key blobs (GCE
// guest attributes) and the host key fingerprints cloud-init prints to a serial console. Pure
// functions over OpenSSL; thread-safe. Private keys never appear in error messages.
#pragma once

#include <string>
#include <string_view>

#include "common/result.h"
#include "common/secret.h"

namespace canopy::providers {

struct PublicKeyInfo {
  std::string public_key;   ///< "ssh-rsa AAAA..." / "ssh-ed25519 AAAA..." (no comment)
  std::string fingerprint;  ///< "SHA256:<base64 without padding>", as `ssh-keygen -lf` prints
};

/// kInvalidArgument when the PEM cannot be read or the key type is neither RSA nor Ed25519.
Result<PublicKeyInfo> PublicKeyFromPem(const SecretString& private_key_pem);

/// Public key of an unencrypted private key in OpenSSH format ("-----BEGIN OPENSSH PRIVATE
/// KEY-----"), else in PEM (PublicKeyFromPem). kInvalidArgument when neither can be read.
Result<PublicKeyInfo> PublicKeyFromPrivateKey(const SecretString& private_key);

/// "SHA256:<base64 without padding>" of an SSH wire-format public key blob.
std::string FingerprintOfBlob(std::string_view blob);

/// The fingerprint of a public key given as its base64 blob ("AAAAC3Nza...") or as an OpenSSH
/// public key line ("ssh-ed25519 AAAA... comment"). kInvalidArgument when it does not decode.
Result<std::string> FingerprintOfPublicKey(std::string_view key);

struct GeneratedKey {
  std::string public_key;    ///< "ssh-ed25519 AAAA..." (no comment)
  SecretString private_key;  ///< "-----BEGIN OPENSSH PRIVATE KEY-----..." (unencrypted)
  std::string fingerprint;   ///< "SHA256:..."
};

/// A fresh Ed25519 key from OpenSSL's CSPRNG, its private half in OpenSSH's format (which
/// `ssh`, `ssh-keygen` and libssh read; OpenSSH cannot read PKCS#8 Ed25519 keys).
Result<GeneratedKey> GenerateEd25519(const std::string& comment);

/// The fingerprint ("SHA256:...") to pin from a console log: the last block cloud-init printed
/// between "-----BEGIN SSH HOST KEY FINGERPRINTS-----" and "-----END ...", preferring ED25519,
/// then ECDSA, then RSA (libssh's order); "" when there is none.
std::string HostKeyFromConsole(const std::string& console);

}  // namespace canopy::providers
