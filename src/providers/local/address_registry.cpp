#include "providers/local/address_registry.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>
#include <utility>

#include "common/files.h"
#include "common/json.h"
#include "common/log.h"
#include "providers/provider.h"

namespace canopy::providers::local {

namespace fs = std::filesystem;

namespace {

constexpr const char* kLockFile = "lock";

std::optional<uint32_t> ParseIp4(const std::string& s) {
  in_addr a{};
  if (inet_pton(AF_INET, s.c_str(), &a) != 1) {
    return std::nullopt;
  }
  return ntohl(a.s_addr);
}

std::string Ip4(uint32_t host_order) {
  in_addr a{htonl(host_order)};
  char buf[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &a, buf, sizeof(buf));
  return buf;
}

// A single path component of letters, digits, '.', '_', '-' that is not "." or "..".
bool SafeComponent(const std::string& s) {
  if (s.empty() || s.size() > 255 || s[0] == '.') {
    return false;
  }
  return std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
  });
}

bool SameOwner(const AddressOwner& a, const AddressOwner& b) {
  return a.state_dir == b.state_dir && a.instance_id == b.instance_id;
}

Status WriteEntry(const std::string& dir, const std::string& address, const AddressOwner& owner) {
  Json j{
      {"state_dir", owner.state_dir}, {"instance_id", owner.instance_id}, {"netns", owner.netns}};
  // Readable by all: it names no secret and helps whoever debugs a clash on the bridge.
  return WriteFileAtomic(dir + "/" + address, DumpJson(j, 2), 0644);
}

// The owner written in an entry file; nullopt when unreadable or malformed (such an entry holds
// nothing: entries are written whole, so only tampering makes one).
std::optional<AddressOwner> ReadEntry(const fs::path& p) {
  auto j = ReadJsonObjectFile(p.string());
  if (!j) {
    return std::nullopt;
  }
  AddressOwner o;
  o.state_dir = j->value("state_dir", "");
  o.instance_id = j->value("instance_id", "");
  o.netns = j->value("netns", "");
  if (o.state_dir.empty() || o.state_dir[0] != '/' || !SafeComponent(o.instance_id)) {
    return std::nullopt;
  }
  return o;
}

struct Entry {
  std::string address;
  fs::path path;
  std::optional<AddressOwner> owner;
};

// Every entry of the bridge's directory by address; leftovers of interrupted writes are removed
// (the caller holds the lock, so no write is in progress).
std::map<uint32_t, Entry> ReadEntries(const std::string& dir) {
  std::map<uint32_t, Entry> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name == kLockFile) {
      continue;
    }
    std::optional<uint32_t> a = ParseIp4(name);
    if (!a) {
      if (name.find(".tmp-") != std::string::npos) {
        fs::remove(e.path(), ec);
      }
      continue;
    }
    out[*a] = Entry{name, e.path(), ReadEntry(e.path())};
  }
  return out;
}

}  // namespace

// The exclusive flock on <dir>/lock. The directory may be removed by whoever holds the lock
// (ReleaseStateDir when no entry is left); a waiter then holds a lock on a removed file, which
// Acquire notices (the path no longer names the locked file) and retries on the new one.
class AddressRegistry::Lock {
 public:
  static Result<Lock> Acquire(const std::string& dir) {
    const std::string path = dir + "/" + kLockFile;
    for (int attempt = 0; attempt < 100; ++attempt) {
      std::error_code ec;
      fs::create_directories(dir, ec);
      int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
      if (fd < 0) {
        if (errno == ENOENT) {
          continue;  // the directory went between create_directories and open
        }
        return Error::Internal("cannot open " + path + ": " + std::strerror(errno));
      }
      while (flock(fd, LOCK_EX) != 0) {
        if (errno != EINTR) {
          int err = errno;
          close(fd);
          return Error::Internal("cannot lock " + path + ": " + std::strerror(err));
        }
      }
      struct stat held {};
      struct stat named {};
      if (fstat(fd, &held) == 0 && stat(path.c_str(), &named) == 0 && held.st_dev == named.st_dev &&
          held.st_ino == named.st_ino) {
        return Lock(fd);
      }
      close(fd);
    }
    return Error::Internal("cannot lock " + path + ": it keeps being removed");
  }

  Lock(Lock&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Lock(const Lock&) = delete;
  Lock& operator=(const Lock&) = delete;
  ~Lock() {
    if (fd_ >= 0) {
      close(fd_);
    }
  }

 private:
  explicit Lock(int fd) : fd_(fd) {}
  int fd_;
};

AddressRegistry::AddressRegistry(std::string root, std::string bridge)
    : root_(std::move(root)), dir_(root_ + "/" + bridge) {}

std::string AddressRegistry::NormalStateDir(const std::string& path) {
  std::error_code ec;
  fs::path p = fs::canonical(path, ec);
  if (ec) {
    p = fs::path(path).lexically_normal();
  }
  std::string s = p.string();
  while (s.size() > 1 && s.back() == '/') {
    s.pop_back();
  }
  return s;
}

bool AddressRegistry::OwnerGone(const std::string& address, const AddressOwner& owner) {
  auto rec = ReadJsonObjectFile(
      (fs::path(owner.state_dir) / "instances" / owner.instance_id / "instance.json").string());
  if (rec) {
    // The record is the truth: an instance given another address since no longer holds this one.
    return rec->value("address", "") != address;
  }
  std::error_code ec;
  return !(SafeComponent(owner.netns) && fs::exists("/run/netns/" + owner.netns, ec));
}

Result<std::string> AddressRegistry::Allocate(
    uint32_t first, uint32_t last, const AddressOwner& owner, const std::set<uint32_t>& taken,
    const std::function<Status(const std::string&)>& commit) {
  CANOPY_ASSIGN_OR_RETURN(Lock lock, Lock::Acquire(dir_));
  std::map<uint32_t, Entry> entries = ReadEntries(dir_);
  for (uint64_t a = first; a <= last; ++a) {
    const auto addr = static_cast<uint32_t>(a);
    if (taken.count(addr) > 0) {
      continue;
    }
    const std::string s = Ip4(addr);
    auto it = entries.find(addr);
    if (it != entries.end()) {
      if (it->second.owner && !OwnerGone(s, *it->second.owner)) {
        continue;
      }
      SPDLOG_INFO(
          "Reclaiming local address of a gone owner address={} bridge_dir={} owner={}", s, dir_,
          it->second.owner ? it->second.owner->state_dir + "/" + it->second.owner->instance_id
                           : std::string("unreadable"));
    }
    CANOPY_TRY(WriteEntry(dir_, s, owner));
    Status committed = commit(s);
    if (!committed) {
      std::error_code ec;
      fs::remove(fs::path(dir_) / s, ec);
      return std::move(committed).error();
    }
    return s;
  }
  return MakeProviderError(ProviderErrorKind::kCapacity,
                           "no free address from " + Ip4(first) + " to " + Ip4(last));
}

Result<bool> AddressRegistry::Claim(const std::string& address, const AddressOwner& owner) {
  if (!ParseIp4(address)) {
    return Error::InvalidArgument("not an IPv4 address: " + address);
  }
  CANOPY_ASSIGN_OR_RETURN(Lock lock, Lock::Acquire(dir_));
  fs::path p = fs::path(dir_) / address;
  std::error_code ec;
  if (fs::exists(p, ec)) {
    std::optional<AddressOwner> held = ReadEntry(p);
    if (held && SameOwner(*held, owner)) {
      return true;
    }
    if (held && !OwnerGone(address, *held)) {
      return false;
    }
  }
  CANOPY_TRY(WriteEntry(dir_, address, owner));
  return true;
}

Status AddressRegistry::Release(const AddressOwner& owner) {
  CANOPY_ASSIGN_OR_RETURN(Lock lock, Lock::Acquire(dir_));
  for (const auto& [a, e] : ReadEntries(dir_)) {
    if (e.owner && SameOwner(*e.owner, owner)) {
      std::error_code ec;
      fs::remove(e.path, ec);
    }
  }
  return OkStatus();
}

Status AddressRegistry::ReleaseStateDir(const std::string& state_dir) {
  std::error_code ec;
  if (!fs::exists(dir_, ec)) {
    return OkStatus();
  }
  CANOPY_ASSIGN_OR_RETURN(Lock lock, Lock::Acquire(dir_));
  size_t left = 0;
  for (const auto& [a, e] : ReadEntries(dir_)) {
    if (!e.owner || e.owner->state_dir == state_dir || OwnerGone(e.address, *e.owner)) {
      fs::remove(e.path, ec);
    } else {
      ++left;
    }
  }
  if (left == 0) {
    // Still under the lock: a waiter finds its lock file gone and starts over (Lock::Acquire).
    fs::remove(fs::path(dir_) / kLockFile, ec);
    fs::remove(dir_, ec);
    // The folders above go too once empty (remove fails on a folder that is not).
    fs::remove(root_, ec);
    if (fs::path(root_).parent_path().filename() == "canopy") {
      fs::remove(fs::path(root_).parent_path(), ec);
    }
  }
  return OkStatus();
}

}  // namespace canopy::providers::local
