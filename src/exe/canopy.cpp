// canopy: the command-line client. Only the CLI11 wiring lives here; the commands are plain
// functions in src/cli/commands.h.
#include <CLI/CLI.hpp>
#include <cstdint>
#include <functional>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cli/api_client.h"
#include "cli/commands.h"
#include "cli/config.h"
#include "cli/output.h"
#include "cli/terminal.h"
#include "cli/up.h"
#include "cli/wait.h"
#include "common/clock.h"

namespace {

using canopy::cli::Context;
using Action = std::function<int(Context&)>;

// An option whose presence matters (std::optional), which CLI11 2.1 does not bind directly.
CLI::Option* AddOptional(CLI::App* app, const std::string& name, std::optional<std::string>* out,
                         const std::string& description) {
  return app->add_option_function<std::string>(
      name, [out](const std::string& v) { *out = v; }, description);
}

// An int64 option whose presence matters.
CLI::Option* AddOptionalInt(CLI::App* app, const std::string& name, std::optional<int64_t>* out,
                            const std::string& description) {
  return app->add_option_function<int64_t>(
      name, [out](const int64_t& v) { *out = v; }, description);
}

// --wait and --timeout of a command that starts an operation (or, with `what`, of one that waits
// for something else).
void AddWait(CLI::App* app, canopy::cli::WaitOptions* w,
             const std::string& what = "Follow the operation until it ends") {
  app->add_flag("--wait", w->wait, what + " (progress on stderr), then print the result");
  app->add_option("--timeout", w->timeout_seconds, "With --wait: give up after SECONDS")
      ->capture_default_str();
}

// Registers `sub` so that choosing it selects `action`.
void OnRun(CLI::App* sub, Action* selected, Action action) {
  sub->callback([selected, action = std::move(action)]() { *selected = action; });
}

}  // namespace

int main(int argc, char** argv) {
  namespace cli = canopy::cli;
  CLI::App app{"canopy - Canopy command-line client"};
  app.require_subcommand(1);
  // Subcommands created below inherit this: global options may follow the subcommand.
  app.fallthrough();

  std::optional<std::string> root;
  std::string output = "table";
  AddOptional(&app, "--root", &root, "Root URL (default: CANOPY_ROOT, then the login's root)");
  app.add_option("-o,--output", output, "Output format: table or json")
      ->check(CLI::IsMember({"table", "json"}));

  Action action;

  // login / logout
  auto* login = app.add_subcommand("login", "Log in to a root and keep the token");
  auto login_opts = std::make_shared<cli::LoginOptions>();
  AddOptional(login, "--username,-u", &login_opts->username, "User name");
  AddOptional(login, "--password", &login_opts->password,
              "Password (default: CANOPY_PASSWORD, then a prompt)");
  auto* ca_file = AddOptional(login, "--ca-file", &login_opts->ca_file,
                              "PEM CA certificate to trust for an https root (default: "
                              "CANOPY_CA_FILE, then the CA of the last login, then the system's)");
  AddOptional(login, "--ca-fingerprint", &login_opts->ca_fingerprint,
              "Trust the root's CA (GET /ca.crt) only if its fingerprint is sha256:HEX")
      ->excludes(ca_file);
  OnRun(login, &action, [login_opts](Context& c) { return cli::Login(c, *login_opts); });
  auto* logout = app.add_subcommand("logout", "Forget the stored token");
  OnRun(logout, &action, [](Context& c) { return cli::Logout(c); });

  // user
  auto* user = app.add_subcommand("user", "Manage users (admin)");
  user->require_subcommand(1);
  auto* user_create = user->add_subcommand("create", "Create a user");
  auto user_opts = std::make_shared<cli::UserCreateOptions>();
  user_create->add_option("username", user_opts->username, "User name")->required();
  user_create->add_option("--role", user_opts->roles, "Role: admin, infra or app (repeatable)")
      ->delimiter(',');
  AddOptional(user_create, "--password", &user_opts->password,
              "Password (default: CANOPY_NEW_PASSWORD, then a prompt)");
  OnRun(user_create, &action, [user_opts](Context& c) { return cli::UserCreate(c, *user_opts); });
  auto* user_list = user->add_subcommand("list", "List users");
  OnRun(user_list, &action, [](Context& c) { return cli::UserList(c); });
  auto* user_delete = user->add_subcommand("delete", "Delete a user");
  auto user_id = std::make_shared<std::string>();
  user_delete->add_option("id", *user_id, "User id")->required();
  OnRun(user_delete, &action, [user_id](Context& c) { return cli::UserDelete(c, *user_id); });
  auto* user_passwd = user->add_subcommand("passwd", "Set a user's password (revokes its tokens)");
  auto passwd_opts = std::make_shared<cli::PasswordOptions>();
  passwd_opts->user.emplace();
  user_passwd->add_option("id", *passwd_opts->user, "User id")->required();
  AddOptional(user_passwd, "--password", &passwd_opts->next,
              "New password (default: CANOPY_NEW_PASSWORD, then a prompt)");
  OnRun(user_passwd, &action, [passwd_opts](Context& c) { return cli::Password(c, *passwd_opts); });

  // password (your own)
  auto* password = app.add_subcommand(
      "password", "Change your own password (revokes your tokens: log in again after)");
  auto own_opts = std::make_shared<cli::PasswordOptions>();
  AddOptional(password, "--current", &own_opts->current,
              "Current password (default: CANOPY_PASSWORD, then a prompt)");
  AddOptional(password, "--new", &own_opts->next,
              "New password (default: CANOPY_NEW_PASSWORD, then a prompt)");
  OnRun(password, &action, [own_opts](Context& c) { return cli::Password(c, *own_opts); });

  // provider
  auto* provider = app.add_subcommand("provider", "Manage provider adapters (infra)");
  provider->require_subcommand(1);
  auto* provider_token = provider->add_subcommand("token", "Create a provider registration token");
  OnRun(provider_token, &action, [](Context& c) { return cli::ProviderToken(c); });
  auto* provider_list = provider->add_subcommand("list", "List provider adapters");
  OnRun(provider_list, &action, [](Context& c) { return cli::ProviderList(c); });
  auto* provider_detach = provider->add_subcommand("detach", "Detach a provider adapter");
  auto provider_id = std::make_shared<std::string>();
  provider_detach->add_option("id", *provider_id, "Provider id")->required();
  OnRun(provider_detach, &action,
        [provider_id](Context& c) { return cli::ProviderDetach(c, *provider_id); });
  auto* provider_approve = provider->add_subcommand(
      "approve", "Approve a provider adapter (roots started with --require-adapter-approval)");
  auto approve_id = std::make_shared<std::string>();
  provider_approve->add_option("id", *approve_id, "Provider id")->required();
  OnRun(provider_approve, &action,
        [approve_id](Context& c) { return cli::ProviderApprove(c, *approve_id); });

  // credential
  auto* credential = app.add_subcommand("credential", "Manage cloud credentials (infra)");
  credential->require_subcommand(1);
  auto* credential_add = credential->add_subcommand("add", "Add a credential");
  auto cred_opts = std::make_shared<cli::CredentialAddOptions>();
  credential_add->add_option("name", cred_opts->name, "Credential name")->required();
  credential_add->add_option("--provider", cred_opts->provider, "Provider type")->required();
  AddOptional(credential_add, "--adapter", &cred_opts->adapter,
              "Provider adapter id the credential is bound to (default: the only live one of "
              "the type)");
  auto* secret_file = AddOptional(credential_add, "--secret-file", &cred_opts->secret_file,
                                  "File holding the secret as a JSON object");
  auto* secret_stdin = credential_add->add_flag("--secret-stdin", cred_opts->secret_stdin,
                                                "Read the secret JSON from standard input");
  auto* secret_json = AddOptional(credential_add, "--secret", &cred_opts->secret_json,
                                  "The secret as a JSON object");
  secret_file->excludes(secret_stdin)->excludes(secret_json);
  secret_stdin->excludes(secret_json);
  OnRun(credential_add, &action,
        [cred_opts](Context& c) { return cli::CredentialAdd(c, *cred_opts); });
  auto* credential_list = credential->add_subcommand("list", "List credentials");
  OnRun(credential_list, &action, [](Context& c) { return cli::CredentialList(c); });
  auto* credential_show = credential->add_subcommand("show", "Show a credential");
  auto credential_id = std::make_shared<std::string>();
  credential_show->add_option("id", *credential_id, "Credential id")->required();
  OnRun(credential_show, &action,
        [credential_id](Context& c) { return cli::CredentialShow(c, *credential_id); });
  auto* credential_delete = credential->add_subcommand("delete", "Delete a credential");
  credential_delete->add_option("id", *credential_id, "Credential id")->required();
  OnRun(credential_delete, &action,
        [credential_id](Context& c) { return cli::CredentialDelete(c, *credential_id); });

  // operation
  auto* operation = app.add_subcommand("operation", "Inspect long-running operations");
  operation->require_subcommand(1);
  auto* operation_show = operation->add_subcommand("show", "Show an operation and its steps");
  auto operation_id = std::make_shared<std::string>();
  operation_show->add_option("id", *operation_id, "Operation id")->required();
  OnRun(operation_show, &action,
        [operation_id](Context& c) { return cli::OperationShow(c, *operation_id); });
  auto* operation_list = operation->add_subcommand("list", "List operations");
  auto op_list_opts = std::make_shared<cli::OperationListOptions>();
  AddOptional(operation_list, "--target", &op_list_opts->target,
              "Only operations on this resource id");
  OnRun(operation_list, &action,
        [op_list_opts](Context& c) { return cli::OperationList(c, *op_list_opts); });

  auto* offers = app.add_subcommand("offers", "Show what a credential's provider offers (infra)");
  auto offers_opts = std::make_shared<cli::OffersOptions>();
  offers->add_option("--credential", offers_opts->credential, "Credential name or id")->required();
  AddOptional(offers, "--provider", &offers_opts->provider, "Provider type (checked)");
  AddOptional(offers, "--region", &offers_opts->region, "Region");
  OnRun(offers, &action, [offers_opts](Context& c) { return cli::Offers(c, *offers_opts); });

  // cluster
  auto* cluster = app.add_subcommand("cluster", "Manage clusters (infra)");
  cluster->require_subcommand(1);
  auto* cluster_create = cluster->add_subcommand(
      "create", "Create a cluster; unset region, instance type and image come from the offers");
  auto cc_opts = std::make_shared<cli::ClusterCreateOptions>();
  cluster_create->add_option("name", cc_opts->name, "Cluster name")->required();
  cluster_create->add_option("--credential", cc_opts->credential, "Credential name or id")
      ->required();
  AddOptional(cluster_create, "--provider", &cc_opts->provider,
              "Provider type (must be the credential's)");
  AddOptional(cluster_create, "--region", &cc_opts->region, "Region (default: the first offered)");
  AddOptional(cluster_create, "--instance-type", &cc_opts->instance_type,
              "Instance type (default: the smallest offered)");
  AddOptional(cluster_create, "--image", &cc_opts->image, "Image (default: the first offered)");
  cluster_create->add_option("--disk-gb", cc_opts->disk_gb, "Disk size in GB")
      ->capture_default_str();
  cluster_create->add_option("--workers", cc_opts->workers, "Workers to add once it is active")
      ->capture_default_str();
  AddOptional(cluster_create, "--worker-instance-type", &cc_opts->worker_instance_type,
              "Instance type of the workers (default: the cluster's)");
  AddWait(cluster_create, &cc_opts->wait);
  OnRun(cluster_create, &action, [cc_opts](Context& c) { return cli::ClusterCreate(c, *cc_opts); });
  auto* cluster_list = cluster->add_subcommand("list", "List clusters");
  OnRun(cluster_list, &action, [](Context& c) { return cli::ClusterList(c); });
  auto* cluster_show = cluster->add_subcommand("show", "Show a cluster and its workers");
  auto cluster_key = std::make_shared<std::string>();
  cluster_show->add_option("cluster", *cluster_key, "Cluster name or id")->required();
  OnRun(cluster_show, &action,
        [cluster_key](Context& c) { return cli::ClusterShow(c, *cluster_key); });
  auto* cluster_delete = cluster->add_subcommand("delete", "Delete a cluster");
  auto cluster_delete_wait = std::make_shared<cli::WaitOptions>();
  cluster_delete->add_option("cluster", *cluster_key, "Cluster name or id")->required();
  AddWait(cluster_delete, cluster_delete_wait.get());
  OnRun(cluster_delete, &action, [cluster_key, cluster_delete_wait](Context& c) {
    return cli::ClusterDelete(c, *cluster_key, *cluster_delete_wait);
  });

  // worker
  auto* worker = app.add_subcommand("worker", "Manage the workers of a cluster (infra)");
  worker->require_subcommand(1);
  auto* worker_add = worker->add_subcommand("add", "Add workers to a cluster");
  auto wa_opts = std::make_shared<cli::WorkerAddOptions>();
  worker_add->add_option("--cluster", wa_opts->cluster, "Cluster name or id")->required();
  worker_add->add_option("--count", wa_opts->count, "Number of workers")->capture_default_str();
  AddOptional(worker_add, "--instance-type", &wa_opts->instance_type,
              "Instance type (default: the cluster's)");
  AddOptional(worker_add, "--image", &wa_opts->image, "Image (default: the cluster's)");
  AddOptionalInt(worker_add, "--disk-gb", &wa_opts->disk_gb,
                 "Disk size in GB (default: the cluster's)");
  AddWait(worker_add, &wa_opts->wait);
  OnRun(worker_add, &action, [wa_opts](Context& c) { return cli::WorkerAdd(c, *wa_opts); });
  auto* worker_list = worker->add_subcommand("list", "List the workers of a cluster");
  auto worker_list_cluster = std::make_shared<std::string>();
  worker_list->add_option("--cluster", *worker_list_cluster, "Cluster name or id")->required();
  OnRun(worker_list, &action,
        [worker_list_cluster](Context& c) { return cli::WorkerList(c, *worker_list_cluster); });
  auto* worker_show = worker->add_subcommand(
      "show", "Show a worker, with the system its node reported (OS, kernel, CPUs, memory)");
  auto worker_show_args = std::make_shared<std::pair<std::string, std::string>>();
  worker_show->add_option("worker", worker_show_args->second, "Worker name or id")->required();
  worker_show->add_option("--cluster", worker_show_args->first, "Cluster name or id")->required();
  OnRun(worker_show, &action, [worker_show_args](Context& c) {
    return cli::WorkerShow(c, worker_show_args->first, worker_show_args->second);
  });
  struct WorkerCommand {
    const char* name;
    const char* description;
    cli::WorkerAction action;
  };
  for (const WorkerCommand& wc : {
           WorkerCommand{"stop", "Stop a worker (keeps its disk)", cli::WorkerAction::kStop},
           WorkerCommand{"restart", "Start a stopped worker again", cli::WorkerAction::kRestart},
           WorkerCommand{"terminate", "Terminate a worker's instance",
                         cli::WorkerAction::kTerminate},
           WorkerCommand{"recreate", "Replace a worker's instance with a new one",
                         cli::WorkerAction::kRecreate},
           WorkerCommand{"delete", "Delete a worker", cli::WorkerAction::kDelete},
       }) {
    auto* sub = worker->add_subcommand(wc.name, wc.description);
    auto opts = std::make_shared<cli::WorkerActionOptions>();
    opts->action = wc.action;
    sub->add_option("worker", opts->worker, "Worker name or id")->required();
    sub->add_option("--cluster", opts->cluster, "Cluster name or id")->required();
    AddWait(sub, &opts->wait);
    OnRun(sub, &action, [opts](Context& c) { return cli::WorkerAct(c, *opts); });
  }

  // service
  auto* service = app.add_subcommand("service", "Manage services (app)");
  service->require_subcommand(1);
  auto* service_create = service->add_subcommand(
      "create",
      "Create a service: NAME [options] -- CMD [ARGS...]; or import an Oakestra SLA with --sla");
  auto sc_opts = std::make_shared<cli::ServiceCreateOptions>();
  service_create->add_option("name", sc_opts->name, "Service name");
  service_create->add_option("command", sc_opts->command,
                             "The command line to run, after -- (options after -- are its own)");
  service_create
      ->add_option("--port", sc_opts->ports,
                   "Port to open: PORT, PORT/tcp or PORT/udp (repeatable)")
      ->allow_extra_args(false);
  service_create->add_option("--env", sc_opts->env, "Environment variable KEY=VALUE (repeatable)")
      ->allow_extra_args(false);
  service_create
      ->add_option("--secret-env", sc_opts->secret_env,
                   "Secret environment variable KEY=VALUE or KEY=@FILE (repeatable): sealed at "
                   "the root, given only to the job, never shown again")
      ->allow_extra_args(false);
  AddOptionalInt(service_create, "--cpu", &sc_opts->cpu_millis,
                 "CPU in millicores (default: " + std::to_string(cli::kServiceCpuMillis) + ")");
  AddOptionalInt(service_create, "--memory", &sc_opts->memory_mib,
                 "Memory in MiB (default: " + std::to_string(cli::kServiceMemoryMib) + ")");
  AddOptionalInt(service_create, "--replicas", &sc_opts->replicas, "Replicas (default: 1)");
  AddOptional(service_create, "--cluster", &sc_opts->cluster,
              "Cluster id to run on (default: any cluster with room)");
  AddOptional(service_create, "--restart", &sc_opts->restart,
              "Restart policy: always, on-failure or never (default: the root's)")
      ->check(CLI::IsMember({"always", "on-failure", "never"}));
  AddOptional(service_create, "--sla", &sc_opts->sla_file,
              "Import the services of an Oakestra SLA file instead");
  service_create->add_flag("--deploy", sc_opts->deploy, "Deploy the service once created");
  AddWait(service_create, &sc_opts->wait, "With --deploy: wait until every instance runs");
  OnRun(service_create, &action, [sc_opts](Context& c) { return cli::ServiceCreate(c, *sc_opts); });
  auto* service_list = service->add_subcommand("list", "List services");
  OnRun(service_list, &action, [](Context& c) { return cli::ServiceList(c); });
  auto* service_show = service->add_subcommand("show", "Show a service and its instances");
  auto service_key = std::make_shared<std::string>();
  service_show->add_option("service", *service_key, "Service name or id")->required();
  OnRun(service_show, &action,
        [service_key](Context& c) { return cli::ServiceShow(c, *service_key); });
  auto* service_deploy = service->add_subcommand("deploy", "Deploy a service");
  auto sd_opts = std::make_shared<cli::ServiceDeployOptions>();
  service_deploy->add_option("service", sd_opts->service, "Service name or id")->required();
  AddOptionalInt(service_deploy, "--replicas", &sd_opts->replicas,
                 "Replicas (default: the service's)");
  AddWait(service_deploy, &sd_opts->wait, "Wait until every instance runs");
  OnRun(service_deploy, &action, [sd_opts](Context& c) { return cli::ServiceDeploy(c, *sd_opts); });
  auto* service_undeploy = service->add_subcommand("undeploy", "Stop all of a service's instances");
  auto service_undeploy_wait =
      std::make_shared<cli::WaitOptions>(cli::WaitOptions{false, cli::kServiceWaitSeconds});
  service_undeploy->add_option("service", *service_key, "Service name or id")->required();
  AddWait(service_undeploy, service_undeploy_wait.get(), "Wait until no instance is left");
  OnRun(service_undeploy, &action, [service_key, service_undeploy_wait](Context& c) {
    return cli::ServiceUndeploy(c, *service_key, *service_undeploy_wait);
  });
  auto* service_scale = service->add_subcommand("scale", "Change the replicas of a service");
  auto ss_opts = std::make_shared<cli::ServiceScaleOptions>();
  service_scale->add_option("service", ss_opts->service, "Service name or id")->required();
  service_scale->add_option("replicas", ss_opts->replicas, "Replicas")->required();
  AddWait(service_scale, &ss_opts->wait, "Wait until every instance runs");
  OnRun(service_scale, &action, [ss_opts](Context& c) { return cli::ServiceScale(c, *ss_opts); });
  auto* service_delete = service->add_subcommand("delete", "Delete an undeployed service");
  service_delete->add_option("service", *service_key, "Service name or id")->required();
  OnRun(service_delete, &action,
        [service_key](Context& c) { return cli::ServiceDelete(c, *service_key); });

  auto* up = app.add_subcommand(
      "up", "Run root + a local provider adapter in the foreground (needs root; Ctrl-C stops)");
  auto up_opts = std::make_shared<cli::UpOptions>();
  up->add_option("--data-dir", up_opts->data_dir, "Directory for all state and logs")
      ->capture_default_str();
  up->add_option("--listen", up_opts->listen, "HOST:PORT for the root API")->capture_default_str();
  up->add_option("--canopyd", up_opts->canopyd, "Path of canopyd (default: next to canopy)");
  OnRun(up, &action, [up_opts](Context& c) { return cli::Up(c, *up_opts); });

  Context ctx{std::cout,
              std::cerr,
              std::cin,
              cli::ProcessEnv(),
              cli::PromptPasswordOnTerminal,
              nullptr,
              std::make_shared<canopy::SystemClock>(),
              {}};
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) {
      return app.exit(e);  // --help
    }
    cli::ReportError(ctx, e.what());
    return 2;
  }

  auto format = cli::ParseOutputFormat(output);
  if (!format) {
    return cli::ReportError(ctx, format.error().message);
  }
  ctx.global.root = root;
  ctx.global.output = *format;
  ctx.transport = cli::HttpTransport();
  ctx.transport_for = cli::HttpTransportFactory();
  ctx.fetch_ca = cli::HttpCaFetcher();
  ctx.confirm = cli::ConfirmOnTerminal;
  ctx.sleep = cli::RealSleep;
  ctx.err_is_terminal = cli::StderrIsTerminal();
  if (!action) {
    return cli::ReportError(ctx, "no command given; run canopy --help");
  }
  return action(ctx);
}
