// Result<T>: a value or an Error, with std::expected's member names. Status = Result<void>.
// Expected failures travel as Results, never as exceptions. Thread-compatible value type.
#pragma once

#include <cstdlib>
#include <optional>
#include <type_traits>
#include <utility>
#include <variant>

#include "common/error.h"

namespace canopy {

// Wraps an Error so that `return Unexpected(err);` works like std::unexpected.
struct Unexpected {
  Error error;
  explicit Unexpected(Error e) : error(std::move(e)) {}
};

template <class T>
class [[nodiscard]] Result {
 public:
  using value_type = T;
  Result() requires std::is_default_constructible_v<T> : v_(std::in_place_index<0>) {}
  Result(const T& v) : v_(std::in_place_index<0>, v) {}        // NOLINT
  Result(T&& v) : v_(std::in_place_index<0>, std::move(v)) {}  // NOLINT
  template <class U>
  requires(std::is_constructible_v<T, U&&> && !std::is_same_v<std::decay_t<U>, Result> &&
           !std::is_same_v<std::decay_t<U>, Error> && !std::is_same_v<std::decay_t<U>, Unexpected>)
      Result(U&& u)
      : v_(std::in_place_index<0>, std::forward<U>(u)) {}                   // NOLINT
  Result(Error e) : v_(std::in_place_index<1>, std::move(e)) {}             // NOLINT
  Result(Unexpected u) : v_(std::in_place_index<1>, std::move(u.error)) {}  // NOLINT

  bool has_value() const { return v_.index() == 0; }
  explicit operator bool() const { return has_value(); }

  T& value() & {
    Check();
    return std::get<0>(v_);
  }
  const T& value() const& {
    Check();
    return std::get<0>(v_);
  }
  T&& value() && {
    Check();
    return std::get<0>(std::move(v_));
  }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  template <class U>
  T value_or(U&& other) const& {
    return has_value() ? std::get<0>(v_) : T(std::forward<U>(other));
  }

  const Error& error() const& { return std::get<1>(v_); }
  Error&& error() && { return std::get<1>(std::move(v_)); }

 private:
  void Check() const {
    if (!has_value()) std::abort();  // programmer error: value() on an error
  }
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  using value_type = void;
  Result() = default;
  Result(Error e) : err_(std::move(e)) {}             // NOLINT
  Result(Unexpected u) : err_(std::move(u.error)) {}  // NOLINT
  bool has_value() const { return !err_.has_value(); }
  explicit operator bool() const { return has_value(); }
  void value() const {
    if (err_) std::abort();
  }
  const Error& error() const& { return *err_; }
  Error&& error() && { return std::move(*err_); }

 private:
  std::optional<Error> err_;
};

using Status = Result<void>;

inline Status OkStatus() { return {}; }

}  // namespace canopy

#define CANOPY_CONCAT_INNER_(a, b) a##b
#define CANOPY_CONCAT_(a, b) CANOPY_CONCAT_INNER_(a, b)

// CANOPY_TRY(expr): return the error of a Result/Status expression from the enclosing function.
#define CANOPY_TRY(expr)                                                               \
  do {                                                                                 \
    auto&& canopy_try_r_ = (expr);                                                     \
    if (!canopy_try_r_) return ::canopy::Unexpected(std::move(canopy_try_r_).error()); \
  } while (0)

// CANOPY_ASSIGN_OR_RETURN(lhs, expr): `lhs = value` or return the error.
#define CANOPY_ASSIGN_OR_RETURN(lhs, expr) \
  CANOPY_ASSIGN_OR_RETURN_IMPL_(CANOPY_CONCAT_(canopy_r_, __LINE__), lhs, expr)
#define CANOPY_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr)            \
  auto tmp = (expr);                                             \
  if (!tmp) return ::canopy::Unexpected(std::move(tmp).error()); \
  lhs = std::move(tmp).value()

// CANOPY_CHECK(cond): abort on programmer errors only (never on input or environment failures).
#define CANOPY_CHECK(cond)                                     \
  do {                                                         \
    if (!(cond)) {                                             \
      ::canopy::detail_check::Fail(#cond, __FILE__, __LINE__); \
    }                                                          \
  } while (0)

namespace canopy::detail_check {
[[noreturn]] void Fail(const char* cond, const char* file, int line);
}
