// The CLI's commands as plain functions: each takes the parsed options, talks to the root through
// ApiClient and returns the process exit status, writing only to the injected streams. Parsing of
// the command line (CLI11) stays in src/exe/canopy.cpp. Thread-compatible.
#pragma once

#include <functional>
#include <iosfwd>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cli/api_client.h"
#include "cli/config.h"
#include "cli/output.h"
#include "common/clock.h"
#include "common/result.h"
#include "common/secret.h"

namespace canopy::cli {

constexpr int kExitOk = 0;
constexpr int kExitError = 1;

// Reads a password without echo; kFailedPrecondition when there is no terminal to ask on.
using PasswordPrompt = std::function<Result<SecretString>(std::string_view prompt)>;

// Options every command accepts.
struct GlobalOptions {
  std::optional<std::string> root;  // --root; wins over CANOPY_ROOT and the config file
  OutputFormat output = OutputFormat::kTable;
};

// Everything a command touches outside itself, so tests can substitute each part.
struct Context {
  std::ostream& out;  // results only (with -o json: exactly one JSON document)
  std::ostream& err;  // the one error line, and notes
  std::istream& in;   // --secret-stdin
  EnvLookup env;
  PasswordPrompt prompt;
  Transport transport;
  ClockPtr clock;
  GlobalOptions global;
};

struct LoginOptions {
  std::optional<std::string> username;  // else the username of the stored login to the same root
  std::optional<std::string> password;  // else CANOPY_PASSWORD, else a prompt
};

struct UserCreateOptions {
  std::string username;
  std::vector<std::string> roles;
  std::optional<std::string> password;  // else CANOPY_NEW_PASSWORD, else a prompt (asked twice)
};

struct CredentialAddOptions {
  std::string name;
  std::string provider;
  // Exactly one source of the secret (a JSON object).
  std::optional<std::string> secret_file;
  bool secret_stdin = false;
  std::optional<std::string> secret_json;
};

struct OffersOptions {
  std::string credential;               // name or id
  std::optional<std::string> provider;  // checked against the credential's provider by the root
  std::optional<std::string> region;
};

struct OperationListOptions {
  std::optional<std::string> target;
};

// login / logout: the config file holds root, username, token and its expiry.
int Login(Context& ctx, const LoginOptions& opts);
int Logout(Context& ctx);

int UserCreate(Context& ctx, const UserCreateOptions& opts);
int UserList(Context& ctx);
int UserDelete(Context& ctx, const std::string& id);

// offers: regions, instance types and images the credential's provider offers.
int Offers(Context& ctx, const OffersOptions& opts);

int ProviderToken(Context& ctx);
int ProviderList(Context& ctx);
int ProviderDetach(Context& ctx, const std::string& id);

int CredentialAdd(Context& ctx, const CredentialAddOptions& opts);
int CredentialList(Context& ctx);
int CredentialShow(Context& ctx, const std::string& id);
int CredentialDelete(Context& ctx, const std::string& id);

int OperationShow(Context& ctx, const std::string& id);
int OperationList(Context& ctx, const OperationListOptions& opts);

// Writes FormatErrorLine(message) to ctx.err and returns kExitError (used by the main for its own
// failures, such as a bad -o value).
int ReportError(Context& ctx, std::string_view message);

// Parses "2026-11-28T12:00:00Z" / "...12:00:00.123Z" / "...+01:00"; nullopt if malformed.
std::optional<TimePoint> ParseRfc3339(std::string_view s);

}  // namespace canopy::cli
