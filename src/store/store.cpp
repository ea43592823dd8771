#include "store/store.h"

#include <filesystem>
#include <string_view>
#include <system_error>

#include "common/log.h"
#include "store/sqlite/sqlite_store.h"

namespace canopy::store {
namespace {

bool StartsWith(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

Result<StorePtr> OpenSqlite(const std::string& path) {
  if (path.empty()) {
    return Error::InvalidArgument("the SQLite store needs a file path");
  }
  std::filesystem::path parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(parent, ec);
    if (ec) {
      SPDLOG_ERROR("Cannot create database directory path={} error={}", parent.string(),
                   ec.message());
      return Error::Internal("cannot create the database directory");
    }
  }
  CANOPY_ASSIGN_OR_RETURN(std::unique_ptr<sqlite::SqliteStore> s, sqlite::SqliteStore::Open(path));
  return StorePtr(std::move(s));
}

}  // namespace

Result<StorePtr> OpenStore(const std::string& url) {
  std::string_view u(url);
  if (StartsWith(u, "postgres://") || StartsWith(u, "postgresql://")) {
    return Error::InvalidArgument("PostgreSQL store is not built yet");
  }
  if (StartsWith(u, "sqlite:")) {
    u.remove_prefix(7);
    if (StartsWith(u, "//")) {
      u.remove_prefix(2);  // sqlite:///abs/path -> /abs/path
    }
    return OpenSqlite(std::string(u));
  }
  // "scheme://..." with any other scheme is a mistake, not a relative path.
  size_t sep = u.find("://");
  if (sep != std::string_view::npos && u.substr(0, sep).find('/') == std::string_view::npos) {
    return Error::InvalidArgument("unsupported store URL: use sqlite:PATH or postgres://...");
  }
  return OpenSqlite(url);
}

}  // namespace canopy::store
