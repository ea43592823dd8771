#include "common/files.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "common/ids.h"

namespace canopy {

Status WriteFileAtomic(const std::string& path, std::string_view content, mode_t mode) {
  const std::string tmp = path + ".tmp-" + RandomHex(4);
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
  if (fd < 0) {
    return Error::Internal("cannot write " + path + ": " + std::strerror(errno));
  }
  size_t off = 0;
  bool ok = true;
  while (ok && off < content.size()) {
    ssize_t w = ::write(fd, content.data() + off, content.size() - off);
    if (w < 0 && errno == EINTR) continue;
    ok = w > 0;
    if (ok) off += static_cast<size_t>(w);
  }
  ok = ok && ::fchmod(fd, mode) == 0 && ::fsync(fd) == 0;
  ok = (::close(fd) == 0) && ok;
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) {
    ::unlink(tmp.c_str());
    return Error::Internal("cannot write " + path);
  }
  return OkStatus();
}

Result<Json> ReadJsonObjectFile(const std::string& path) {
  std::ifstream f(path);
  if (!f) {
    return Error::NotFound("cannot read " + path);
  }
  std::stringstream ss;
  ss << f.rdbuf();
  auto j = ParseJsonObject(ss.str());
  if (!j) {
    return Error::InvalidArgument(path + " is not a JSON object");
  }
  return std::move(*j);
}

Result<std::string> ReadFileString(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error::NotFound(fmt::format("cannot read {}", path));
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string ReadTrimmedFile(const std::string& path) {
  std::string s = ReadFileString(path).value_or("");
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  return s;
}

}  // namespace canopy
