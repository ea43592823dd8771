#include "cli/trust.h"

#include <fmt/format.h>

#include <fstream>
#include <iterator>
#include <vector>

#include "cli/api_client.h"
#include "net/pki.h"

namespace canopy::cli {

namespace {

constexpr size_t kMaxCaFileBytes = 1 << 20;

bool IsHttps(const std::string& root) { return root.starts_with("https://"); }

Status Reach(const Context& ctx, const std::string& root, const std::string& ca_pem) {
  return ApiClient(root, SecretString(), TransportFor(ctx, ca_pem)).Reach();
}

// Reaches an https root trusting `ca_pem`, which the user chose (`source`).
Status ReachWithChosenCa(const Context& ctx, const std::string& root, const std::string& ca_pem,
                         std::string_view source) {
  if (!IsHttps(root)) {
    return OkStatus();
  }
  Status st = Reach(ctx, root, ca_pem);
  if (!st && IsUntrustedCertificate(st.error())) {
    return Error::FailedPrecondition(fmt::format(
        "the certificate of the root at {} does not verify against the CA {} ({}): it is not "
        "issued by that CA or does not name the host; nothing was stored",
        root, CaFingerprint(ca_pem), source));
  }
  return st;
}

Result<std::string> FetchCa(const Context& ctx, const std::string& root,
                            const std::string& fingerprint) {
  if (!ctx.fetch_ca) {
    return Error::FailedPrecondition("cannot fetch the root's CA certificate here");
  }
  CANOPY_ASSIGN_OR_RETURN(net::FetchedCa ca, ctx.fetch_ca(root, fingerprint));
  return std::move(ca.pem);
}

std::string PinCommand(const std::string& root, const std::string& username,
                       const std::string& fingerprint) {
  return fmt::format("canopy login --root {} --username {} --ca-fingerprint {}", root,
                     username.empty() ? "U" : username, fingerprint);
}

}  // namespace

Result<std::string> ReadCaFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) {
    return Error::InvalidArgument(fmt::format("cannot read the CA file {}", path));
  }
  std::string text;
  text.resize(kMaxCaFileBytes + 1);
  f.read(text.data(), static_cast<std::streamsize>(text.size()));
  if (f.bad()) {
    return Error::InvalidArgument(fmt::format("cannot read the CA file {}", path));
  }
  text.resize(static_cast<size_t>(f.gcount()));
  if (text.size() > kMaxCaFileBytes) {
    return Error::InvalidArgument(fmt::format("the CA file {} is larger than 1 MiB", path));
  }
  Result<std::vector<std::string>> certs = net::pki::SplitPem(text);
  if (!certs || certs->empty() || !net::pki::Fingerprint(certs->front())) {
    return Error::InvalidArgument(
        fmt::format("the CA file {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)", path));
  }
  std::string pem;
  for (const std::string& c : *certs) {
    pem += c;
    if (!pem.empty() && pem.back() != '\n') {
      pem += '\n';
    }
  }
  return pem;
}

std::string CaFingerprint(const std::string& pem) {
  if (pem.empty()) {
    return "";
  }
  return net::pki::Fingerprint(pem).value_or("");
}

bool IsUntrustedCertificate(const Error& e) {
  return e.message.find("certificate verify failed") != std::string::npos;
}

Transport TransportFor(const Context& ctx, const std::string& ca_pem) {
  return ctx.transport_for ? ctx.transport_for(ca_pem) : ctx.transport;
}

Result<std::string> CommandCa(const Context& ctx, const Config& cfg) {
  std::optional<std::string> file = ctx.env("CANOPY_CA_FILE");
  if (file && !file->empty()) {
    Result<std::string> pem = ReadCaFile(*file);
    if (!pem) {
      return Error::InvalidArgument(pem.error().message + " (CANOPY_CA_FILE)");
    }
    return pem;
  }
  return cfg.ca_pem;
}

Result<std::string> LoginTrust(Context& ctx, const std::string& root, const std::string& username,
                               const std::string& stored, const LoginOptions& opts) {
  const bool has_file = opts.ca_file && !opts.ca_file->empty();
  const bool has_pin = opts.ca_fingerprint && !opts.ca_fingerprint->empty();
  if (has_file && has_pin) {
    return Error::InvalidArgument("give --ca-file or --ca-fingerprint, not both");
  }
  if (has_file) {
    CANOPY_ASSIGN_OR_RETURN(std::string pem, ReadCaFile(*opts.ca_file));
    CANOPY_TRY(ReachWithChosenCa(ctx, root, pem, "--ca-file " + *opts.ca_file));
    return pem;
  }
  if (has_pin) {
    Result<std::string> want = net::pki::NormalizeFingerprint(*opts.ca_fingerprint);
    if (!want) {
      return Error::InvalidArgument(
          fmt::format("--ca-fingerprint {} is not a SHA-256 fingerprint (sha256:<64 hex digits>)",
                      *opts.ca_fingerprint));
    }
    // A mismatch is FetchPinnedCa's error, which names both fingerprints.
    CANOPY_ASSIGN_OR_RETURN(std::string pem, FetchCa(ctx, root, *want));
    CANOPY_TRY(ReachWithChosenCa(ctx, root, pem, "--ca-fingerprint"));
    return pem;
  }
  if (std::optional<std::string> env = ctx.env("CANOPY_CA_FILE"); env && !env->empty()) {
    CANOPY_ASSIGN_OR_RETURN(std::string pem, CommandCa(ctx, Config{}));
    CANOPY_TRY(ReachWithChosenCa(ctx, root, pem, "CANOPY_CA_FILE " + *env));
    return pem;
  }
  if (!IsHttps(root)) {
    return stored;  // plain http (loopback): the CA is not used; `canopy up`'s stays
  }

  // The CA of the last login to this root, then the system's roots (a publicly trusted
  // certificate), as long as the failures are the certificate's.
  if (!stored.empty()) {
    Status st = Reach(ctx, root, stored);
    if (st) {
      return stored;
    }
    if (!IsUntrustedCertificate(st.error())) {
      return st.error();
    }
  }
  Status sys = Reach(ctx, root, "");
  if (sys) {
    return std::string();
  }
  if (!IsUntrustedCertificate(sys.error())) {
    return sys.error();
  }

  // Trust on first use, like ssh: show the CA's fingerprint and ask.
  Result<std::string> fetched = FetchCa(ctx, root, "");
  if (!fetched) {
    return Error::FailedPrecondition(
        fmt::format("the root at {} presents a certificate this system does not trust, and its CA "
                    "certificate could not be fetched: {}",
                    root, fetched.error().message));
  }
  std::string fp = CaFingerprint(*fetched);
  if (!stored.empty()) {
    // Like ssh's "host key has changed": never replaced without the user naming the new one.
    return Error::FailedPrecondition(fmt::format(
        "the root at {} no longer verifies against the CA stored at your last login ({}); it now "
        "presents the CA {}. If that change is expected, check it with the root's operator and "
        "run {}",
        root, CaFingerprint(stored), fp, PinCommand(root, username, fp)));
  }
  Result<bool> yes =
      ctx.confirm
          ? ctx.confirm(fmt::format("The root at {} presents a certificate from a CA this "
                                    "system does not trust.\n"
                                    "CA fingerprint: {}\n"
                                    "Compare it with the one the root's operator (or `canopy "
                                    "up`) shows.\n"
                                    "Trust this CA? [y/N] ",
                                    root, fp))
          : Result<bool>(Error::FailedPrecondition("no terminal"));
  if (!yes) {
    return Error::FailedPrecondition(fmt::format(
        "the root at {} presents a certificate from a CA this system does not trust (CA "
        "fingerprint {}); check the fingerprint with the root's operator (`canopy up` prints it) "
        "and run {}",
        root, fp, PinCommand(root, username, fp)));
  }
  if (!*yes) {
    return Error::FailedPrecondition(
        fmt::format("the CA {} was not trusted; nothing was stored", fp));
  }
  CANOPY_TRY(ReachWithChosenCa(ctx, root, *fetched, "accepted at the prompt"));
  return fetched;
}

}  // namespace canopy::cli
