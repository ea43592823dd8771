#include "install/ssh_session.h"

#include <fcntl.h>
#include <libssh/libssh.h>
#include <libssh/sftp.h>
#include <openssl/crypto.h>

#include <algorithm>
#include <fstream>
#include <random>
#include <thread>

#include "common/log.h"

namespace canopy::install {

namespace {

constexpr size_t kChunk = 64 * 1024;            // OpenSSH rejects 256 KiB SFTP writes
constexpr size_t kMaxOutput = 8 * 1024 * 1024;  // per stream; the rest is dropped

using Ms = std::chrono::milliseconds;
using SteadyClock = std::chrono::steady_clock;

// "sh -c '<script>'" with the script single-quoted for the login shell.
std::string ShellCommand(std::string_view script) { return "sh -c " + ShellQuote(script); }

std::string RandomSuffix() {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  return fmt::format("{:016x}", rng());
}

std::string FingerprintOf(ssh_key key) {
  unsigned char* hash = nullptr;
  size_t hlen = 0;
  if (ssh_get_publickey_hash(key, SSH_PUBLICKEY_HASH_SHA256, &hash, &hlen) != SSH_OK) {
    return {};
  }
  char* fp = ssh_get_fingerprint_hash(SSH_PUBLICKEY_HASH_SHA256, hash, hlen);
  ssh_clean_pubkey_hash(&hash);
  if (fp == nullptr) {
    return {};
  }
  std::string out = fp;
  ssh_string_free_char(fp);
  return out;
}

// OpenSSH prints fingerprints without base64 padding; tolerate either form.
std::string NormalizeFingerprint(std::string fp) {
  while (!fp.empty() && fp.back() == '=') {
    fp.pop_back();
  }
  return fp;
}

}  // namespace

struct SshSession::Impl {
  ssh_session session = nullptr;
  sftp_session sftp = nullptr;
  std::string host;  // for log lines only

  ~Impl() {
    if (sftp != nullptr) {
      sftp_free(sftp);
    }
    if (session != nullptr) {
      if (ssh_is_connected(session) != 0) {
        ssh_disconnect(session);
      }
      ssh_free(session);
    }
  }
};

SshSession::SshSession(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
SshSession::~SshSession() = default;

Result<std::unique_ptr<SshSession>> SshSession::Connect(const SshTarget& target, Ms timeout) {
  if (target.host.empty() || target.user.empty()) {
    return Error::InvalidArgument("ssh target needs a host and a user");
  }
  if (target.host_key_sha256.rfind("SHA256:", 0) != 0) {
    return Error::InvalidArgument("ssh target needs a host key fingerprint \"SHA256:...\"");
  }
  auto impl = std::make_unique<Impl>();
  impl->host = target.host;
  impl->session = ssh_new();
  if (impl->session == nullptr) {
    return Error::Internal("cannot allocate ssh session");
  }
  ssh_session s = impl->session;
  int port = target.port;
  long secs = static_cast<long>(timeout.count() / 1000);
  long usecs = static_cast<long>((timeout.count() % 1000) * 1000);
  int nodelay = 1;  // without it an 8 MiB SFTP upload takes seconds instead of milliseconds
  bool process_config = false;
  int verbosity = SSH_LOG_NOLOG;
  bool ok = ssh_options_set(s, SSH_OPTIONS_HOST, target.host.c_str()) == 0 &&
            ssh_options_set(s, SSH_OPTIONS_PORT, &port) == 0 &&
            ssh_options_set(s, SSH_OPTIONS_USER, target.user.c_str()) == 0 &&
            ssh_options_set(s, SSH_OPTIONS_TIMEOUT, &secs) == 0 &&
            ssh_options_set(s, SSH_OPTIONS_TIMEOUT_USEC, &usecs) == 0 &&
            ssh_options_set(s, SSH_OPTIONS_NODELAY, &nodelay) == 0 &&
            ssh_options_set(s, SSH_OPTIONS_PROCESS_CONFIG, &process_config) == 0 &&
            ssh_options_set(s, SSH_OPTIONS_LOG_VERBOSITY, &verbosity) == 0 &&
            ssh_options_set(s, SSH_OPTIONS_KNOWNHOSTS, "/dev/null") == 0 &&
            ssh_options_set(s, SSH_OPTIONS_GLOBAL_KNOWNHOSTS, "/dev/null") == 0;
  if (!ok) {
    return Error::InvalidArgument("invalid ssh options for " + target.host);
  }
  if (ssh_connect(s) != SSH_OK) {
    std::string why = ssh_get_error(s);
    SPDLOG_DEBUG("SSH connect failed host={} port={} error={}", target.host, port, why);
    return Error::Unavailable(fmt::format("ssh to {}:{} failed: {}", target.host, port, why));
  }

  // Pin the host key before anything is sent that depends on trusting the server.
  ssh_key server_key = nullptr;
  if (ssh_get_server_publickey(s, &server_key) != SSH_OK) {
    return Error::Unavailable("ssh server sent no host key");
  }
  std::string fp = FingerprintOf(server_key);
  ssh_key_free(server_key);
  if (fp.empty() || NormalizeFingerprint(fp) != NormalizeFingerprint(target.host_key_sha256)) {
    SPDLOG_WARN("SSH host key mismatch host={} port={} expected={} got={}", target.host, port,
                target.host_key_sha256, fp);
    return Error::PermissionDenied("host key mismatch");
  }

  ssh_key priv = nullptr;
  if (ssh_pki_import_privkey_base64(target.private_key.Reveal().c_str(), nullptr, nullptr, nullptr,
                                    &priv) != SSH_OK) {
    return Error::InvalidArgument("the ssh private key cannot be parsed");
  }
  int rc = ssh_userauth_publickey(s, nullptr, priv);
  ssh_key_free(priv);
  if (rc == SSH_AUTH_DENIED || rc == SSH_AUTH_PARTIAL) {
    return Error::Unauthenticated(
        fmt::format("ssh key of user {} refused by {}", target.user, target.host));
  }
  if (rc != SSH_AUTH_SUCCESS) {
    return Error::Unavailable(
        fmt::format("ssh authentication with {} failed: {}", target.host, ssh_get_error(s)));
  }
  auto session = std::unique_ptr<SshSession>(new SshSession(std::move(impl)));
  session->host_key_sha256_ = fp;
  return session;
}

Result<std::unique_ptr<SshSession>> SshSession::WaitForSsh(const SshTarget& target,
                                                           const WaitOptions& opts, int* attempts) {
  const auto deadline = SteadyClock::now() + opts.deadline;
  Ms backoff = opts.initial_backoff;
  int n = 0;
  while (true) {
    ++n;
    if (attempts != nullptr) {
      *attempts = n;
    }
    auto left = std::chrono::duration_cast<Ms>(deadline - SteadyClock::now());
    Ms timeout = std::clamp(left, Ms(100), opts.attempt_timeout);
    auto r = Connect(target, timeout);
    if (r) {
      return r;
    }
    ErrorCode code = r.error().code;
    bool retry = code == ErrorCode::kUnavailable ||
                 (opts.retry_unauthenticated && code == ErrorCode::kUnauthenticated);
    if (!retry) {
      return r;
    }
    if (SteadyClock::now() + backoff >= deadline) {
      Error e = std::move(r).error();
      e.message = fmt::format("ssh not ready after {} attempts: {}", n, e.message);
      return e;
    }
    std::this_thread::sleep_for(backoff);
    backoff = std::min(backoff * 2, opts.max_backoff);
  }
}

Result<ExecResult> SshSession::Exec(std::string_view script, Ms timeout) {
  ssh_session s = impl_->session;
  const auto deadline = SteadyClock::now() + timeout;
  ssh_channel ch = ssh_channel_new(s);
  if (ch == nullptr) {
    return Error::Unavailable("cannot open ssh channel");
  }
  struct ChannelGuard {
    ssh_channel ch;
    ~ChannelGuard() {
      ssh_channel_close(ch);
      ssh_channel_free(ch);
    }
  } guard{ch};
  if (ssh_channel_open_session(ch) != SSH_OK) {
    return Error::Unavailable(fmt::format("ssh channel failed: {}", ssh_get_error(s)));
  }
  std::string cmd = ShellCommand(script);
  if (ssh_channel_request_exec(ch, cmd.c_str()) != SSH_OK) {
    return Error::Unavailable(fmt::format("ssh exec failed: {}", ssh_get_error(s)));
  }
  ssh_channel_send_eof(ch);  // the script gets an empty stdin
  ExecResult res;
  char buf[16384];
  auto append = [](std::string& dst, const char* p, int n) {
    if (dst.size() < kMaxOutput) {
      dst.append(p, std::min(static_cast<size_t>(n), kMaxOutput - dst.size()));
    }
  };
  while (true) {
    int n = ssh_channel_read_timeout(ch, buf, sizeof buf, 0, 50);
    if (n == SSH_ERROR) {
      return Error::Unavailable(fmt::format("ssh read failed: {}", ssh_get_error(s)));
    }
    if (n > 0) {
      append(res.out, buf, n);
    }
    int m = 0;
    while ((m = ssh_channel_read_nonblocking(ch, buf, sizeof buf, 1)) > 0) {
      append(res.err, buf, m);
    }
    if (m == SSH_ERROR) {
      return Error::Unavailable(fmt::format("ssh read failed: {}", ssh_get_error(s)));
    }
    if (n == 0 && ssh_channel_is_eof(ch) != 0) {
      break;
    }
    if (SteadyClock::now() > deadline) {
      return Error::DeadlineExceeded("remote script did not finish in time");
    }
  }
  res.exit_status = ssh_channel_get_exit_status(ch);
  return res;
}

Status SshSession::OpenSftp() {
  if (impl_->sftp != nullptr) {
    return OkStatus();
  }
  sftp_session sftp = sftp_new(impl_->session);
  if (sftp == nullptr) {
    return Error::Unavailable(
        fmt::format("sftp session failed: {}", ssh_get_error(impl_->session)));
  }
  if (sftp_init(sftp) != SSH_OK) {
    sftp_free(sftp);
    return Error::Unavailable("sftp subsystem not available");
  }
  impl_->sftp = sftp;
  return OkStatus();
}

template <class ReadChunk>
Status SshSession::UploadImpl(ReadChunk&& read_chunk, const std::string& remote_path, int mode) {
  CANOPY_TRY(OpenSftp());
  sftp_session sftp = impl_->sftp;
  const std::string tmp = remote_path + ".tmp-" + RandomSuffix();
  sftp_file f = sftp_open(sftp, tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (f == nullptr) {
    return Error::Unavailable(fmt::format("cannot create {} on {} (sftp error {})", tmp,
                                          impl_->host, sftp_get_error(sftp)));
  }
  auto fail = [&](std::string what) -> Status {
    sftp_unlink(sftp, tmp.c_str());
    return Error::Unavailable(fmt::format("upload of {} to {} failed: {} (sftp error {})",
                                          remote_path, impl_->host, what, sftp_get_error(sftp)));
  };
  std::string chunk;
  struct Wipe {  // chunks may hold a config with secrets
    std::string& s;
    ~Wipe() {
      s.resize(s.capacity());
      OPENSSL_cleanse(s.data(), s.size());
    }
  } wipe{chunk};
  while (true) {
    auto more = read_chunk(chunk);
    if (!more) {
      sftp_close(f);
      sftp_unlink(sftp, tmp.c_str());
      return Unexpected(std::move(more).error());
    }
    if (chunk.empty()) {
      break;
    }
    size_t off = 0;
    while (off < chunk.size()) {
      ssize_t w = sftp_write(f, chunk.data() + off, chunk.size() - off);
      if (w <= 0) {
        sftp_close(f);
        return fail("write");
      }
      off += static_cast<size_t>(w);
    }
  }
  if (sftp_close(f) != SSH_OK) {
    return fail("close");
  }
  if (sftp_chmod(sftp, tmp.c_str(), static_cast<mode_t>(mode)) != SSH_OK) {
    return fail("chmod");
  }
  // SFTP v3 rename refuses to replace an existing file: remove the old one first. The old inode
  // stays valid for processes that run it.
  sftp_unlink(sftp, remote_path.c_str());
  if (sftp_rename(sftp, tmp.c_str(), remote_path.c_str()) != SSH_OK) {
    return fail("rename");
  }
  return OkStatus();
}

Status SshSession::UploadBytes(std::string_view data, const std::string& remote_path, int mode) {
  size_t off = 0;
  return UploadImpl(
      [&](std::string& chunk) -> Status {
        size_t n = std::min(kChunk, data.size() - off);
        chunk.assign(data.substr(off, n));
        off += n;
        return OkStatus();
      },
      remote_path, mode);
}

Status SshSession::UploadFile(const std::string& local_path, const std::string& remote_path,
                              int mode) {
  std::ifstream in(local_path, std::ios::binary);
  if (!in) {
    return Error::NotFound("local file not found: " + local_path);
  }
  return UploadImpl(
      [&](std::string& chunk) -> Status {
        chunk.resize(kChunk);
        in.read(chunk.data(), static_cast<std::streamsize>(kChunk));
        chunk.resize(static_cast<size_t>(in.gcount()));
        if (in.bad()) {
          return Error::Internal("cannot read local file " + local_path);
        }
        return OkStatus();
      },
      remote_path, mode);
}

Result<std::string> SshSession::FingerprintOfPublicKey(std::string_view line) {
  std::string s(line);
  auto sp1 = s.find(' ');
  if (sp1 == std::string::npos) {
    return Error::InvalidArgument("not an OpenSSH public key line");
  }
  auto sp2 = s.find(' ', sp1 + 1);
  std::string type = s.substr(0, sp1);
  std::string b64 = s.substr(sp1 + 1, sp2 == std::string::npos ? std::string::npos : sp2 - sp1 - 1);
  while (!b64.empty() && (b64.back() == '\n' || b64.back() == '\r')) {
    b64.pop_back();
  }
  ssh_key key = nullptr;
  if (ssh_pki_import_pubkey_base64(b64.c_str(), ssh_key_type_from_name(type.c_str()), &key) !=
      SSH_OK) {
    return Error::InvalidArgument("not an OpenSSH public key line");
  }
  std::string fp = FingerprintOf(key);
  ssh_key_free(key);
  if (fp.empty()) {
    return Error::Internal("cannot compute key fingerprint");
  }
  return fp;
}

}  // namespace canopy::install
