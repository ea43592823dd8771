// Which CA the CLI trusts for the root's https certificate: CA files, fingerprints, what `canopy
// login` decides to trust (cli::LoginOptions) and what every later command trusts (the CA stored
// with the login, or CANOPY_CA_FILE). Used by cli/commands and cli/up. Thread-compatible.
#pragma once

#include <string>

#include "cli/commands.h"
#include "cli/config.h"
#include "common/result.h"

namespace canopy::cli {

// Reads a PEM CA certificate (or bundle) from `path` and gives its certificates in PEM.
// kInvalidArgument naming the file when it is unreadable, larger than 1 MiB or holds none.
Result<std::string> ReadCaFile(const std::string& path);

// "sha256:<hex>" of the first certificate of `pem`; "" when there is none.
std::string CaFingerprint(const std::string& pem);

// Whether a transport failure is a server certificate that did not verify (untrusted CA, or a
// certificate that does not name the host).
bool IsUntrustedCertificate(const Error& e);

// ctx.transport_for(ca_pem), or ctx.transport without a factory.
Transport TransportFor(const Context& ctx, const std::string& ca_pem);

// The CA a command trusts for the stored login `cfg`: the file named by CANOPY_CA_FILE when set,
// else cfg.ca_pem ("" = the system's roots).
Result<std::string> CommandCa(const Context& ctx, const Config& cfg);

// What `canopy login` (as `username`) trusts at `root` (normalised), in the order LoginOptions
// documents; `stored` is the CA of the stored login to the same root ("" when none). Over https the
// root is reached (GET /healthz) with the chosen CA before anything else happens. Gives the CA to
// store ("" = the system's roots); notes and the question go to ctx.err / ctx.confirm.
Result<std::string> LoginTrust(Context& ctx, const std::string& root, const std::string& username,
                               const std::string& stored, const LoginOptions& opts);

}  // namespace canopy::cli
