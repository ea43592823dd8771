// SshSession: one authenticated SSH connection (libssh) with host-key pinning, exec and SFTP
// upload. Used by install::Installer to put Canopy components onto instances. Not thread-safe: use
// one session per thread (separate sessions may run in parallel).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "common/result.h"
#include "common/secret.h"
#include "common/shell.h"

namespace canopy::install {

// Where and how to log in. The host key is pinned: the connection is abandoned before
// authentication when the server's key does not have this fingerprint.
struct SshTarget {
  std::string host;
  uint16_t port = 22;
  std::string user;
  SecretString private_key;     // PEM or OpenSSH private key text (no passphrase)
  std::string host_key_sha256;  // "SHA256:<base64>" as printed by `ssh-keygen -lf`
};

struct ExecResult {
  int exit_status = -1;  // -1 when the remote command ended without an exit status (signal)
  std::string out;
  std::string err;
};

struct WaitOptions {
  std::chrono::milliseconds deadline{120'000};        // total time budget for WaitForSsh
  std::chrono::milliseconds attempt_timeout{10'000};  // per connection attempt
  std::chrono::milliseconds initial_backoff{100};
  std::chrono::milliseconds max_backoff{2'000};
  // Cloud images may run sshd before the login key is installed: optionally retry auth denials.
  bool retry_unauthenticated = false;
};

class SshSession {
 public:
  ~SshSession();
  SshSession(const SshSession&) = delete;
  SshSession& operator=(const SshSession&) = delete;

  // One attempt. Errors: kUnavailable (refused, timeout, protocol failure), kPermissionDenied
  // ("host key mismatch"), kUnauthenticated (key refused), kInvalidArgument (bad target/key).
  static Result<std::unique_ptr<SshSession>> Connect(const SshTarget& target,
                                                     std::chrono::milliseconds timeout);

  // Retries Connect with exponential backoff while it fails with kUnavailable (and, if asked,
  // kUnauthenticated) until opts.deadline; returns the last error (kUnavailable when time ran out).
  // Never retries a host key mismatch. `attempts`, when given, receives the number of attempts.
  static Result<std::unique_ptr<SshSession>> WaitForSsh(const SshTarget& target,
                                                        const WaitOptions& opts = {},
                                                        int* attempts = nullptr);

  // Runs `sh -c <script>` (non-interactive, no pty) in the login directory. A non-zero exit
  // status is a value, not an error. Errors: kUnavailable (channel/transport failure),
  // kDeadlineExceeded (the script did not finish within timeout).
  Result<ExecResult> Exec(std::string_view script,
                          std::chrono::milliseconds timeout = std::chrono::milliseconds(60'000));

  // SFTP upload in 64 KiB chunks to "<remote>.tmp-<random>", chmod, then rename over remote_path
  // (so a running binary is never modified in place). Relative paths are relative to the login
  // directory. Errors: kNotFound (local file), kUnavailable (transfer failure).
  Status UploadFile(const std::string& local_path, const std::string& remote_path, int mode);
  Status UploadBytes(std::string_view data, const std::string& remote_path, int mode);

  // The server's host key fingerprint ("SHA256:...") seen during the handshake.
  const std::string& host_key_sha256() const { return host_key_sha256_; }

  // Computes "SHA256:<base64>" of an OpenSSH public key line ("ssh-ed25519 AAAA... comment").
  static Result<std::string> FingerprintOfPublicKey(std::string_view public_key_line);

 private:
  struct Impl;
  explicit SshSession(std::unique_ptr<Impl> impl);
  Status OpenSftp();
  // Writes `read_chunk` output to a temp file and renames it over remote_path.
  template <class ReadChunk>
  Status UploadImpl(ReadChunk&& read_chunk, const std::string& remote_path, int mode);

  std::unique_ptr<Impl> impl_;
  std::string host_key_sha256_;
};

}  // namespace canopy::install
