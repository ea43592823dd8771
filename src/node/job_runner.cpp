#include "node/job_runner.h"

#include <errno.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

extern char** environ;

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
  supervisor_ = std::thread([this] { Supervise(); });
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
  // Everything the child needs is prepared before fork (only async-signal-safe calls after it).
  std::vector<std::string> envs;
  for (char** e = environ; e && *e; ++e) {
    std::string kv = *e;
    auto eq = kv.find('=');
    if (eq != std::string::npos && spec.env.count(kv.substr(0, eq))) continue;
    envs.push_back(std::move(kv));
  }
  for (const auto& [k, v] : spec.env) envs.push_back(k + "=" + v);
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
    ::setsid();  // own session and process group (pgid == pid)
    // Dies with the supervisor thread (the node killed hard): no orphan jobs to duplicate later.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    if (procs_fd >= 0) {
      if (::write(procs_fd, "0", 1) != 1) {
        int err = errno;
        ssize_t w = ::write(err_pipe[1], &err, sizeof(err));
        (void)w;
      }
    }
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
