#include "auth/detail/private_file.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <openssl/crypto.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>

#include "common/ids.h"

namespace canopy::auth::detail {
namespace {

// Closes a file descriptor on scope exit.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  // Closes now and reports the result (close can report a delayed write error).
  int Close() {
    int rc = ::close(fd_);
    fd_ = -1;
    return rc;
  }

 private:
  int fd_;
};

Error Fail(std::string_view what, const std::string& path, std::string_view action, int err) {
  return Error::FailedPrecondition(
      fmt::format("{} file {}: {}: {}", what, path, action, std::strerror(err)));
}

std::string DirOf(const std::string& path) {
  std::string dir = std::filesystem::path(path).parent_path().string();
  return dir.empty() ? std::string(".") : dir;
}

bool WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

// Best effort: makes the new directory entry durable. Failure here does not lose the key, which
// is already fsynced; at worst a crash right now leaves no file and a new key is made next start.
void SyncDir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    (void)::fsync(fd);
    ::close(fd);
  }
}

}  // namespace

Result<std::optional<SecretString>> ReadPrivateFile(const std::string& path, size_t max_bytes,
                                                    std::string_view what) {
  // O_NONBLOCK: opening a FIFO planted at the path must not hang start-up; S_ISREG rejects it.
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
  if (fd.get() < 0) {
    if (errno == ENOENT) return std::optional<SecretString>();
    return Fail(what, path, "cannot open", errno);
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return Fail(what, path, "cannot stat", errno);
  if (!S_ISREG(st.st_mode)) {
    return Error::FailedPrecondition(fmt::format("{} file {} is not a regular file", what, path));
  }
  if ((st.st_mode & 077) != 0) {
    return Error::FailedPrecondition(
        fmt::format("{} file {} is accessible by group or others (mode {:04o}); run: chmod 600 {}",
                    what, path, st.st_mode & 07777, path));
  }
  if (static_cast<uint64_t>(st.st_size) > max_bytes) {
    return Error::FailedPrecondition(fmt::format("{} file {} is too large", what, path));
  }
  std::string buf(max_bytes + 1, '\0');
  size_t len = 0;
  while (len < buf.size()) {
    ssize_t n = ::read(fd.get(), buf.data() + len, buf.size() - len);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      OPENSSL_cleanse(buf.data(), buf.size());
      return Fail(what, path, "cannot read", err);
    }
    if (n == 0) break;
    len += static_cast<size_t>(n);
  }
  if (len > max_bytes) {  // grew between fstat and read
    OPENSSL_cleanse(buf.data(), buf.size());
    return Error::FailedPrecondition(fmt::format("{} file {} is too large", what, path));
  }
  SecretString out(std::string(buf.data(), len));
  OPENSSL_cleanse(buf.data(), buf.size());
  return std::optional<SecretString>(std::move(out));
}

Result<bool> CreatePrivateFile(const std::string& path, const SecretString& content,
                               std::string_view what) {
  const std::string tmp = fmt::format("{}.tmp-{}", path, RandomHex(8));
  // O_EXCL + 0600 from the first instant: the file is never readable by anyone else, even while
  // being written. O_NOFOLLOW: never write through a symlink planted at the temporary name.
  Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (fd.get() < 0) return Fail(what, path, "cannot create", errno);
  auto fail_and_unlink = [&](std::string_view action, int err) {
    ::unlink(tmp.c_str());
    return Fail(what, path, action, err);
  };
  // The umask may have removed bits; the mode must be exactly 0600 so that we can read it back.
  if (::fchmod(fd.get(), 0600) != 0) return fail_and_unlink("cannot set mode", errno);
  if (!WriteAll(fd.get(), content.Reveal())) return fail_and_unlink("cannot write", errno);
  if (::fsync(fd.get()) != 0) return fail_and_unlink("cannot sync", errno);
  if (fd.Close() != 0) return fail_and_unlink("cannot write", errno);

  // Move into place without ever replacing an existing key: two processes starting at once must
  // end up with the same key, not each with its own.
  bool existed = false;
  if (::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, path.c_str(), RENAME_NOREPLACE) != 0) {
    int err = errno;
    if (err == EEXIST) {
      existed = true;
    } else if (err == EINVAL || err == ENOSYS || err == ENOTSUP) {
      // The file system lacks RENAME_NOREPLACE: link() is atomic and no-clobber too.
      if (::link(tmp.c_str(), path.c_str()) != 0) {
        if (errno != EEXIST) return fail_and_unlink("cannot move into place", errno);
        existed = true;
      }
    } else {
      return fail_and_unlink("cannot move into place", err);
    }
    ::unlink(tmp.c_str());
  }
  if (!existed) SyncDir(DirOf(path));
  return !existed;
}

Result<SecretString> LoadOrCreatePrivateFile(const std::string& path, size_t max_bytes,
                                             std::string_view what,
                                             const std::function<Result<SecretString>()>& generate,
                                             bool* created) {
  if (created != nullptr) *created = false;
  // Two rounds cover losing the creation race once; losing it again means the file vanished
  // right after another process created it, which is not a state we try to repair.
  for (int attempt = 0; attempt < 2; ++attempt) {
    CANOPY_ASSIGN_OR_RETURN(std::optional<SecretString> existing,
                            ReadPrivateFile(path, max_bytes, what));
    if (existing) return std::move(*existing);
    CANOPY_ASSIGN_OR_RETURN(SecretString fresh, generate());
    CANOPY_ASSIGN_OR_RETURN(bool made, CreatePrivateFile(path, fresh, what));
    if (made) {
      if (created != nullptr) *created = true;
      return fresh;
    }
  }
  return Error::FailedPrecondition(
      fmt::format("{} file {} could not be created or read", what, path));
}

}  // namespace canopy::auth::detail
