// JobRunner: runs the node's jobs as supervised child processes. Each job is its own process group
// (setsid), stdout+stderr appended to <data_dir>/jobs/<id>.log, restarted per its policy with a
// capped backoff, stopped with SIGTERM to the group then SIGKILL after a grace period; every child
// is reaped; a job's process gets SIGKILL when the runner's process dies (PR_SET_PDEATHSIG), so a
// node killed hard leaves no orphan to be duplicated at its restart. Resource limits use cgroups v2
// (<cgroup_root>/canopy-node-<pid>/job-<id>, memory.max and cpu.max, the child joins before exec)
// when cgroup_root is a writable cgroup2 mount whose controllers can be delegated; otherwise jobs
// run without limits and the reason is logged once (cgroup_status()). Jobs are not root: they run
// as JobRunnerOptions::job_user in <data_dir>/work/<id>, with a clean environment (PATH, HOME,
// USER, LANG, CANOPY_JOB_ID and the spec's env; nothing of the runner's, such as its token).
// Thread-safe; one supervisor thread per runner.
#pragma once

#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/json.h"
#include "common/result.h"

namespace canopy::node {

struct JobSpec {
  std::string id;                          // [A-Za-z0-9._-], 1..64, not starting with '.'
  std::vector<std::string> command;        // argv; argv[0] absolute or looked up in PATH
  std::map<std::string, std::string> env;  // added to (overriding) the node's environment
  int64_t cpu_millis = 0;                  // 0 = no limit
  int64_t memory_mib = 0;                  // 0 = no limit
  std::string restart = "on-failure";      // "always" | "on-failure" | "never"

  Json ToJson() const;
  // {id, command: [..], env?: {..}, cpu_millis?, memory_mib?, restart?}
  static Result<JobSpec> FromJson(const Json& j);
  bool operator==(const JobSpec&) const = default;
};

struct JobStatus {
  std::string id;
  std::string state;  // "starting" | "running" | "restarting" | "exited" | "failed"
  int pid = 0;        // 0 when not running
  int64_t restarts = 0;
  std::optional<int> exit_code;  // of the last run; 128+N when killed by signal N
  std::string last_error;
  Json ToJson() const;
};

struct JobRunnerOptions {
  std::string data_dir;                            // logs go to <data_dir>/jobs/<id>.log
  std::chrono::milliseconds stop_grace{5000};      // SIGTERM -> SIGKILL
  std::chrono::milliseconds backoff_initial{500};  // restart delay, doubling...
  std::chrono::milliseconds backoff_max{10000};    // ...up to this
  std::string cgroup_root = "/sys/fs/cgroup";      // "" = never use cgroups
  // Jobs run as this unprivileged user (created as a system user when missing and the runner
  // is root; `nobody` when it cannot be), with no supplementary groups and only
  // CAP_NET_BIND_SERVICE (ambient: services may listen on ports below 1024). "" or a runner that
  // is not root: jobs run as the runner's own user.
  std::string job_user = "canopy-job";
};

class JobRunner {
 public:
  explicit JobRunner(JobRunnerOptions opts);
  // Stops every job (SIGTERM, SIGKILL after the grace period) and reaps them.
  ~JobRunner();
  JobRunner(const JobRunner&) = delete;
  JobRunner& operator=(const JobRunner&) = delete;

  // Starts a job. The same spec again is a no-op; a different spec for a known id replaces it
  // (the old process is stopped first). Bad spec -> kInvalidArgument. A command that cannot be
  // executed is not an error here: the job goes to "failed" (restarted per its policy).
  Status Start(const JobSpec& spec);
  // Asks the job to stop (asynchronous: SIGTERM now, SIGKILL after the grace period); the job
  // disappears from Statuses() once reaped. Unknown id -> kNotFound.
  Status Stop(const std::string& id);
  // Makes the running set equal to `desired`: starts missing jobs, replaces changed ones, stops
  // the others. Returns the first invalid spec's error (the valid ones are still applied).
  Status Reconcile(const std::vector<JobSpec>& desired);
  // Every known job (including those being stopped), ordered by id.
  std::vector<JobStatus> Statuses() const;
  // Whether cgroup limits are applied, and why not when they are not.
  bool cgroups_enabled() const { return cgroups_enabled_; }
  std::string cgroup_status() const { return cgroup_status_; }
  // The cgroup directory of a job ("" without cgroups).
  std::string JobCgroup(const std::string& id) const;
  // Who jobs run as ("canopy-job (uid 998)", or why they run as the runner's user).
  std::string user_status() const { return user_status_; }
  // A job's working directory (<data_dir>/work/<id>, owned by the job user, 0700).
  std::string JobWorkDir(const std::string& id) const;

 private:
  struct Job;
  void Supervise();
  void Spawn(Job& job);                    // mu_ held
  void HandleExit(Job& job, int wstatus);  // mu_ held
  void SignalGroup(Job& job, int sig);     // mu_ held
  void SetupCgroups();
  void SetupUser();
  std::string PrepareCgroup(const JobSpec& spec, std::string* error);  // mu_ held

  JobRunnerOptions opts_;
  bool cgroups_enabled_ = false;
  std::string cgroup_status_;
  std::string cgroup_base_;  // <cgroup_root>/canopy-node-<pid>
  int job_uid_ = -1;         // -1: jobs keep the runner's user
  int job_gid_ = -1;
  std::string job_user_name_;
  std::string user_status_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool shutdown_ = false;
  std::map<std::string, std::unique_ptr<Job>> jobs_;
  std::thread supervisor_;
};

}  // namespace canopy::node
