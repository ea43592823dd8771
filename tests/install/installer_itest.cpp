// Integration tests of SshSession and SshInstaller against a real sshd on 127.0.0.1 (root only).
// sshd runs with a private config; a ForceCommand wrapper confines every session to a temp home.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <thread>

#include "install/installer.h"
#include "install/ssh_session.h"
#include "support/test_util.h"

namespace canopy::install {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using canopy::testing::Process;
using canopy::testing::ReadFile;
using canopy::testing::TempDir;

void WriteFile(const fs::path& p, const std::string& content, fs::perms mode) {
  std::ofstream(p, std::ios::binary) << content;
  fs::permissions(p, mode);
}

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) {
    s.pop_back();
  }
  return s;
}

bool PortOpen(uint16_t port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  bool ok = connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  close(fd);
  return ok;
}

// Alive and not a zombie (PID 1 here may not reap reparented processes promptly).
bool PidAlive(int64_t pid) {
  if (pid <= 0 || kill(static_cast<pid_t>(pid), 0) != 0) {
    return false;
  }
  std::string st = ReadFile("/proc/" + std::to_string(pid) + "/status");
  return st.find("State:\tZ") == std::string::npos;
}

int CountLines(const std::string& s) {
  return static_cast<int>(std::count(s.begin(), s.end(), '\n'));
}

class InstallerItest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0 || !fs::exists("/usr/sbin/sshd") || !fs::exists("/usr/bin/ssh-keygen")) {
      GTEST_SKIP() << "needs root, /usr/sbin/sshd and ssh-keygen";
    }
    dir_ = tmp_.path();
    home_ = dir_ / "home";
    fs::create_directories(home_);
    fs::create_directories("/run/sshd");  // sshd's privilege separation directory
    for (const char* k : {"hostkey", "otherhost", "client", "otherclient"}) {
      std::string cmd = "ssh-keygen -q -t ed25519 -N '' -C canopy-test -f " + (dir_ / k).string();
      ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
    }
    WriteFile(dir_ / "authorized_keys", ReadFile((dir_ / "client.pub").string()),
              fs::perms::owner_read | fs::perms::owner_write);
    WriteFile(dir_ / "wrap.sh",
              "#!/bin/sh\ncd '" + home_.string() +
                  "' || exit 1\n"
                  "case \"$SSH_ORIGINAL_COMMAND\" in internal-sftp*)\n"
                  "  exec /usr/lib/openssh/sftp-server -d '" +
                  home_.string() +
                  "' ;;\nesac\n"
                  "exec /bin/sh -c \"$SSH_ORIGINAL_COMMAND\"\n",
              fs::perms::owner_all);
    // The port is given on sshd's command line (-p): sshd cannot report a port it picked, so
    // StartSshd retries with a fresh one when another process took the pick.
    WriteFile(dir_ / "sshd_config",
              fmt::format("ListenAddress 127.0.0.1\nHostKey {}\nPidFile {}\n"
                          "AuthorizedKeysFile {}\nStrictModes no\nUsePAM no\n"
                          "PasswordAuthentication no\nKbdInteractiveAuthentication no\n"
                          "PubkeyAuthentication yes\nPermitRootLogin prohibit-password\n"
                          "Subsystem sftp internal-sftp -d {}\nForceCommand {}\nLogLevel ERROR\n",
                          (dir_ / "hostkey").string(), (dir_ / "sshd.pid").string(),
                          (dir_ / "authorized_keys").string(), home_.string(),
                          (dir_ / "wrap.sh").string()),
              fs::perms::owner_read | fs::perms::owner_write);

    auto fp = SshSession::FingerprintOfPublicKey(ReadFile((dir_ / "hostkey.pub").string()));
    ASSERT_OK(fp);
    target_.host = "127.0.0.1";
    target_.user = "root";
    target_.private_key = SecretString(ReadFile((dir_ / "client").string()));
    target_.host_key_sha256 = *fp;
    if (late_start_) {
      // WaitForSsh must find nothing there until the test starts sshd on this port.
      port_ = canopy::testing::PickUnusedPort();
      target_.port = port_;
    } else {
      ASSERT_TRUE(canopy::testing::StartWithFreshPorts([this](uint16_t p) {
        return StartSshdOn(p);
      })) << ReadFile((dir_ / "sshd.log").string());
    }
  }

  // Starts sshd on `port`; true once it listens there (false, sshd gone, when the bind failed).
  bool StartSshdOn(uint16_t port) {
    port_ = port;
    target_.port = port;
    sshd_ = std::make_unique<Process>(
        std::vector<std::string>{"/usr/sbin/sshd", "-D", "-e", "-p", std::to_string(port), "-f",
                                 (dir_ / "sshd_config").string()},
        std::vector<std::string>{}, (dir_ / "sshd.log").string());
    for (int i = 0; i < 100 && sshd_->Running() && !PortOpen(port_); ++i) {
      std::this_thread::sleep_for(50ms);
    }
    if (sshd_->Running() && PortOpen(port_)) return true;
    sshd_.reset();
    return false;
  }

  void StartSshd() { ASSERT_TRUE(StartSshdOn(port_)) << ReadFile((dir_ / "sshd.log").string()); }

  void TearDown() override {
    // Kill every supervisor (and its process group) the tests may have left behind.
    std::error_code ec;
    if (home_.empty()) {
      return;  // skipped before anything started
    }
    fs::path run = home_ / "canopy" / "run";
    if (fs::exists(run, ec)) {
      for (const auto& e : fs::directory_iterator(run, ec)) {
        auto ext = e.path().extension().string();
        if (ext == ".pid" || ext == ".child") {
          pid_t pid = static_cast<pid_t>(std::atoll(ReadFile(e.path().string()).c_str()));
          if (pid > 1) {
            kill(-pid, SIGKILL);
            kill(pid, SIGKILL);
          }
        }
      }
    }
    if (sshd_) {
      sshd_->Kill(SIGTERM);
      sshd_->Wait();
    }
  }

  std::unique_ptr<SshSession> MustConnect() {
    auto s = SshSession::Connect(target_, 5s);
    EXPECT_TRUE(s.has_value()) << s.error().ToString() << "\n"
                               << ReadFile((dir_ / "sshd.log").string());
    return s ? std::move(s).value() : nullptr;
  }

  // A tiny "binary": records how it was started, then stays up.
  std::string WriteFakeBinary(const std::string& marker) {
    std::string path = (dir_ / ("fake-canopyd-" + marker)).string();
    WriteFile(path,
              "#!/bin/sh\n# " + marker +
                  "\n"
                  "echo \"run $$ arg=$1 env=$CANOPY_TEST_ENV cfg=$(cat \"$2\")\" >> started.txt\n"
                  "exec sleep 1000\n",
              fs::perms::owner_all);
    return path;
  }

  ComponentSpec Spec(const std::string& binary) {
    ComponentSpec spec;
    spec.name = "node";
    spec.binary_path = binary;
    spec.config = SecretString("secret-config");
    spec.argv = {"hello", "{config}"};
    spec.env = {{"CANOPY_TEST_ENV", "x y"}};
    return spec;
  }

  SshInstaller FastInstaller() {
    InstallOptions o;
    o.wait.deadline = 10s;
    return SshInstaller(o);
  }

  TempDir tmp_;
  fs::path dir_;
  fs::path home_;
  uint16_t port_ = 0;
  SshTarget target_;
  std::unique_ptr<Process> sshd_;
  bool late_start_ = false;
};

TEST_F(InstallerItest, FingerprintMatchesSshKeygen) {
  std::string out_path = (dir_ / "fp.txt").string();
  std::string cmd = "ssh-keygen -lf " + (dir_ / "hostkey.pub").string() + " > " + out_path;
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  std::string line = ReadFile(out_path);  // "256 SHA256:xxx comment (ED25519)"
  auto a = line.find(' ');
  auto b = line.find(' ', a + 1);
  EXPECT_EQ(line.substr(a + 1, b - a - 1), target_.host_key_sha256);
}

TEST_F(InstallerItest, ConnectRefusesWrongHostKey) {
  auto other = SshSession::FingerprintOfPublicKey(ReadFile((dir_ / "otherhost.pub").string()));
  ASSERT_OK(other);
  ASSERT_NE(*other, target_.host_key_sha256);
  target_.host_key_sha256 = *other;
  auto s = SshSession::Connect(target_, 5s);
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.error().code, ErrorCode::kPermissionDenied);
  EXPECT_EQ(s.error().message, "host key mismatch");
  // WaitForSsh must not retry a mismatch.
  int attempts = 0;
  auto w = SshSession::WaitForSsh(target_, {.deadline = 5s}, &attempts);
  ASSERT_FALSE(w.has_value());
  EXPECT_EQ(w.error().code, ErrorCode::kPermissionDenied);
  EXPECT_EQ(attempts, 1);
}

TEST_F(InstallerItest, ConnectWithWrongClientKeyIsUnauthenticated) {
  target_.private_key = SecretString(ReadFile((dir_ / "otherclient").string()));
  auto s = SshSession::Connect(target_, 5s);
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.error().code, ErrorCode::kUnauthenticated) << s.error().ToString();
}

TEST_F(InstallerItest, ConnectToClosedPortIsUnavailable) {
  canopy::testing::ClosedPort closed;
  target_.port = closed.port();
  auto s = SshSession::Connect(target_, 2s);
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.error().code, ErrorCode::kUnavailable);
}

class InstallerLateItest : public InstallerItest {
 protected:
  void SetUp() override {
    late_start_ = true;
    InstallerItest::SetUp();
  }
};

TEST_F(InstallerLateItest, WaitForSshRetriesUntilSshdStarts) {
  if (IsSkipped()) {
    return;
  }
  ASSERT_FALSE(PortOpen(port_));
  std::thread starter([this] {
    std::this_thread::sleep_for(1500ms);
    StartSshd();
  });
  int attempts = 0;
  auto t0 = std::chrono::steady_clock::now();
  auto s = SshSession::WaitForSsh(target_, {.deadline = 15s}, &attempts);
  auto waited = std::chrono::steady_clock::now() - t0;
  starter.join();
  ASSERT_OK(s);
  EXPECT_GT(attempts, 1);
  EXPECT_GE(waited, 1400ms);
  auto r = (*s)->Exec("echo ok");
  ASSERT_OK(r);
  EXPECT_EQ(r->out, "ok\n");
}

TEST_F(InstallerLateItest, WaitForSshGivesUpAtDeadline) {
  if (IsSkipped()) {
    return;
  }
  auto t0 = std::chrono::steady_clock::now();
  auto s = SshSession::WaitForSsh(target_, {.deadline = 1s});
  auto waited = std::chrono::steady_clock::now() - t0;
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.error().code, ErrorCode::kUnavailable);
  EXPECT_LT(waited, 3s);
}

TEST_F(InstallerItest, ExecReturnsExitStatusAndOutputs) {
  auto s = MustConnect();
  ASSERT_TRUE(s);
  auto r = s->Exec("echo out; echo 'err '\"q\" >&2; pwd; exit 7");
  ASSERT_OK(r);
  EXPECT_EQ(r->exit_status, 7);
  EXPECT_EQ(r->out, "out\n" + home_.string() + "\n");
  EXPECT_EQ(r->err, "err q\n");
  auto ok = s->Exec("true");
  ASSERT_OK(ok);
  EXPECT_EQ(ok->exit_status, 0);
  EXPECT_EQ(ok->out, "");
}

TEST_F(InstallerItest, ExecTimesOut) {
  auto s = MustConnect();
  ASSERT_TRUE(s);
  auto r = s->Exec("sleep 5", 500ms);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, ErrorCode::kDeadlineExceeded);
}

TEST_F(InstallerItest, UploadOf8MiBIsByteIdenticalAndFast) {
  std::string data(8 * 1024 * 1024, '\0');
  std::mt19937_64 rng(42);
  for (auto& c : data) {
    c = static_cast<char>(rng());
  }
  std::string local = (dir_ / "blob").string();
  WriteFile(local, data, fs::perms::owner_read | fs::perms::owner_write);
  auto s = MustConnect();
  ASSERT_TRUE(s);
  auto t0 = std::chrono::steady_clock::now();
  ASSERT_OK(s->UploadFile(local, "sub-blob", 0640));
  auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
          .count();
  std::cout << "8 MiB upload: " << ms << " ms\n";
  EXPECT_LT(ms, 5000);  // ~7.6 s without TCP_NODELAY; tens of ms with it
  EXPECT_EQ(ReadFile((home_ / "sub-blob").string()), data);
  EXPECT_EQ(fs::status(home_ / "sub-blob").permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read);
  // Replacing an existing file works (SFTP v3 rename does not overwrite by itself).
  ASSERT_OK(s->UploadBytes("small", "sub-blob", 0600));
  EXPECT_EQ(ReadFile((home_ / "sub-blob").string()), "small");
  // No temp files left behind.
  int entries = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(home_)) {
    ++entries;
  }
  EXPECT_EQ(entries, 1);
  EXPECT_EQ(s->UploadFile((dir_ / "missing").string(), "x", 0600).error().code,
            ErrorCode::kNotFound);
}

TEST_F(InstallerItest, InstallStartsSupervisedComponentIdempotently) {
  SshInstaller inst = FastInstaller();
  ComponentSpec spec = Spec(WriteFakeBinary("v1"));
  auto r1 = inst.Install(target_, spec);
  ASSERT_OK(r1);
  std::cout << "install 1: connect=" << r1->timings.connect_ms << " check=" << r1->timings.check_ms
            << " upload=" << r1->timings.upload_ms << " start=" << r1->timings.start_ms << " ms\n";
  EXPECT_FALSE(r1->upload_skipped);
  EXPECT_FALSE(r1->already_running);
  EXPECT_EQ(r1->mode, "supervisor");
  EXPECT_GT(r1->timings.check_ms, 0);
  EXPECT_GT(r1->timings.start_ms, 0);
  EXPECT_GE(r1->connect_attempts, 1);
  EXPECT_TRUE(PidAlive(r1->pid));

  fs::path rd = home_ / "canopy";
  EXPECT_EQ(ReadFile((rd / "bin/canopyd").string()), ReadFile(spec.binary_path));
  EXPECT_EQ(fs::status(rd / "etc/node.conf").permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);
  EXPECT_EQ(Trim(ReadFile((rd / "bin/canopyd.sha256").string())).size(), 64u);

  auto st = inst.GetStatus(target_, "node");
  ASSERT_OK(st);
  EXPECT_TRUE(st->running);
  EXPECT_EQ(st->mode, "supervisor");
  EXPECT_EQ(st->pid, r1->pid);
  EXPECT_TRUE(PidAlive(st->child_pid));
  std::string started = ReadFile((rd / "started.txt").string());
  EXPECT_EQ(CountLines(started), 1);
  EXPECT_NE(started.find("arg=hello env=x y cfg=secret-config"), std::string::npos) << started;

  // Second install: same digest -> no upload, no second copy.
  auto r2 = inst.Install(target_, spec);
  ASSERT_OK(r2);
  EXPECT_TRUE(r2->upload_skipped);
  EXPECT_FALSE(r2->config_changed);
  EXPECT_TRUE(r2->already_running);
  EXPECT_EQ(r2->pid, r1->pid);
  auto st2 = inst.GetStatus(target_, "node");
  ASSERT_OK(st2);
  EXPECT_EQ(st2->child_pid, st->child_pid);
  EXPECT_EQ(CountLines(ReadFile((rd / "started.txt").string())), 1);

  // The supervisor restarts the process after it is killed.
  ASSERT_EQ(kill(static_cast<pid_t>(st->child_pid), SIGKILL), 0);
  int64_t new_child = 0;
  for (int i = 0; i < 100; ++i) {
    std::this_thread::sleep_for(100ms);
    new_child = std::atoll(ReadFile((rd / "run/node.child").string()).c_str());
    if (new_child != st->child_pid && PidAlive(new_child) &&
        CountLines(ReadFile((rd / "started.txt").string())) == 2) {
      break;
    }
  }
  EXPECT_NE(new_child, st->child_pid);
  EXPECT_TRUE(PidAlive(new_child));
  EXPECT_EQ(CountLines(ReadFile((rd / "started.txt").string())), 2);
  EXPECT_TRUE(PidAlive(r1->pid));

  // Stop ends supervisor and process.
  ASSERT_OK(inst.Stop(target_, "node"));
  EXPECT_FALSE(PidAlive(r1->pid));
  EXPECT_FALSE(PidAlive(new_child));
  auto st3 = inst.GetStatus(target_, "node");
  ASSERT_OK(st3);
  EXPECT_FALSE(st3->running);
  ASSERT_OK(inst.Stop(target_, "node"));  // stopping again is fine
}

TEST_F(InstallerItest, InstallWithNewBinaryUploadsAndRestarts) {
  SshInstaller inst = FastInstaller();
  auto r1 = inst.Install(target_, Spec(WriteFakeBinary("v1")));
  ASSERT_OK(r1);
  auto r2 = inst.Install(target_, Spec(WriteFakeBinary("v2")));
  ASSERT_OK(r2);
  EXPECT_FALSE(r2->upload_skipped);
  EXPECT_FALSE(r2->already_running);
  EXPECT_NE(r2->pid, r1->pid);
  EXPECT_FALSE(PidAlive(r1->pid));
  EXPECT_TRUE(PidAlive(r2->pid));
  EXPECT_NE(ReadFile((home_ / "canopy/bin/canopyd").string()).find("# v2"), std::string::npos);
  ASSERT_OK(inst.Stop(target_, "node"));
  EXPECT_FALSE(PidAlive(r2->pid));
}

TEST_F(InstallerItest, InstallFailureNamesThePhase) {
  SshInstaller inst = FastInstaller();
  ComponentSpec spec = Spec((dir_ / "no-such-binary").string());
  auto r = inst.Install(target_, spec);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().reason, "install_check");
  EXPECT_EQ(r.error().code, ErrorCode::kNotFound);

  InstallOptions o;
  o.wait.deadline = 500ms;
  canopy::testing::ClosedPort closed;
  target_.port = closed.port();
  auto c = SshInstaller(o).Install(target_, Spec(WriteFakeBinary("v1")));
  ASSERT_FALSE(c.has_value());
  EXPECT_EQ(c.error().reason, "install_connect");
  EXPECT_EQ(c.error().code, ErrorCode::kUnavailable);
}

// A failing preflight (the uploaded binary's own check) fails the install with its last stderr
// line and starts nothing; a passing one lets the start go on.
TEST_F(InstallerItest, PreflightFailureStopsTheInstallWithTheCommandsReason) {
  std::string path = (dir_ / "fake-canopyd-probe").string();
  WriteFile(path,
            "#!/bin/sh\n"
            "if [ \"$1\" = probe ]; then\n"
            "  [ \"$3\" = ok ] && exit 0\n"
            "  echo 'some noise' >&2; echo \"error: cannot reach $3 from this machine: refused\" "
            ">&2; exit 1\n"
            "fi\n"
            "echo \"run $$\" >> started.txt\nexec sleep 1000\n",
            fs::perms::owner_all);
  SshInstaller inst = FastInstaller();
  ComponentSpec spec = Spec(path);
  spec.preflight = {"probe", "--url", "http://10.0.0.1:8080/healthz"};
  auto r = inst.Install(target_, spec);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().reason, "install_preflight");
  EXPECT_EQ(r.error().code, ErrorCode::kFailedPrecondition);
  EXPECT_EQ(r.error().message,
            "cannot reach http://10.0.0.1:8080/healthz from this machine: refused");
  EXPECT_FALSE(fs::exists(home_ / "canopy" / "started.txt"));

  spec.preflight = {"probe", "--url", "ok"};
  auto ok = inst.Install(target_, spec);
  ASSERT_OK(ok);
  for (int i = 0; i < 50 && !fs::exists(home_ / "canopy" / "started.txt"); ++i)
    std::this_thread::sleep_for(100ms);
  EXPECT_TRUE(fs::exists(home_ / "canopy" / "started.txt"));
}

TEST(InstallerScripts, SupervisorScriptQuotesArgumentsAndEnv) {
  ComponentSpec spec;
  spec.name = "cluster";
  spec.argv = {"cluster", "--config", "{config}", "it's"};
  spec.env = {{"A", "b c"}};
  std::string s = SshInstaller::SupervisorScript(spec, "/home/u/canopy");
  EXPECT_NE(s.find("./bin/canopyd 'cluster' '--config' 'etc/cluster.conf' 'it'\\''s'"),
            std::string::npos)
      << s;
  EXPECT_NE(s.find("export A='b c'"), std::string::npos);
  std::string u = SshInstaller::SystemdUnit(spec, "/home/u/canopy", "u");
  EXPECT_NE(u.find("ExecStart=\"/home/u/canopy/bin/canopyd\" \"cluster\" \"--config\" "
                   "\"/home/u/canopy/etc/cluster.conf\""),
            std::string::npos)
      << u;
  EXPECT_NE(u.find("User=u\n"), std::string::npos);
  // The environment (tokens) is in a 0600 file the unit points to, never in the unit itself.
  EXPECT_EQ(u.find("b c"), std::string::npos) << u;
  EXPECT_NE(u.find("EnvironmentFile=/home/u/canopy/etc/cluster.env\n"), std::string::npos) << u;
  spec.env = {{"A", "b c"}, {"T", "x\"y\\z"}};
  EXPECT_EQ(SshInstaller::EnvironmentFile(spec), "A=\"b c\"\nT=\"x\\\"y\\\\z\"\n");
}

TEST(InstallerScripts, InvalidNamesAreRejected) {
  SshInstaller inst;
  ComponentSpec spec;
  spec.name = "../x";
  auto r = inst.Install(SshTarget{}, spec);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
  spec.name = "ok";
  spec.env = {{"1BAD", "v"}};
  EXPECT_EQ(inst.Install(SshTarget{}, spec).error().code, ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace canopy::install
