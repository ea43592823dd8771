// The machines behind the Compute Engine double's instances: one worker per instance at a time
// brings its local machine in line with what the API asked (create, boot and publish the host
// key, stop, start, delete) and keeps the machine's firewall equal to the firewall rules that
// target the instance's tags (see src/sim/detail/gce_impl.h).
#include <fmt/format.h>
#include <openssl/bio.h>
#include <openssl/pem.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/ids.h"
#include "common/log.h"
#include "providers/aws/key_material.h"
#include "sim/aws_machines.h"
#include "sim/detail/gce_impl.h"

namespace canopy::sim {

namespace fs = std::filesystem;

namespace {

std::string RulesKey(const std::vector<providers::FirewallRule>& rules) {
  std::string key;
  for (const auto& r : rules) {
    key += r.protocol + "/" + std::to_string(r.port);
    for (const auto& c : r.source_cidrs) key += "," + c;
    key += ";";
  }
  return key;
}

// A host key for an instance without a machine: a fresh Ed25519 key's public half.
Result<providers::aws::PublicKeyInfo> GeneratedHostKey() {
  std::unique_ptr<EVP_PKEY, gce::PkeyFree> key(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519"));
  if (!key) return Error::Internal("cannot generate a host key");
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), &BIO_free);
  if (!bio || PEM_write_bio_PKCS8PrivateKey(bio.get(), key.get(), nullptr, nullptr, 0, nullptr,
                                            nullptr) != 1) {
    return Error::Internal("cannot encode a host key");
  }
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return providers::aws::PublicKeyFromPem(
      SecretString(std::string(data, static_cast<size_t>(len))));
}

// "ssh-ed25519 AAAA... comment" -> "ssh-ed25519 AAAA...".
std::string WithoutComment(const std::string& line) {
  size_t first = line.find(' ');
  if (first == std::string::npos) return line;
  size_t second = line.find_first_of(" \n", first + 1);
  return line.substr(0, second);
}

Json OperationError(const std::string& code, const std::string& message) {
  return Json{{"errors", Json::array({{{"code", code}, {"message", message}}})}};
}

}  // namespace

providers::CallContext GceDouble::Impl::LocalCtx() const {
  return providers::CallContext{providers::CredentialSecret(Json{{"type", "local"}}), "local"};
}

void GceDouble::Impl::Kick(const gce::InstancePtr& in) {
  if (in->busy || stopping || in->removed) return;
  in->busy = true;
  workers[in->id] = std::async(std::launch::async, [this, in] { Converge(in); });
}

void GceDouble::Impl::FinishOps(gce::Instance& in, const std::string& reached, const Json& error,
                                int http, const std::string& http_message) {
  for (auto it = in.ops.begin(); it != in.ops.end();) {
    if (!error.is_null() || reached == "*" || it->first == reached) {
      gce::Operation& op = *it->second;
      op.work_done = true;
      if (!error.is_null()) {
        op.error = error;
        op.http_error_status = http;
        op.http_error_message = http_message;
      }
      it = in.ops.erase(it);
    } else {
      ++it;
    }
  }
}

void GceDouble::Impl::FirewallsChanged() {
  ++firewall_version;
  for (const auto& [k, in] : instances) {
    if (in->machine_running && in->keys_published) Kick(in);
  }
}

bool GceDouble::Impl::FirewallsSettled(int64_t version) const {
  for (const auto& [k, in] : instances) {
    if (in->machine_running && in->keys_published && in->firewall_applied < version) return false;
  }
  return true;
}

void GceDouble::Impl::Converge(const gce::InstancePtr& in) {
  enum class Step { kNone, kFail, kCreate, kStart, kBoot, kFirewall, kStop, kSettle, kDelete };
  for (;;) {
    Step step = Step::kNone;
    {
      std::lock_guard lock(mu);
      if (stopping || in->removed) {
        step = Step::kNone;
      } else if (in->desired == "DELETED") {
        step = Step::kDelete;
      } else if (in->machine_id.empty()) {
        step = in->create_error.empty() ? Step::kCreate : Step::kFail;
      } else if (in->desired == "RUNNING") {
        if (!in->machine_running) {
          step = Step::kStart;
        } else if (!in->keys_published) {
          step = Step::kBoot;
        } else if (in->firewall_applied < firewall_version) {
          step = Step::kFirewall;
        }
      } else if (in->machine_running) {
        step = Step::kStop;
      } else if (in->status != "TERMINATED" || !in->ops.empty()) {
        step = Step::kSettle;
      }
      if (step == Step::kNone) {
        // Settled: operations still waiting were overtaken (a stop, then a start before the
        // stop ran); as in GCE, they are done too.
        if (!in->removed) FinishOps(*in, "*");
        if (!in->removed && in->desired == "RUNNING" && in->machine_running) {
          in->status = "RUNNING";  // a stop overtaken by a start never stopped it
        }
        in->busy = false;
        changed.notify_all();
        return;
      }
      if ((step == Step::kCreate || step == Step::kStart) && in->desired == "RUNNING") {
        in->status = "STAGING";  // PROVISIONING (resources) -> STAGING (the machine is made)
      }
    }
    Status st = OkStatus();
    switch (step) {
      case Step::kCreate:
        st = CreateMachine(in);
        break;
      case Step::kStart:
        if (local) st = local->StartInstance(LocalCtx(), in->machine_handle);
        break;
      case Step::kBoot:
        st = BootMachine(in);
        break;
      case Step::kFirewall:
        st = SyncMachineFirewall(in);
        break;
      case Step::kStop:
        st = StopMachine(in);
        break;
      case Step::kDelete:
        st = DeleteMachine(in);
        break;
      default:
        break;
    }
    std::lock_guard lock(mu);
    const std::string now = gce::NowRfc3339(*opts.clock);
    switch (step) {
      case Step::kFail:
        SPDLOG_INFO("Instance fails zone={} name={} reason={}", in->zone, in->name,
                    in->create_error);
        FinishOps(*in, "*", OperationError("CONDITION_NOT_MET", in->create_error), 400,
                  "BAD REQUEST");
        RemoveInstance(*in);
        break;
      case Step::kCreate:
        if (!st) {
          SPDLOG_WARN("Machine create failed zone={} name={} error={}", in->zone, in->name,
                      st.error().message);
          FinishOps(
              *in, "*",
              OperationError("CONDITION_NOT_MET",
                             "canopy-sim: the machine could not be made: " + st.error().message),
              400, "BAD REQUEST");
          RemoveInstance(*in);
          break;
        }
        in->machine_running = true;
        in->last_start = now;
        if (in->desired == "RUNNING") in->status = "RUNNING";
        FinishOps(*in, "RUNNING");
        break;
      case Step::kStart:
        if (!st) {
          SPDLOG_WARN("Machine start failed zone={} name={} error={}", in->zone, in->name,
                      st.error().message);
          in->desired = "TERMINATED";
          in->status = "TERMINATED";
          FinishOps(
              *in, "*",
              OperationError("CONDITION_NOT_MET",
                             "canopy-sim: the machine could not start: " + st.error().message),
              400, "BAD REQUEST");
          break;
        }
        SPDLOG_INFO("Machine started zone={} name={}", in->zone, in->name);
        in->machine_running = true;
        in->last_start = now;
        if (in->desired == "RUNNING") in->status = "RUNNING";
        FinishOps(*in, "RUNNING");
        break;
      case Step::kBoot:
        if (!st) {
          SPDLOG_WARN("Machine boot failed zone={} name={} error={}", in->zone, in->name,
                      st.error().message);
          in->keys_published = true;  // once: the guest attributes stay empty
          in->serial = "canopy-sim: the machine did not boot: " + st.error().message + "\n";
        }
        break;
      case Step::kFirewall:
        if (!st) {
          SPDLOG_WARN("Machine firewall failed zone={} name={} error={}", in->zone, in->name,
                      st.error().message);
          in->firewall_applied = firewall_version;  // no endless retries; logged
        }
        break;
      case Step::kStop:
        if (!st) {
          SPDLOG_WARN("Machine stop failed zone={} name={} error={}", in->zone, in->name,
                      st.error().message);
        }
        SPDLOG_INFO("Machine stopped zone={} name={}", in->zone, in->name);
        in->machine_running = false;
        in->keys_published = false;
        in->serial.clear();
        in->last_stop = now;
        FinishOps(*in, "TERMINATED");  // stopped, even if a start came meanwhile (it runs next)
        [[fallthrough]];
      case Step::kSettle:
        if (in->desired == "TERMINATED") {
          in->status = "TERMINATED";
          used_nat.erase(in->nat_ip);  // an ephemeral external address goes with the stop
          in->nat_ip.clear();
          FinishOps(*in, "*");  // a start overtaken by a stop is done too
        }
        break;
      case Step::kDelete:
        if (!st) {
          SPDLOG_WARN("Machine delete failed zone={} name={} error={}", in->zone, in->name,
                      st.error().message);
        }
        SPDLOG_INFO("Instance deleted zone={} name={}", in->zone, in->name);
        FinishOps(*in, "*");
        RemoveInstance(*in);
        break;
      default:
        break;
    }
    changed.notify_all();
  }
}

Status GceDouble::Impl::CreateMachine(const gce::InstancePtr& in) {
  std::string id, name, ssh_key, image, address;
  {
    std::lock_guard lock(mu);
    id = in->id;
    name = in->name;
    ssh_key = in->ssh_key;
    image = in->blank_image;
    address = in->network_ip;
  }
  if (!local) {
    std::lock_guard lock(mu);
    in->machine_id = "record-" + id;
    return OkStatus();
  }
  const std::string key_name = "gce-" + id;
  CANOPY_TRY(local->ImportKeyPair(LocalCtx(), key_name, ssh_key));
  providers::InstanceSpec spec;
  spec.canopy_id = "gce-" + id;
  spec.idempotency_key = spec.canopy_id;
  spec.name = name;
  spec.instance_type = "local.small";
  spec.image = image;
  spec.disk_gb = 1;
  spec.key_pair = key_name;
  spec.tags = {{"canopy-sim", "gce"}, {"image", image}};
  SPDLOG_INFO("Creating machine zone={} name={} address={} image={}", in->zone, name, address,
              image);
  CANOPY_ASSIGN_OR_RETURN(providers::Instance made,
                          local->CreateInstanceAt(LocalCtx(), spec, address));
  SPDLOG_INFO("Machine created name={} machine={} address={}", name, made.provider_id, address);
  std::lock_guard lock(mu);
  in->machine_id = made.provider_id;
  in->machine_handle = made.handle;
  return OkStatus();
}

Status GceDouble::Impl::BootMachine(const gce::InstancePtr& in) {
  std::string host_key, fingerprint, name, image;
  {
    std::lock_guard lock(mu);
    host_key = in->host_key;
    fingerprint = in->host_key_sha256;
    name = in->name;
    image = in->image_family;
  }
  if (local) {
    CANOPY_ASSIGN_OR_RETURN(
        providers::Instance up,
        local->WaitUntilRunning(LocalCtx(), in->machine_handle, std::chrono::seconds(120)));
    std::ifstream f(fs::path(opts.local.state_dir) / "instances" / up.provider_id /
                    "ssh_host_ed25519_key.pub");
    std::stringstream ss;
    ss << f.rdbuf();
    host_key = WithoutComment(ss.str());
    fingerprint = up.host_key_sha256;
    if (host_key.rfind("ssh-ed25519 ", 0) != 0 || fingerprint.empty()) {
      return Error::Internal("the machine reports no host key");
    }
  } else if (host_key.empty()) {
    CANOPY_ASSIGN_OR_RETURN(auto generated, GeneratedHostKey());
    host_key = WithoutComment(generated.public_key);
    fingerprint = generated.fingerprint;
  }
  CANOPY_TRY(SyncMachineFirewall(in));
  std::lock_guard lock(mu);
  if (!in->machine_running) return OkStatus();
  in->host_key = host_key;
  in->host_key_sha256 = fingerprint;
  in->keys_published = true;
  in->serial = ConsoleWithHostKey(name, image, fingerprint) +
               "-----BEGIN SSH HOST KEY KEYS-----\n" + host_key + " root@" + name +
               "\n-----END SSH HOST KEY KEYS-----\n";
  SPDLOG_INFO("Machine up zone={} name={} host_key={}", in->zone, name, fingerprint);
  return OkStatus();
}

Status GceDouble::Impl::StopMachine(const gce::InstancePtr& in) {
  if (!local) return OkStatus();
  return local->StopInstance(LocalCtx(), in->machine_handle);
}

Status GceDouble::Impl::DeleteMachine(const gce::InstancePtr& in) {
  std::string machine, firewall;
  {
    std::lock_guard lock(mu);
    machine = in->machine_id;
    firewall = in->local_firewall;
  }
  if (!local || machine.empty()) return OkStatus();
  CANOPY_TRY(local->TerminateInstance(LocalCtx(), in->machine_handle));
  if (!firewall.empty()) (void)local->DeleteFirewall(LocalCtx(), firewall);
  return OkStatus();
}

// One local firewall per machine and rule set ("gcesim-<instance id>-<hash>"): when the rules
// change, the new one is attached, the old one detached and deleted.
Status GceDouble::Impl::SyncMachineFirewall(const gce::InstancePtr& in) {
  std::vector<providers::FirewallRule> rules;
  int64_t version = 0;
  std::string old, old_key, id;
  {
    std::lock_guard lock(mu);
    rules = RulesFor(*in);
    version = firewall_version;
    old = in->local_firewall;
    old_key = in->firewall_key;
    id = in->id;
  }
  const std::string key = RulesKey(rules);
  if (!local || (key == old_key && !old.empty())) {
    std::lock_guard lock(mu);
    in->firewall_key = key;
    in->firewall_applied = version;
    return OkStatus();
  }
  const std::string canopy_id = "gcesim-" + id + "-" + Sha256Hex(key).substr(0, 12);
  providers::FirewallSpec spec{canopy_id, canopy_id, rules, {{"canopy-sim", "gce"}}};
  CANOPY_ASSIGN_OR_RETURN(providers::Firewall fw, local->CreateFirewall(LocalCtx(), spec));
  CANOPY_TRY(local->AttachFirewall(LocalCtx(), in->machine_handle, fw.id));
  if (!old.empty() && old != fw.id) {
    CANOPY_TRY(local->DetachFirewall(LocalCtx(), in->machine_handle, old));
    (void)local->DeleteFirewall(LocalCtx(), old);
  }
  SPDLOG_INFO("Machine firewall instance={} rules={}", in->name, key.empty() ? "none" : key);
  std::lock_guard lock(mu);
  in->local_firewall = fw.id;
  in->firewall_key = key;
  in->firewall_applied = version;
  return OkStatus();
}

}  // namespace canopy::sim
