// Secret<T>: holds a credential, key or token. Printing or formatting it yields "<redacted>";
// the value is reachable only through Reveal(). Memory is wiped on destruction for strings.
// Thread-compatible.
#pragma once

#include <fmt/format.h>
#include <openssl/crypto.h>

#include <ostream>
#include <string>
#include <utility>

namespace canopy {

template <class T>
class Secret {
 public:
  Secret() = default;
  explicit Secret(T v) : v_(std::move(v)) {}
  Secret(const Secret&) = default;
  Secret(Secret&&) noexcept = default;
  Secret& operator=(const Secret&) = default;
  Secret& operator=(Secret&&) noexcept = default;
  ~Secret() {
    if constexpr (std::is_same_v<T, std::string>) {
      if (!v_.empty()) OPENSSL_cleanse(v_.data(), v_.size());
    }
  }
  const T& Reveal() const { return v_; }
  bool operator==(const Secret& o) const { return v_ == o.v_; }

 private:
  T v_{};
};

using SecretString = Secret<std::string>;

template <class T>
std::ostream& operator<<(std::ostream& os, const Secret<T>&) {
  return os << "<redacted>";
}

}  // namespace canopy

template <class T>
struct fmt::formatter<canopy::Secret<T>> : fmt::formatter<std::string_view> {
  template <class Ctx>
  auto format(const canopy::Secret<T>&, Ctx& ctx) const {
    return fmt::formatter<std::string_view>::format("<redacted>", ctx);
  }
};
