#include "store/detail/migrations.h"

#include <algorithm>
#include <charconv>
#include <string_view>

#include "common/result.h"
#include "store/migrations_sql.gen.h"

namespace canopy::store::detail {
namespace {

std::vector<Migration> Load() {
  std::vector<Migration> out;
  for (const auto& f : generated::kMigrationFiles) {
    std::string_view file(f.file_name);
    // The build step only accepts names like NNNN_name.sql.
    Migration m;
    auto [ptr, ec] = std::from_chars(file.data(), file.data() + 4, m.version);
    CANOPY_CHECK(ec == std::errc() && ptr == file.data() + 4 && m.version > 0);
    m.name = std::string(file.substr(0, file.size() - 4));
    m.sql = f.sql;
    out.push_back(std::move(m));
  }
  std::sort(out.begin(), out.end(),
            [](const Migration& a, const Migration& b) { return a.version < b.version; });
  for (size_t i = 1; i < out.size(); ++i) {
    CANOPY_CHECK(out[i - 1].version != out[i].version);  // two files with one number
  }
  return out;
}

}  // namespace

const std::vector<Migration>& EmbeddedMigrations() {
  static const std::vector<Migration> kMigrations = Load();
  return kMigrations;
}

}  // namespace canopy::store::detail
