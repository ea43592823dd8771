#include "cli/config.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "common/json.h"

namespace canopy::cli {

namespace fs = std::filesystem;

EnvLookup ProcessEnv() {
  return [](const std::string& name) -> std::optional<std::string> {
    const char* v = std::getenv(name.c_str());
    if (v == nullptr) {
      return std::nullopt;
    }
    return std::string(v);
  };
}

Result<fs::path> ConfigPath(const EnvLookup& env) {
  std::optional<std::string> xdg = env("XDG_CONFIG_HOME");
  if (xdg && !xdg->empty() && (*xdg)[0] == '/') {
    return fs::path(*xdg) / "canopy" / "config.json";
  }
  std::optional<std::string> home = env("HOME");
  if (!home || home->empty()) {
    // getpwuid_r rather than getpwuid: no shared static buffer.
    std::vector<char> buf(16384);
    passwd pw{};
    passwd* found = nullptr;
    if (getpwuid_r(getuid(), &pw, buf.data(), buf.size(), &found) == 0 && found != nullptr &&
        found->pw_dir != nullptr && found->pw_dir[0] != '\0') {
      home = std::string(found->pw_dir);
    }
  }
  if (!home || home->empty()) {
    return Error::FailedPrecondition(
        "cannot find the configuration directory: set XDG_CONFIG_HOME or HOME");
  }
  return fs::path(*home) / ".config" / "canopy" / "config.json";
}

namespace {

std::string Errno() { return std::strerror(errno); }

Result<std::string> ReadWholeFile(const fs::path& path, bool* missing) {
  *missing = false;
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) {
      *missing = true;
      return std::string();
    }
    return Error::FailedPrecondition(fmt::format("cannot read {}: {}", path.string(), Errno()));
  }
  std::string data;
  char buf[4096];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      std::string msg = fmt::format("cannot read {}: {}", path.string(), Errno());
      close(fd);
      return Error::FailedPrecondition(std::move(msg));
    }
    if (n == 0) {
      break;
    }
    data.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return data;
}

// mkdir -p with mode 0700 for every directory it creates.
Status MakeDirs(const fs::path& dir) {
  fs::path cur;
  for (const auto& part : dir) {
    cur /= part;
    if (cur.empty() || cur == cur.root_path()) {
      continue;
    }
    if (mkdir(cur.c_str(), 0700) != 0 && errno != EEXIST) {
      return Error::FailedPrecondition(
          fmt::format("cannot create directory {}: {}", cur.string(), Errno()));
    }
  }
  struct stat st {};
  if (stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return Error::FailedPrecondition(fmt::format("{} is not a directory", dir.string()));
  }
  return OkStatus();
}

Status WriteAll(int fd, const std::string& data) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = write(fd, data.data() + off, data.size() - off);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      return Error::FailedPrecondition(Errno());
    }
    off += static_cast<size_t>(n);
  }
  return OkStatus();
}

}  // namespace

Result<Config> LoadConfig(const fs::path& path) {
  bool missing = false;
  CANOPY_ASSIGN_OR_RETURN(std::string text, ReadWholeFile(path, &missing));
  Config c;
  if (missing) {
    return c;
  }
  auto bad = [&path]() {
    return Error::InvalidArgument(fmt::format(
        "configuration file {} is malformed; remove it and run canopy login again", path.string()));
  };
  Result<Json> parsed = ParseJsonObject(text);
  OPENSSL_cleanse(text.data(), text.size());
  if (!parsed) {
    return bad();
  }
  const Json& j = *parsed;
  auto field = [&j](const char* name, std::string* out) {
    auto it = j.find(name);
    if (it == j.end() || it->is_null()) {
      return true;
    }
    if (!it->is_string()) {
      return false;
    }
    *out = it->get<std::string>();
    return true;
  };
  std::string token;
  if (!field("root", &c.root) || !field("username", &c.username) || !field("token", &token) ||
      !field("expires_at", &c.expires_at) || !field("ca_pem", &c.ca_pem)) {
    OPENSSL_cleanse(token.data(), token.size());
    return bad();
  }
  c.token = SecretString(std::move(token));
  return c;
}

Status SaveConfig(const fs::path& path, const Config& config) {
  fs::path dir = path.parent_path();
  if (dir.empty()) {
    dir = ".";
  }
  CANOPY_TRY(MakeDirs(dir));
  // The directory holding the token is private even if it existed with a looser mode.
  if (chmod(dir.c_str(), 0700) != 0) {
    return Error::FailedPrecondition(
        fmt::format("cannot set mode 0700 on {}: {}", dir.string(), Errno()));
  }

  Json j = Json::object();
  j["root"] = config.root;
  j["username"] = config.username;
  j["token"] = config.token.Reveal();
  j["expires_at"] = config.expires_at;
  if (!config.ca_pem.empty()) {
    j["ca_pem"] = config.ca_pem;
  }
  std::string data = DumpJson(j, 2);
  data += '\n';

  // mkstemp creates the file with mode 0600, so the token is never readable by others, not even
  // for a moment; rename() then replaces the old file atomically.
  std::string tmpl = (dir / ".config.json.XXXXXX").string();
  int fd = mkstemp(tmpl.data());
  if (fd < 0) {
    OPENSSL_cleanse(data.data(), data.size());
    return Error::FailedPrecondition(
        fmt::format("cannot create a file in {}: {}", dir.string(), Errno()));
  }
  Status st = WriteAll(fd, data);
  OPENSSL_cleanse(data.data(), data.size());
  if (st && fchmod(fd, 0600) != 0) {
    st = Error::FailedPrecondition(Errno());
  }
  if (st && fsync(fd) != 0) {
    st = Error::FailedPrecondition(Errno());
  }
  if (close(fd) != 0 && st) {
    st = Error::FailedPrecondition(Errno());
  }
  if (st && rename(tmpl.c_str(), path.c_str()) != 0) {
    st = Error::FailedPrecondition(Errno());
  }
  if (!st) {
    unlink(tmpl.c_str());
    return Error::FailedPrecondition(
        fmt::format("cannot write {}: {}", path.string(), st.error().message));
  }
  return OkStatus();
}

}  // namespace canopy::cli
