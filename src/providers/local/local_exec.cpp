#include "providers/local/local_exec.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <system_error>

namespace canopy::providers::local {

namespace {

void CloseFd(int& fd) {
  if (fd >= 0) {
    close(fd);
    fd = -1;
  }
}

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\r')) {
    s.pop_back();
  }
  return s;
}

}  // namespace

Result<CommandResult> RunCommand(const std::vector<std::string>& argv, std::string_view input,
                                 std::chrono::milliseconds timeout) {
  if (argv.empty()) {
    return Error::Internal("empty command");
  }
  int in_pipe[2], out_pipe[2], err_pipe[2];
  if (pipe2(in_pipe, O_CLOEXEC) != 0) {
    return Error::Internal("pipe failed");
  }
  if (pipe2(out_pipe, O_CLOEXEC) != 0) {
    close(in_pipe[0]);
    close(in_pipe[1]);
    return Error::Internal("pipe failed");
  }
  if (pipe2(err_pipe, O_CLOEXEC) != 0) {
    close(in_pipe[0]);
    close(in_pipe[1]);
    close(out_pipe[0]);
    close(out_pipe[1]);
    return Error::Internal("pipe failed");
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in_pipe[0], 0);
  posix_spawn_file_actions_adddup2(&fa, out_pipe[1], 1);
  posix_spawn_file_actions_adddup2(&fa, err_pipe[1], 2);
  // Long-lived children (sshd) must not keep the adapter's sockets or files open.
  posix_spawn_file_actions_addclosefrom_np(&fa, 3);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t empty, all;
  sigemptyset(&empty);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &empty);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

  std::vector<char*> args;
  for (const auto& a : argv) {
    args.push_back(const_cast<char*>(a.c_str()));
  }
  args.push_back(nullptr);
  std::string path_env = "PATH=/usr/sbin:/usr/bin:/sbin:/bin";
  std::string lc_env = "LC_ALL=C";
  char* envp[] = {path_env.data(), lc_env.data(), nullptr};
  pid_t pid = -1;
  int rc = posix_spawn(&pid, argv[0].c_str(), &fa, &attr, args.data(), envp);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  close(in_pipe[0]);
  close(out_pipe[1]);
  close(err_pipe[1]);
  int in_fd = in_pipe[1], out_fd = out_pipe[0], err_fd = err_pipe[0];
  if (rc != 0) {
    CloseFd(in_fd);
    CloseFd(out_fd);
    CloseFd(err_fd);
    return Error::Internal("cannot run " + argv[0] + ": " + std::strerror(rc));
  }
  fcntl(in_fd, F_SETFL, O_NONBLOCK);
  CommandResult res;
  size_t written = 0;
  if (input.empty()) {
    CloseFd(in_fd);
  }
  auto deadline = std::chrono::steady_clock::now() + timeout;
  bool timed_out = false;
  while (out_fd >= 0 || err_fd >= 0) {
    pollfd fds[3];
    int n = 0;
    int idx_in = -1, idx_out = -1, idx_err = -1;
    if (in_fd >= 0) {
      idx_in = n;
      fds[n++] = {in_fd, POLLOUT, 0};
    }
    if (out_fd >= 0) {
      idx_out = n;
      fds[n++] = {out_fd, POLLIN, 0};
    }
    if (err_fd >= 0) {
      idx_err = n;
      fds[n++] = {err_fd, POLLIN, 0};
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    int pr = poll(fds, n, static_cast<int>(left.count()));
    if (pr < 0) {
      if (errno == EINTR) {
        continue;
      }
      break;
    }
    if (idx_in >= 0 && fds[idx_in].revents != 0) {
      ssize_t w = write(in_fd, input.data() + written, input.size() - written);
      if (w > 0) {
        written += static_cast<size_t>(w);
      }
      if (w < 0 && errno != EAGAIN && errno != EINTR) {
        CloseFd(in_fd);
      } else if (written >= input.size()) {
        CloseFd(in_fd);
      }
    }
    char buf[4096];
    if (idx_out >= 0 && fds[idx_out].revents != 0) {
      ssize_t r = read(out_fd, buf, sizeof(buf));
      if (r > 0) {
        res.out.append(buf, static_cast<size_t>(r));
      } else if (r == 0 || (errno != EINTR && errno != EAGAIN)) {
        CloseFd(out_fd);
      }
    }
    if (idx_err >= 0 && fds[idx_err].revents != 0) {
      ssize_t r = read(err_fd, buf, sizeof(buf));
      if (r > 0) {
        res.err.append(buf, static_cast<size_t>(r));
      } else if (r == 0 || (errno != EINTR && errno != EAGAIN)) {
        CloseFd(err_fd);
      }
    }
  }
  CloseFd(in_fd);
  CloseFd(out_fd);
  CloseFd(err_fd);
  if (timed_out) {
    kill(pid, SIGKILL);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (timed_out) {
    return Error::DeadlineExceeded(argv[0] + " timed out");
  }
  res.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return res;
}

Status RunChecked(const std::vector<std::string>& argv, std::string_view what,
                  std::string_view input) {
  CANOPY_ASSIGN_OR_RETURN(CommandResult r, RunCommand(argv, input));
  if (r.exit_code != 0) {
    return Error::Internal(std::string(what) + " failed: " + Trim(r.err.substr(0, 400)));
  }
  return OkStatus();
}

std::string FindTool(const std::string& name) {
  for (const char* dir : {"/usr/sbin/", "/usr/bin/", "/sbin/", "/bin/"}) {
    std::string p = std::string(dir) + name;
    if (access(p.c_str(), X_OK) == 0) {
      return p;
    }
  }
  return "";
}

std::vector<int> NetnsPids(const std::string& netns) {
  std::vector<int> pids;
  struct stat ns_st {};
  if (stat(("/run/netns/" + netns).c_str(), &ns_st) != 0) {
    return pids;
  }
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/proc", ec)) {
    const std::string name = e.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) {
      continue;
    }
    struct stat st {};
    if (stat(("/proc/" + name + "/ns/net").c_str(), &st) != 0) {
      continue;
    }
    if (st.st_dev == ns_st.st_dev && st.st_ino == ns_st.st_ino) {
      pids.push_back(std::stoi(name));
    }
  }
  return pids;
}

}  // namespace canopy::providers::local
