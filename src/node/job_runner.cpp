#include "node/job_runner.h"

#include <errno.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <grp.h>
#include <linux/capability.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <vector>

namespace canopy::node {
namespace {

using Clock = std::chrono::steady_clock;
constexpr long kCgroup2Magic = 0x63677270;  // CGROUP2_SUPER_MAGIC

bool ValidId(const std::string& id) {
  if (id.empty() || id.size() > 64 || id[0] == '.') return false;
  for (char c : id) {
    bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

bool WriteSmallFile(const std::string& path, const std::string& content) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  ssize_t n = ::write(fd, content.data(), content.size());
  ::close(fd);
  return n == static_cast<ssize_t>(content.size());
}

std::string ReadSmallFile(const std::string& path) {
  std::ifstream f(path);
  std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  return s;
}

// argv[0] as given when it has a '/', else the first executable match in PATH ("" when none).
std::string ResolveCommand(const std::string& name) {
  if (name.find('/') != std::string::npos) return name;
  const char* path = ::getenv("PATH");
  std::string p = path ? path : "/usr/local/bin:/usr/bin:/bin";
  size_t start = 0;
  while (start <= p.size()) {
    size_t end = p.find(':', start);
    if (end == std::string::npos) end = p.size();
    std::string dir = p.substr(start, end - start);
    if (dir.empty()) dir = ".";
    std::string cand = dir + "/" + name;
    if (::access(cand.c_str(), X_OK) == 0) return cand;
    start = end + 1;
  }
  return "";
}

// Whether a cgroup.controllers text lists both "cpu" and "memory" (whole words).
bool HasCpuAndMemory(const std::string& controllers) {
  std::istringstream in(controllers);
  bool cpu = false, mem = false;
  for (std::string w; in >> w;) {
    cpu = cpu || w == "cpu";
    mem = mem || w == "memory";
  }
  return cpu && mem;
}

// uid and gid of `name` from /etc/passwd (parsed here: the agent is linked statically, and
// getpwnam would want NSS modules at run time). false when absent.
bool LookupUser(const std::string& name, int* uid, int* gid) {
  std::ifstream in("/etc/passwd");
  std::string line;
  while (std::getline(in, line)) {
    std::vector<std::string> f;
    std::stringstream ss(line);
    std::string part;
    while (std::getline(ss, part, ':')) f.push_back(part);
    if (f.size() < 4 || f[0] != name) continue;
    try {
      *uid = std::stoi(f[2]);
      *gid = std::stoi(f[3]);
    } catch (...) {
      return false;
    }
    return true;
  }
  return false;
}

// Runs argv (absolute path) and waits; its exit status, -1 when it could not run.
int RunQuiet(const std::vector<std::string>& args) {
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = ::fork();
  if (pid == 0) {
    int null_fd = ::open("/dev/null", O_RDWR);
    if (null_fd >= 0) {
      ::dup2(null_fd, 0);
      ::dup2(null_fd, 1);
      ::dup2(null_fd, 2);
    }
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  if (pid < 0) return -1;
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace

Json JobSpec::ToJson() const {
  Json e = Json::object();
  for (const auto& [k, v] : env) e[k] = v;
  return {{"id", id},
          {"command", command},
          {"env", e},
          {"cpu_millis", cpu_millis},
          {"memory_mib", memory_mib},
          {"restart", restart}};
}

Result<JobSpec> JobSpec::FromJson(const Json& j) {
  if (!j.is_object()) return Error::InvalidArgument("a job must be an object");
  JobSpec s;
  CANOPY_ASSIGN_OR_RETURN(s.id, GetString(j, "id", 64));
  if (!ValidId(s.id)) return Error::InvalidArgument("job 'id' must be 1-64 of [A-Za-z0-9._-]");
  if (!j.contains("command") || !j["command"].is_array() || j["command"].empty() ||
      j["command"].size() > 256) {
    return Error::InvalidArgument("job 'command' must be a non-empty array of strings");
  }
  for (const auto& a : j["command"]) {
    if (!a.is_string() || a.get<std::string>().size() > 4096) {
      return Error::InvalidArgument("job 'command' must be a non-empty array of strings");
    }
    s.command.push_back(a.get<std::string>());
  }
  if (s.command[0].empty()) return Error::InvalidArgument("job 'command' must name a program");
  if (j.contains("env") && !j["env"].is_null()) {
    if (!j["env"].is_object())
      return Error::InvalidArgument("job 'env' must be an object of strings");
    for (const auto& [k, v] : j["env"].items()) {
      if (!v.is_string() || k.empty() || k.find('=') != std::string::npos) {
        return Error::InvalidArgument("job 'env' must be an object of strings");
      }
      s.env[k] = v.get<std::string>();
    }
  }
  constexpr int64_t kMax = int64_t{1} << 40;
  CANOPY_ASSIGN_OR_RETURN(auto cpu, GetOptInt(j, "cpu_millis", 0, kMax));
  CANOPY_ASSIGN_OR_RETURN(auto mem, GetOptInt(j, "memory_mib", 0, kMax));
  CANOPY_ASSIGN_OR_RETURN(auto restart, GetOptString(j, "restart", 16));
  s.cpu_millis = cpu.value_or(0);
  s.memory_mib = mem.value_or(0);
  if (restart && !restart->empty()) s.restart = *restart;
  if (s.restart != "always" && s.restart != "on-failure" && s.restart != "never") {
    return Error::InvalidArgument("job 'restart' must be always, on-failure or never");
  }
  return s;
}

Json JobStatus::ToJson() const {
  Json j = {{"id", id}, {"state", state}, {"pid", pid}, {"restarts", restarts}};
  j["exit_code"] = exit_code ? Json(*exit_code) : Json(nullptr);
  if (!last_error.empty()) j["last_error"] = last_error;
  return j;
}

struct JobRunner::Job {
  JobSpec spec;
  std::string state = "starting";
  pid_t pid = 0;  // also the process group id
  int64_t restarts = 0;
  std::optional<int> exit_code;
  std::string last_error;
  Clock::time_point started{};
  Clock::time_point next_start{};  // when state is "starting"/"restarting" and pid == 0
  std::chrono::milliseconds backoff{0};
  bool stopping = false;  // remove once reaped
  bool killed = false;    // SIGKILL sent
  Clock::time_point kill_at{};
  std::optional<JobSpec> replacement;  // start this spec once the old process is gone
  std::string cgroup;
};

JobRunner::JobRunner(JobRunnerOptions opts) : opts_(std::move(opts)) {
  std::error_code ec;
  std::filesystem::create_directories(opts_.data_dir + "/jobs", ec);
  if (ec) SPDLOG_WARN("Cannot create the job log dir dir={}/jobs", opts_.data_dir);
  SetupCgroups();
  SetupUser();
  supervisor_ = std::thread([this] { Supervise(); });
}

void JobRunner::SetupUser() {
  if (opts_.job_user.empty()) {
    user_status_ = "jobs run as the node agent's user (no job user configured)";
    return;
  }
  if (::geteuid() != 0) {
    user_status_ = "jobs run as the node agent's user (the agent is not root)";
    SPDLOG_WARN("Jobs run as the node agent's own user: it is not root");
    return;
  }
  int uid = -1, gid = -1;
  std::string name = opts_.job_user;
  if (!LookupUser(name, &uid, &gid)) {
    for (const char* useradd : {"/usr/sbin/useradd", "/sbin/useradd"}) {
      if (::access(useradd, X_OK) != 0) continue;
      int rc = RunQuiet({useradd, "--system", "--no-create-home", "--home-dir", "/nonexistent",
                         "--shell", "/usr/sbin/nologin", "--user-group", name});
      SPDLOG_INFO("Created the job user user={} rc={}", name, rc);
      break;
    }
  }
  // Created now, or concurrently by another agent on this machine (useradd then fails).
  if (!LookupUser(name, &uid, &gid)) {
    SPDLOG_WARN("Cannot find or create the job user user={}; jobs run as nobody", name);
    name = "nobody";
    uid = gid = 65534;
  }
  if (uid == 0 || gid == 0) {
    user_status_ = "jobs run as root: the job user " + name + " has uid or gid 0";
    SPDLOG_ERROR("The job user has uid or gid 0; refusing to pretend it is unprivileged");
    return;
  }
  job_uid_ = uid;
  job_gid_ = gid;
  job_user_name_ = name;
  user_status_ = fmt::format("{} (uid {}, gid {})", name, uid, gid);
  SPDLOG_INFO("Jobs run as user={} uid={} gid={}", name, uid, gid);
}

std::string JobRunner::JobWorkDir(const std::string& id) const {
  return opts_.data_dir + "/work/" + id;
}

JobRunner::~JobRunner() {
  {
    std::lock_guard<std::mutex> l(mu_);
    shutdown_ = true;
    auto now = Clock::now();
    for (auto& [id, job] : jobs_) {
      job->replacement.reset();
      if (!job->stopping) {
        job->stopping = true;
        job->kill_at = now + opts_.stop_grace;
        SignalGroup(*job, SIGTERM);
      }
    }
  }
  cv_.notify_all();
  supervisor_.join();
  if (cgroups_enabled_) ::rmdir(cgroup_base_.c_str());
}

void JobRunner::SetupCgroups() {
  auto disable = [this](std::string why) {
    cgroup_status_ = std::move(why);
    SPDLOG_WARN("Jobs run without resource limits reason={}", cgroup_status_);
  };
  if (opts_.cgroup_root.empty()) return disable("cgroups disabled by configuration");
  struct statfs fs {};
  if (::statfs(opts_.cgroup_root.c_str(), &fs) != 0)
    return disable(opts_.cgroup_root + " is not mounted");
  if (static_cast<long>(fs.f_type) != kCgroup2Magic) {
    return disable(opts_.cgroup_root + " is not a cgroup2 mount");
  }
  if (::access(opts_.cgroup_root.c_str(), W_OK) != 0)
    return disable(opts_.cgroup_root + " is not writable");
  if (!HasCpuAndMemory(ReadSmallFile(opts_.cgroup_root + "/cgroup.controllers"))) {
    return disable("the cpu and memory controllers are not available");
  }
  // Enable the controllers for our subtree (already enabled -> harmless).
  WriteSmallFile(opts_.cgroup_root + "/cgroup.subtree_control", "+memory +cpu");
  cgroup_base_ = fmt::format("{}/canopy-node-{}", opts_.cgroup_root, ::getpid());
  if (::mkdir(cgroup_base_.c_str(), 0755) != 0 && errno != EEXIST) {
    return disable("cannot create " + cgroup_base_ + ": " + std::strerror(errno));
  }
  if (!HasCpuAndMemory(ReadSmallFile(cgroup_base_ + "/cgroup.controllers"))) {
    ::rmdir(cgroup_base_.c_str());
    return disable("cannot delegate the cpu and memory controllers under " + opts_.cgroup_root);
  }
  if (!WriteSmallFile(cgroup_base_ + "/cgroup.subtree_control", "+memory +cpu")) {
    ::rmdir(cgroup_base_.c_str());
    return disable("cannot enable the cpu and memory controllers in " + cgroup_base_);
  }
  cgroups_enabled_ = true;
  cgroup_status_ = "enabled at " + cgroup_base_;
  SPDLOG_INFO("Job resource limits via cgroups v2 cgroup={}", cgroup_base_);
}

std::string JobRunner::JobCgroup(const std::string& id) const {
  if (!cgroups_enabled_) return "";
  return cgroup_base_ + "/job-" + id;
}

std::string JobRunner::PrepareCgroup(const JobSpec& spec, std::string* error) {
  if (!cgroups_enabled_) return "";
  std::string dir = JobCgroup(spec.id);
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
    *error = fmt::format("cannot create cgroup {}: {}", dir, std::strerror(errno));
    return "";
  }
  std::string mem = spec.memory_mib > 0 ? std::to_string(spec.memory_mib * 1024 * 1024) : "max";
  std::string cpu =
      spec.cpu_millis > 0 ? fmt::format("{} 100000", spec.cpu_millis * 100) : "max 100000";
  if (!WriteSmallFile(dir + "/memory.max", mem) || !WriteSmallFile(dir + "/cpu.max", cpu)) {
    *error = fmt::format("cannot write the limits of cgroup {}", dir);
    return "";
  }
  return dir;
}

void JobRunner::SignalGroup(Job& job, int sig) {
  if (job.pid > 0) ::kill(-job.pid, sig);
}

void JobRunner::Spawn(Job& job) {
  const JobSpec& spec = job.spec;
  job.exit_code.reset();
  auto fail = [&](std::string why) {
    job.last_error = std::move(why);
    job.pid = 0;
    HandleExit(job, -1);
  };
  std::string path = ResolveCommand(spec.command[0]);
  if (path.empty()) return fail(fmt::format("command '{}' not found in PATH", spec.command[0]));
  std::string cg_error;
  job.cgroup = PrepareCgroup(spec, &cg_error);
  if (!cg_error.empty()) SPDLOG_WARN("Job runs without limits job={} error={}", spec.id, cg_error);
  // The job's working directory, owned by the job user.
  std::string work_dir = JobWorkDir(spec.id);
  {
    std::error_code ec;
    std::filesystem::create_directories(work_dir, ec);
    ::chmod((opts_.data_dir + "/work").c_str(), 0711);
    ::chmod(work_dir.c_str(), 0700);
    if (job_uid_ >= 0 && ::chown(work_dir.c_str(), job_uid_, job_gid_) != 0) {
      return fail(
          fmt::format("cannot hand {} to the job user: {}", work_dir, std::strerror(errno)));
    }
  }
  // Everything the child needs is prepared before fork (only async-signal-safe calls after it).
  // A clean environment: nothing of the agent's (its token, its configuration) reaches a job.
  std::map<std::string, std::string> env_map;
  const char* path_env = std::getenv("PATH");
  env_map["PATH"] = path_env != nullptr && *path_env != '\0'
                        ? path_env
                        : "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  env_map["HOME"] = work_dir;
  env_map["LANG"] = "C.UTF-8";
  env_map["CANOPY_JOB_ID"] = spec.id;
  if (!job_user_name_.empty()) env_map["USER"] = env_map["LOGNAME"] = job_user_name_;
  for (const auto& [k, v] : spec.env) env_map[k] = v;
  std::vector<std::string> envs;
  for (const auto& [k, v] : env_map) envs.push_back(k + "=" + v);
  const int run_uid = job_uid_, run_gid = job_gid_;
  __user_cap_header_struct cap_header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct cap_data[2] = {};
  cap_data[0].effective = cap_data[0].permitted = cap_data[0].inheritable = 1u
                                                                            << CAP_NET_BIND_SERVICE;
  std::vector<char*> argv, envp;
  for (const auto& a : spec.command) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  for (auto& e : envs) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::string log_path = opts_.data_dir + "/jobs/" + spec.id + ".log";
  int log_fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  if (log_fd < 0) return fail(fmt::format("cannot open {}: {}", log_path, std::strerror(errno)));
  int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  int procs_fd = -1;
  if (!job.cgroup.empty())
    procs_fd = ::open((job.cgroup + "/cgroup.procs").c_str(), O_WRONLY | O_CLOEXEC);
  int err_pipe[2];
  if (::pipe2(err_pipe, O_CLOEXEC) != 0) {
    ::close(log_fd);
    if (null_fd >= 0) ::close(null_fd);
    if (procs_fd >= 0) ::close(procs_fd);
    return fail("pipe failed");
  }
  pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid == 0) {
    // Child.
    auto die = [&](int err) {
      ssize_t w = ::write(err_pipe[1], &err, sizeof(err));
      (void)w;
      ::_exit(127);
    };
    ::setsid();  // own session and process group (pgid == pid)
    // Joins its cgroup while still privileged.
    if (procs_fd >= 0) {
      if (::write(procs_fd, "0", 1) != 1) {
        int err = errno;
        ssize_t w = ::write(err_pipe[1], &err, sizeof(err));
        (void)w;
      }
    }
    if (::chdir(work_dir.c_str()) != 0) die(errno);
    if (run_uid >= 0) {
      // Drop to the job user: no supplementary groups, only CAP_NET_BIND_SERVICE (ambient, so it
      // survives exec of an ordinary binary).
      if (::setgroups(0, nullptr) != 0) die(errno);
      if (::setresgid(run_gid, run_gid, run_gid) != 0) die(errno);
      if (::prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0) die(errno);
      if (::setresuid(run_uid, run_uid, run_uid) != 0) die(errno);
      if (::syscall(SYS_capset, &cap_header, cap_data) != 0) die(errno);
      if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_NET_BIND_SERVICE, 0, 0) != 0) {
        die(errno);
      }
      if (::prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) != 0) die(errno);
    }
    // Dies with the supervisor thread (the node killed hard): no orphan jobs to duplicate later.
    // Set after the user change, which clears it.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    sigset_t all;
    sigemptyset(&all);
    ::sigprocmask(SIG_SETMASK, &all, nullptr);
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    for (int s : {SIGPIPE, SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGCHLD, SIGUSR1, SIGUSR2}) {
      ::sigaction(s, &dfl, nullptr);
    }
    if (null_fd >= 0) ::dup2(null_fd, 0);
    ::dup2(log_fd, 1);
    ::dup2(log_fd, 2);
    ::execve(path.c_str(), argv.data(), envp.data());
    int err = errno;
    ssize_t w = ::write(err_pipe[1], &err, sizeof(err));
    (void)w;
    ::_exit(127);
  }
  int fork_errno = errno;
  ::close(err_pipe[1]);
  ::close(log_fd);
  if (null_fd >= 0) ::close(null_fd);
  if (procs_fd >= 0) ::close(procs_fd);
  if (pid < 0) {
    ::close(err_pipe[0]);
    return fail(fmt::format("fork failed: {}", std::strerror(fork_errno)));
  }
  // Blocks until exec succeeds (EOF) or the child reports an errno.
  int child_err = 0;
  ssize_t n;
  do {
    n = ::read(err_pipe[0], &child_err, sizeof(child_err));
  } while (n < 0 && errno == EINTR);
  ::close(err_pipe[0]);
  job.pid = pid;
  job.started = Clock::now();
  if (n == static_cast<ssize_t>(sizeof(child_err))) {
    // Either joining the cgroup or exec failed; the child exits (127) or continues to exec.
    job.last_error =
        fmt::format("cannot start '{}': {}", spec.command[0], std::strerror(child_err));
    SPDLOG_WARN("Job start failed job={} error={}", spec.id, job.last_error);
    job.state = "running";  // the reaper decides (exit 127 -> failed)
    return;
  }
  job.state = "running";
  SPDLOG_INFO("Job started job={} pid={}", spec.id, pid);
}

void JobRunner::HandleExit(Job& job, int wstatus) {
  auto now = Clock::now();
  bool failed = true;
  if (wstatus >= 0) {
    if (WIFEXITED(wstatus)) {
      job.exit_code = WEXITSTATUS(wstatus);
      failed = job.exit_code != 0;
    } else if (WIFSIGNALED(wstatus)) {
      job.exit_code = 128 + WTERMSIG(wstatus);
    }
    if (!job.cgroup.empty()) ::rmdir(job.cgroup.c_str());
  }
  job.pid = 0;
  if (job.stopping) return;
  bool restart = job.spec.restart == "always" || (job.spec.restart == "on-failure" && failed);
  if (!restart) {
    job.state = failed ? "failed" : "exited";
    SPDLOG_INFO("Job ended job={} state={} exit_code={}", job.spec.id, job.state,
                job.exit_code ? *job.exit_code : -1);
    return;
  }
  // A run that lasted longer than the cap resets the backoff.
  if (job.backoff.count() == 0 || now - job.started > opts_.backoff_max) {
    job.backoff = opts_.backoff_initial;
  } else {
    job.backoff = std::min(job.backoff * 2, opts_.backoff_max);
  }
  job.state = "restarting";
  job.next_start = now + job.backoff;
  ++job.restarts;
}

Status JobRunner::Start(const JobSpec& spec) {
  if (!ValidId(spec.id)) return Error::InvalidArgument("job 'id' must be 1-64 of [A-Za-z0-9._-]");
  if (spec.command.empty() || spec.command[0].empty()) {
    return Error::InvalidArgument("job 'command' must name a program");
  }
  if (spec.restart != "always" && spec.restart != "on-failure" && spec.restart != "never") {
    return Error::InvalidArgument("job 'restart' must be always, on-failure or never");
  }
  {
    std::lock_guard<std::mutex> l(mu_);
    if (shutdown_) return Error::FailedPrecondition("the job runner is shutting down");
    auto it = jobs_.find(spec.id);
    if (it != jobs_.end()) {
      Job& job = *it->second;
      if (job.stopping) {
        job.replacement = spec;
      } else if (!(job.spec == spec)) {
        SPDLOG_INFO("Job spec changed; replacing job={}", spec.id);
        job.replacement = spec;
        job.stopping = true;
        job.kill_at = Clock::now() + opts_.stop_grace;
        SignalGroup(job, SIGTERM);
      }
    } else {
      auto job = std::make_unique<Job>();
      job->spec = spec;
      job->next_start = Clock::now();
      jobs_[spec.id] = std::move(job);
    }
  }
  cv_.notify_all();
  return OkStatus();
}

Status JobRunner::Stop(const std::string& id) {
  {
    std::lock_guard<std::mutex> l(mu_);
    auto it = jobs_.find(id);
    if (it == jobs_.end()) return Error::NotFound("job not found");
    Job& job = *it->second;
    job.replacement.reset();
    if (!job.stopping) {
      SPDLOG_INFO("Stopping job job={} pid={}", id, job.pid);
      job.stopping = true;
      job.kill_at = Clock::now() + opts_.stop_grace;
      SignalGroup(job, SIGTERM);
    }
  }
  cv_.notify_all();
  return OkStatus();
}

Status JobRunner::Reconcile(const std::vector<JobSpec>& desired) {
  Status first = OkStatus();
  std::set<std::string> keep;
  for (const auto& spec : desired) {
    auto st = Start(spec);
    if (!st) {
      if (first) first = st;
      continue;
    }
    keep.insert(spec.id);
  }
  std::vector<std::string> remove;
  {
    std::lock_guard<std::mutex> l(mu_);
    for (const auto& [id, job] : jobs_) {
      if (!keep.count(id) && (!job->stopping || job->replacement)) remove.push_back(id);
    }
  }
  for (const auto& id : remove) (void)Stop(id);
  return first;
}

std::vector<JobStatus> JobRunner::Statuses() const {
  std::lock_guard<std::mutex> l(mu_);
  std::vector<JobStatus> out;
  for (const auto& [id, job] : jobs_) {
    JobStatus s;
    s.id = id;
    s.state = job->state;
    s.pid = job->pid;
    s.restarts = job->restarts;
    s.exit_code = job->exit_code;
    s.last_error = job->last_error;
    out.push_back(std::move(s));
  }
  return out;
}

void JobRunner::Supervise() {
  std::unique_lock<std::mutex> l(mu_);
  while (true) {
    auto now = Clock::now();
    for (auto it = jobs_.begin(); it != jobs_.end();) {
      Job& job = *it->second;
      if (job.pid > 0) {
        // Peek first (WNOWAIT): while the leader is an unreaped zombie its pid, and so the group
        // id, cannot be reused, so killing what is left of the group is safe.
        siginfo_t info{};
        int pr = ::waitid(P_PID, static_cast<id_t>(job.pid), &info, WEXITED | WNOHANG | WNOWAIT);
        if (pr == 0 && info.si_pid == job.pid) {
          ::kill(-job.pid, SIGKILL);
          int wstatus = 0;
          pid_t r = ::waitpid(job.pid, &wstatus, 0);
          HandleExit(job, r == job.pid ? wstatus : -1);
        } else if (pr < 0 && errno == ECHILD) {
          HandleExit(job, -1);
        } else if (job.stopping && !job.killed && now >= job.kill_at) {
          SPDLOG_WARN("Job did not stop in time; killing job={} pid={}", job.spec.id, job.pid);
          SignalGroup(job, SIGKILL);
          job.killed = true;
        }
      }
      if (job.pid == 0 && job.stopping) {
        if (job.replacement && !shutdown_) {
          JobSpec next = std::move(*job.replacement);
          auto fresh = std::make_unique<Job>();
          fresh->spec = std::move(next);
          fresh->next_start = now;
          it->second = std::move(fresh);
        } else {
          SPDLOG_INFO("Job stopped job={}", it->first);
          it = jobs_.erase(it);
          continue;
        }
      }
      Job& cur = *it->second;
      if (cur.pid == 0 && !cur.stopping && (cur.state == "starting" || cur.state == "restarting") &&
          now >= cur.next_start) {
        Spawn(cur);
      }
      ++it;
    }
    if (shutdown_ && jobs_.empty()) return;
    cv_.wait_for(l, std::chrono::milliseconds(50));
  }
}

}  // namespace canopy::node
