// AddressRegistry: which local-provider instance holds which address on a bridge, host-wide, so
// that providers with different state dirs on one bridge never hand out the same address. Used
// only by LocalProvider. Thread-safe and safe across processes: every change happens under an
// flock on the bridge's lock file (a fresh descriptor per call, so threads exclude each other too).
//
// Layout: <root>/<bridge>/lock and one file per allocated address, named by the address, holding
// its owner {state_dir, instance_id, netns}. The owner's record in its state dir is the truth;
// an entry is only a claim, and a claim whose owner is gone can be taken over (see OwnerGone), so
// entries left by a crash or a deleted state dir never hold an address for good. The root lives
// in /run (tmpfs): after a reboot it is empty and every provider claims its records' addresses
// again when it starts.
#pragma once

#include <cstdint>
#include <functional>
#include <set>
#include <string>

#include "common/result.h"

namespace canopy::providers::local {

struct AddressOwner {
  std::string state_dir;    ///< canonical state dir of the provider that allocated the address
  std::string instance_id;  ///< the instance's id in that state dir
  std::string netns;        ///< the instance's network namespace name
};

class AddressRegistry {
 public:
  static constexpr const char* kDefaultRoot = "/run/canopy/local-addresses";

  AddressRegistry(std::string root, std::string bridge);

  /// The bridge's directory (<root>/<bridge>).
  const std::string& dir() const { return dir_; }

  /// Under the lock: picks the lowest address in [first, last] (host byte order) that `taken`
  /// does not list and no live owner holds, records `owner` for it, and runs `commit(address)`
  /// (which saves the owner's own record) before the lock is released, so nobody sees the entry
  /// without the record behind it. When commit fails the entry is removed again and its error
  /// returned. kProviderError (capacity) when no address is free.
  Result<std::string> Allocate(uint32_t first, uint32_t last, const AddressOwner& owner,
                               const std::set<uint32_t>& taken,
                               const std::function<Status(const std::string&)>& commit);

  /// Records `owner` for `address` unless another owner that is not gone holds it. True when
  /// `owner` holds the address afterwards, false when someone else does.
  Result<bool> Claim(const std::string& address, const AddressOwner& owner);

  /// Removes the entries of `owner` (state dir and instance id), whatever their address.
  Status Release(const AddressOwner& owner);

  /// Removes every entry of `state_dir` and every entry whose owner is gone; removes the bridge's
  /// directory (and the root, and its parent when that is an empty "canopy" folder) when no entry
  /// is left.
  Status ReleaseStateDir(const std::string& state_dir);

  /// Whether the owner of the entry for `address` is gone: its state dir no longer has the
  /// instance's record with this address, and the instance's namespace does not exist either
  /// (a namespace left by a deleted state dir may still use the address on the bridge).
  static bool OwnerGone(const std::string& address, const AddressOwner& owner);

  /// `path` made canonical when it exists, else lexically normal, without a trailing slash: the
  /// form state dirs are compared in.
  static std::string NormalStateDir(const std::string& path);

 private:
  class Lock;
  std::string root_;
  std::string dir_;
};

}  // namespace canopy::providers::local
