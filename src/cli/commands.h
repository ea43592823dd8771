// The CLI's commands as plain functions: each takes the parsed options, talks to the root through
// ApiClient and returns the process exit status, writing only to the injected streams. Parsing of
// the command line (CLI11) stays in src/exe/canopy.cpp. Thread-compatible.
#pragma once

#include <cstdint>
#include <functional>
#include <iosfwd>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cli/api_client.h"
#include "cli/config.h"
#include "cli/output.h"
#include "cli/wait.h"
#include "common/clock.h"
#include "common/result.h"
#include "common/secret.h"

namespace canopy::cli {

constexpr int kExitOk = 0;
constexpr int kExitError = 1;

// Reads a password without echo; kFailedPrecondition when there is no terminal to ask on.
using PasswordPrompt = std::function<Result<SecretString>(std::string_view prompt)>;
// Shows `prompt` (which ends with a "[y/N]" question) and reads the answer: true for yes.
// kFailedPrecondition, showing nothing, when there is no terminal to ask on.
using ConfirmPrompt = std::function<Result<bool>(std::string_view prompt)>;

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
  // Pauses between the polls of --wait; nullptr sleeps for real (RealSleep).
  SleepFn sleep = nullptr;
  // Whether `err` is a terminal: --wait then rewrites one progress line in place.
  bool err_is_terminal = false;
  // https: the Transport trusting one CA (HttpTransportFactory). nullptr: `transport` whatever
  // the CA (fakes that speak no TLS).
  TransportFactory transport_for = nullptr;
  // Fetches a root's CA certificate for `login` (HttpCaFetcher). nullptr: cannot.
  CaFetcher fetch_ca = nullptr;
  // Asks whether to trust a root's CA at login (ConfirmOnTerminal). nullptr: no terminal.
  ConfirmPrompt confirm = nullptr;
};

// Which CA an https root's certificate must chain to (at most one of the two; else
// CANOPY_CA_FILE; else the CA stored by the last login to the same root; else the system's roots,
// and when they do not verify the root: its CA's fingerprint, and on a terminal the question
// whether to trust it). The CA is stored with the token; nothing is stored on any failure.
struct LoginOptions {
  std::optional<std::string> username;  // else the username of the stored login to the same root
  std::optional<std::string> password;  // else CANOPY_PASSWORD, else a prompt
  std::optional<std::string> ca_file = std::nullopt;  // a PEM CA certificate to trust
  // "sha256:HEX": fetch the root's /ca.crt and trust it only if its fingerprint is this one.
  std::optional<std::string> ca_fingerprint = std::nullopt;
};

struct UserCreateOptions {
  std::string username;
  std::vector<std::string> roles;
  std::optional<std::string> password;  // else CANOPY_NEW_PASSWORD, else a prompt (asked twice)
};

struct PasswordOptions {
  // Whose password (admin only; the user's tokens are revoked); empty: your own (the current
  // one is asked for, and your tokens, this login's included, are revoked: log in again).
  std::optional<std::string> user;
  std::optional<std::string> current;  // else CANOPY_PASSWORD, else a prompt
  std::optional<std::string> next;     // else CANOPY_NEW_PASSWORD, else a prompt (asked twice)
};

struct CredentialAddOptions {
  std::string name;
  std::string provider;
  // Exactly one source of the secret (a JSON object).
  std::optional<std::string> secret_file;
  bool secret_stdin = false;
  std::optional<std::string> secret_json;
  std::optional<std::string> adapter;  // the adapter id to bind to (else the only live one)
};

struct OffersOptions {
  std::string credential;               // name or id
  std::optional<std::string> provider;  // checked against the credential's provider by the root
  std::optional<std::string> region;
};

struct OperationListOptions {
  std::optional<std::string> target;
};

// --wait and --timeout of the commands that start an operation.
struct WaitOptions {
  bool wait = false;               // follow the operation until it succeeds or fails
  int64_t timeout_seconds = 1800;  // give up waiting after this long (the operation goes on)
};

struct ClusterCreateOptions {
  std::string name;
  std::string credential;  // name or id
  // Checked against the credential's provider; also narrows the offers asked for defaults.
  std::optional<std::string> provider;
  // Defaults from GET /api/v1/offers: the first region, the smallest instance type (fewest vcpus,
  // then least memory, then lowest price, then name) and the first image.
  std::optional<std::string> region;
  std::optional<std::string> instance_type;
  std::optional<std::string> image;
  int64_t disk_gb = 10;
  int64_t workers = 0;                              // 0 sends no "workers" member
  std::optional<std::string> worker_instance_type;  // default: the cluster's
  WaitOptions wait;
};

struct WorkerAddOptions {
  std::string cluster;  // name or id
  int64_t count = 1;
  // Absent = the cluster's.
  std::optional<std::string> instance_type;
  std::optional<std::string> image;
  std::optional<int64_t> disk_gb;
  WaitOptions wait;
};

enum class WorkerAction { kStop, kRestart, kTerminate, kRecreate, kDelete };

struct WorkerActionOptions {
  std::string cluster;  // name or id
  std::string worker;   // id or name
  WorkerAction action = WorkerAction::kStop;
  WaitOptions wait;
};

// --wait of the service commands gives up sooner than that of the broker's operations.
constexpr int64_t kServiceWaitSeconds = 120;
// What `service create` asks for when --cpu / --memory are not given.
constexpr int64_t kServiceCpuMillis = 100;
constexpr int64_t kServiceMemoryMib = 128;

struct ServiceCreateOptions {
  std::string name;
  std::vector<std::string> command;  // argv after `--`
  std::vector<std::string> ports;    // PORT[/tcp|/udp] (ParsePortSpec)
  std::vector<std::string> env;      // KEY=VALUE (ParseEnvAssignment)
  // KEY=VALUE sealed at the root, never shown again (`secret_env`); a value "@FILE" is read
  // from FILE, so that it stays out of the shell history and the process list.
  std::vector<std::string> secret_env;
  // Absent: kServiceCpuMillis, kServiceMemoryMib and 1 replica.
  std::optional<int64_t> cpu_millis;
  std::optional<int64_t> memory_mib;
  std::optional<int64_t> replicas;
  std::optional<std::string> cluster;  // cluster id; absent = any cluster
  std::optional<std::string> restart;  // always, on-failure or never; absent = the root's default
  // An Oakestra SLA file to import instead (then NAME, the command and the options above are
  // refused).
  std::optional<std::string> sla_file;
  bool deploy = false;                           // deploy each created service at once
  WaitOptions wait{false, kServiceWaitSeconds};  // needs deploy
};

struct ServiceDeployOptions {
  std::string service;              // id or name
  std::optional<int64_t> replicas;  // absent = the service's
  WaitOptions wait{false, kServiceWaitSeconds};
};

struct ServiceScaleOptions {
  std::string service;  // id or name
  int64_t replicas = 1;
  WaitOptions wait{false, kServiceWaitSeconds};  // only waits while the service is deployed
};

// login / logout: the config file holds root, username, token, its expiry and the trusted CA.
// Every other command trusts exactly that CA over https (CANOPY_CA_FILE overrides it).
int Login(Context& ctx, const LoginOptions& opts);
int Logout(Context& ctx);

int UserCreate(Context& ctx, const UserCreateOptions& opts);
int UserList(Context& ctx);
int UserDelete(Context& ctx, const std::string& id);
// user passwd [USER_ID] / password: change a password (revokes the user's tokens).
int Password(Context& ctx, const PasswordOptions& opts);

// offers: regions, instance types and images the credential's provider offers.
int Offers(Context& ctx, const OffersOptions& opts);

int ProviderToken(Context& ctx);
int ProviderList(Context& ctx);
int ProviderDetach(Context& ctx, const std::string& id);
int ProviderApprove(Context& ctx, const std::string& id);

int CredentialAdd(Context& ctx, const CredentialAddOptions& opts);
int CredentialList(Context& ctx);
int CredentialShow(Context& ctx, const std::string& id);
int CredentialDelete(Context& ctx, const std::string& id);

int OperationShow(Context& ctx, const std::string& id);
int OperationList(Context& ctx, const OperationListOptions& opts);

// cluster: CLUSTER arguments are a cluster id or name (GET /api/v1/clusters: id first, then name).
// Commands that start an operation print the 202 body (with its operation id) unless --wait is
// given; with --wait they follow the operation (progress on stderr only) and print the result:
// create the re-fetched cluster, delete a short line (-o json: the final operation). `show` and a
// waited `create` print the cluster's key/values and its workers table; with -o json the cluster
// object with a "workers" member holding GET /api/v1/clusters/{id}/workers.
int ClusterCreate(Context& ctx, const ClusterCreateOptions& opts);
int ClusterList(Context& ctx);
int ClusterShow(Context& ctx, const std::string& cluster);
int ClusterDelete(Context& ctx, const std::string& cluster, const WaitOptions& wait);

// worker: WORKER arguments are a worker id or name within the cluster. A waited add prints the
// new workers re-fetched; a waited action prints the worker re-fetched (delete, or a worker gone
// from the list: a short line; -o json: the final operation).
int WorkerAdd(Context& ctx, const WorkerAddOptions& opts);
int WorkerList(Context& ctx, const std::string& cluster);
// One worker's key/values, with the system its node reported (OS, kernel, architecture, CPUs,
// memory); with -o json the Worker as is.
int WorkerShow(Context& ctx, const std::string& cluster, const std::string& worker);
int WorkerAct(Context& ctx, const WorkerActionOptions& opts);

// service: SERVICE arguments are a service id or name (GET /api/v1/services: id first, then
// name). create, deploy, undeploy and scale print the service the root answers with (key/values
// and an instances table; -o json: the API's Service). --wait on create --deploy, deploy and
// scale follows the service until it runs as many instances as its replicas, all "running"; on
// undeploy until it has no instances left. Progress goes to stderr; the result is then the
// service re-fetched. `create --sla FILE` posts the file to /api/v1/services/import and prints
// the created services as a list (-o json: {"services":[...]}).
int ServiceCreate(Context& ctx, const ServiceCreateOptions& opts);
int ServiceList(Context& ctx);
int ServiceShow(Context& ctx, const std::string& service);
int ServiceDeploy(Context& ctx, const ServiceDeployOptions& opts);
int ServiceUndeploy(Context& ctx, const std::string& service, const WaitOptions& wait);
int ServiceScale(Context& ctx, const ServiceScaleOptions& opts);
int ServiceDelete(Context& ctx, const std::string& service);

// Writes FormatErrorLine(message) to ctx.err and returns kExitError (used by the main for its own
// failures, such as a bad -o value).
int ReportError(Context& ctx, std::string_view message);

// Parses "2026-11-28T12:00:00Z" / "...12:00:00.123Z" / "...+01:00"; nullopt if malformed.

}  // namespace canopy::cli
