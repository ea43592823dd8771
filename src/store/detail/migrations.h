// Schema migrations of the store: src/store/migrations/NNNN_name.sql, embedded in the binary at
// build time. Used by the SQLite store (and the PostgreSQL store to come). Immutable data.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace canopy::store::detail {

struct Migration {
  int64_t version = 0;  // NNNN of the file name
  std::string name;     // file name without ".sql", e.g. "0001_init"
  std::string sql;      // one or more statements
};

// Every embedded migration, sorted by version. Versions are unique and positive.
const std::vector<Migration>& EmbeddedMigrations();

}  // namespace canopy::store::detail
