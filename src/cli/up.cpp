#include "cli/up.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

#include "cli/api_client.h"
#include "cli/config.h"
#include "cli/trust.h"

namespace canopy::cli {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

// A child daemon whose stdout/stderr go to a log file. Killed (TERM, then KILL) on destruction.
class Child {
 public:
  Child() = default;
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  ~Child() { Stop(); }

  Status Start(const std::vector<std::string>& argv, const fs::path& log) {
    int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0) {
      return Error::FailedPrecondition("cannot open log file " + log.string());
    }
    pid_ = ::fork();
    if (pid_ < 0) {
      ::close(fd);
      return Error::Internal("cannot start " + argv[0]);
    }
    if (pid_ == 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
      ::setpgid(0, 0);  // Ctrl-C reaches `canopy up`, which stops the children in order
      sigset_t none;
      sigemptyset(&none);
      ::sigprocmask(SIG_SETMASK, &none, nullptr);
      std::vector<char*> args;
      for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
      args.push_back(nullptr);
      ::execv(args[0], args.data());
      _exit(127);
    }
    ::close(fd);
    return OkStatus();
  }

  bool Running() {
    if (pid_ <= 0) return false;
    int st = 0;
    if (::waitpid(pid_, &st, WNOHANG) == pid_) {
      pid_ = -1;
      return false;
    }
    return true;
  }

  void Stop() {
    if (!Running()) return;
    ::kill(pid_, SIGTERM);
    for (int i = 0; i < 100 && Running(); ++i) std::this_thread::sleep_for(100ms);
    if (Running()) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    pid_ = -1;
  }

 private:
  pid_t pid_ = -1;
};

std::string ReadTrimmed(const fs::path& p) {
  std::ifstream f(p);
  std::stringstream ss;
  ss << f.rdbuf();
  std::string s = ss.str();
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  return s;
}

std::string DefaultCanopyd() {
  std::error_code ec;
  fs::path self = fs::read_symlink("/proc/self/exe", ec);
  return ec ? "canopyd" : (self.parent_path() / "canopyd").string();
}

// Waits until `ready` or the child dies or `timeout` passes.
template <class Pred>
Status WaitUntil(Child& child, const std::string& what, const fs::path& log, Pred ready,
                 std::chrono::milliseconds timeout) {
  auto until = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < until) {
    if (ready()) return OkStatus();
    if (!child.Running()) {
      return Error::Unavailable(what + " exited; see " + log.string());
    }
    std::this_thread::sleep_for(100ms);
  }
  return Error::DeadlineExceeded(what + " did not become ready; see " + log.string());
}

constexpr const char* kLocalGateway = "198.18.0.1";

// The URL the root wrote (root.url), with a wildcard listen address replaced by loopback.
std::string ReachableUrl(std::string url) {
  for (const auto& [any, local] :
       {std::pair<std::string, std::string>{"//0.0.0.0:", "//127.0.0.1:"},
        {"//[::]:", "//[::1]:"}}) {
    if (size_t at = url.find(any); at != std::string::npos) {
      url.replace(at, any.size(), local);
    }
  }
  return url;
}

Status RunUp(Context& ctx, const UpOptions& opts, Child& root, Child& adapter,
             std::string* url_out) {
  if (::geteuid() != 0) {
    return Error::FailedPrecondition(
        "canopy up runs the local provider, which needs root (network namespaces): run it as root");
  }
  std::string canopyd = opts.canopyd.empty() ? DefaultCanopyd() : opts.canopyd;
  if (::access(canopyd.c_str(), X_OK) != 0) {
    return Error::FailedPrecondition("canopyd not found at " + canopyd + " (use --canopyd)");
  }
  auto colon = opts.listen.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    return Error::InvalidArgument("--listen must be HOST:PORT");
  }
  std::error_code ec;
  fs::path dir = fs::absolute(opts.data_dir, ec);
  fs::create_directories(dir, ec);
  ::chmod(dir.c_str(), 0700);
  if (ec) {
    return Error::FailedPrecondition("cannot create data dir " + dir.string());
  }
  std::string host = opts.listen.substr(0, colon);

  // Root. Instances reach the host at the local provider's bridge gateway (first address of its
  // default subnet 198.18.0.0/15): a listener that covers it serves them; otherwise the root gets
  // a tier-only listener there (pairing and link, not the user API).
  const bool covers_gateway =
      host == "0.0.0.0" || host == "[::]" || host == "::" || host == kLocalGateway;
  std::vector<std::string> root_argv = {canopyd,     "root",       "--listen",
                                        opts.listen, "--data-dir", (dir / "root").string()};
  std::string cluster_listen = std::string(kLocalGateway) + opts.listen.substr(colon);
  // Least exposure: SSH to instances only from this host (the gateway), their cluster API only
  // from the local network.
  root_argv.insert(root_argv.end(), {"--ssh-source", std::string(kLocalGateway) + "/32",
                                     "--cluster-api-source", "198.18.0.0/15"});
  if (covers_gateway) {
    root_argv.insert(root_argv.end(), {"--cluster-url", "https://" + cluster_listen});
  } else {
    root_argv.insert(root_argv.end(), {"--cluster-listen", cluster_listen});
  }
  // root.url (https unless the API is on loopback) appears once the root serves; its CA
  // (ca.crt) is made before. A root.url left by an earlier run must not count.
  const fs::path url_file = dir / "root" / "root.url";
  const fs::path ca_file = dir / "root" / "ca.crt";
  fs::remove(url_file, ec);
  CANOPY_TRY(root.Start(root_argv, dir / "root.log"));
  CANOPY_TRY(WaitUntil(
      root, "canopyd root", dir / "root.log",
      [&] { return !ReadTrimmed(url_file).empty() && ReadCaFile(ca_file.string()).has_value(); },
      30s));
  std::string url = ReachableUrl(ReadTrimmed(url_file));
  *url_out = url;
  CANOPY_ASSIGN_OR_RETURN(std::string ca_pem, ReadCaFile(ca_file.string()));
  const std::string ca_fingerprint = CaFingerprint(ca_pem);
  const Transport transport = TransportFor(ctx, ca_pem);
  ApiClient anon(url, SecretString(""), transport);
  CANOPY_TRY(WaitUntil(
      root, "canopyd root", dir / "root.log", [&] { return anon.Get("/healthz").has_value(); },
      30s));

  // Admin login (the CLI keeps it, as `canopy login` does).
  std::string password;
  if (auto env = ctx.env("CANOPY_ADMIN_PASSWORD"); env && !env->empty()) {
    password = *env;
  } else {
    password = ReadTrimmed(dir / "root" / "admin-password");
  }
  if (password.empty()) {
    return Error::FailedPrecondition(
        "the admin password is unknown: set CANOPY_ADMIN_PASSWORD (this data dir was created with "
        "it)");
  }
  auto login = anon.Post("/api/v1/auth/login", Json{{"username", "admin"}, {"password", password}});
  if (!login) {
    return Error{login.error().code, "admin login failed: " + login.error().message, {}};
  }
  Config cfg;
  cfg.root = url;
  cfg.username = "admin";
  cfg.token = SecretString(login->value("access_token", ""));
  cfg.ca_pem = ca_pem;
  CANOPY_ASSIGN_OR_RETURN(fs::path cfg_path, ConfigPath(ctx.env));
  CANOPY_TRY(SaveConfig(cfg_path, cfg));
  ApiClient api(url, cfg.token, transport);

  // Local provider adapter: a registration token on first start, its saved identity later.
  fs::path adir = dir / "adapter-local";
  std::vector<std::string> argv = {canopyd,       "provider",      "--type",
                                   "local",       "--root",        url,
                                   "--listen",    "127.0.0.1:0",   "--data-dir",
                                   adir.string(), "--state-dir",   (dir / "local").string(),
                                   "--ca-file",   ca_file.string()};
  if (!fs::exists(adir / "identity.json")) {
    CANOPY_ASSIGN_OR_RETURN(Json tok, api.Post("/api/v1/provider-tokens", Json::object()));
    argv.push_back("--token");
    argv.push_back(tok.value("token", ""));
  }
  CANOPY_TRY(adapter.Start(argv, dir / "adapter-local.log"));
  CANOPY_TRY(WaitUntil(
      adapter, "the local provider adapter", dir / "adapter-local.log",
      [&] {
        auto list = api.Get("/api/v1/providers");
        if (!list || !list->is_array()) return false;
        for (const auto& p : *list) {
          if (p.value("type", "") == "local" && p.value("status", "") == "live") {
            return true;
          }
        }
        return false;
      },
      30s));

  // Credential "local".
  CANOPY_ASSIGN_OR_RETURN(Json creds, api.Get("/api/v1/credentials"));
  bool have = false;
  for (const auto& c : creds) have = have || c.value("name", "") == "local";
  if (!have) {
    CANOPY_TRY(
        api.Post("/api/v1/credentials",
                 Json{{"name", "local"}, {"provider", "local"}, {"secret", {{"type", "local"}}}}));
  }

  std::string pw_note = ctx.env("CANOPY_ADMIN_PASSWORD")
                            ? "from CANOPY_ADMIN_PASSWORD"
                            : "in " + (dir / "root" / "admin-password").string();
  if (ctx.global.output == OutputFormat::kJson) {
    ctx.out << DumpJson(Json{{"url", url},
                             {"username", "admin"},
                             {"data_dir", dir.string()},
                             {"credential", "local"},
                             {"ca_fingerprint", ca_fingerprint}})
            << "\n";
  } else {
    ctx.out << "Canopy is up at " << url << "\n"
            << "  admin login:  username admin, password " << pw_note << "\n"
            << "  root CA:      " << ca_fingerprint << " (" << ca_file.string()
            << "; canopy login --ca-fingerprint takes it)\n"
            << "  this CLI is logged in (" << cfg_path.string() << ")\n"
            << "  provider:     local adapter live; credential \"local\" added\n"
            << "  reachable:    the API at " << url
            << (covers_gateway ? "" : " (this machine only)")
            << "; clusters on local instances dial "
            << "https://" << cluster_listen << (covers_gateway ? "" : " (pairing and link only)")
            << "\n"
            << "  logs:         " << (dir / "root.log").string() << ", "
            << (dir / "adapter-local.log").string() << "\n"
            << "Press Ctrl-C to stop.\n";
  }
  ctx.out.flush();
  return OkStatus();
}

}  // namespace

int Up(Context& ctx, const UpOptions& opts) {
  // Signals are taken synchronously, so children are stopped in order on Ctrl-C.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  sigprocmask(SIG_BLOCK, &sigs, nullptr);
  Child root, adapter;
  std::string url;
  Status st = RunUp(ctx, opts, root, adapter, &url);
  if (!st) {
    ctx.err << "error: " << st.error().message << "\n";
    adapter.Stop();
    root.Stop();
    return kExitError;
  }
  int rc = kExitOk;
  for (;;) {
    timespec wait{0, 200 * 1000 * 1000};
    int sig = sigtimedwait(&sigs, nullptr, &wait);
    if (sig == SIGINT || sig == SIGTERM) break;
    if (!root.Running() || !adapter.Running()) {
      ctx.err << "error: " << (root.Running() ? "the local provider adapter" : "canopyd root")
              << " exited; see the logs in " << opts.data_dir << "\n";
      rc = kExitError;
      break;
    }
  }
  adapter.Stop();
  root.Stop();
  return rc;
}

}  // namespace canopy::cli
