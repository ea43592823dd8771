#include "control/cluster_tier.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace canopy::control {
namespace {

constexpr std::string_view kClusterTokenPrefix = "cct_";
constexpr std::string_view kClusterKeyPrefix = "ck_";
constexpr size_t kMaxCommandsPerReply = 50;

Error NotFoundAs(Error e, const char* message) {
  if (e.code == ErrorCode::kNotFound) return Error::NotFound(message);
  return e;
}

}  // namespace

core::Cluster NewClusterRow(IdGenerator& ids, const Clock& clock, const std::string& name,
                            core::ClusterKind kind, core::ClusterState state,
                            const std::string& user_id) {
  core::Cluster c;
  c.id = ids.NewId("cls");
  c.name = name;
  c.kind = kind;
  c.state = state;
  c.created_by = user_id;
  c.created_at = c.updated_at = clock.Now();
  return c;
}

ClusterTier::ClusterTier(store::Store& store, ClockPtr clock, IdGeneratorPtr ids,
                         const auth::SecretBox& secrets, LinkHub& hub, ClusterCommands& commands,
                         ServiceBoard& board, TierOptions opts, TierCa* ca)
    : store_(store),
      clock_(std::move(clock)),
      ids_(std::move(ids)),
      secrets_(secrets),
      hub_(hub),
      commands_(commands),
      board_(board),
      opts_(opts),
      ca_(ca) {}

Result<ClusterTokenGrant> ClusterTier::CreateToken(const std::string& cluster_id,
                                                   std::chrono::seconds ttl,
                                                   const std::string& created_by) {
  if (ttl.count() <= 0) ttl = opts_.cluster_token_ttl;
  ClusterTokenGrant g;
  g.token = std::string(kClusterTokenPrefix) + RandomToken(32);
  g.cluster_id = cluster_id;
  core::ClusterToken t;
  t.id = ids_->NewId("ctk");
  t.cluster_id = cluster_id;
  t.token_hash = Sha256Hex(g.token);
  t.created_at = clock_->Now();
  t.expires_at = g.expires_at = t.created_at + ttl;
  t.created_by = created_by;
  auto st = store_.cluster_tokens().Create(t);
  if (!st) return NotFoundAs(std::move(st).error(), "cluster not found");
  SPDLOG_INFO("Created cluster token cluster={} token_id={} by={}", cluster_id, t.id, created_by);
  return g;
}

Result<ClusterTokenGrant> ClusterTier::CreateEdgeCluster(const std::string& name,
                                                         std::chrono::seconds ttl,
                                                         const std::string& user_id) {
  core::Cluster c = NewClusterRow(*ids_, *clock_, name, core::ClusterKind::kEdge,
                                  core::ClusterState::kPairing, user_id);
  Result<ClusterTokenGrant> grant = Error::Internal("not run");
  CANOPY_TRY(store_.Transaction([&](store::Store& tx) -> Status {
    CANOPY_TRY(tx.clusters().Create(c));
    grant = CreateToken(c.id, ttl, user_id);
    if (!grant) return grant.error();
    return OkStatus();
  }));
  SPDLOG_INFO("Created edge cluster cluster={} name={} by={}", c.id, c.name, user_id);
  return grant;
}

Result<PairResult> ClusterTier::Pair(const std::string& token, const std::string& url,
                                     const std::string& version, const ClusterCsrs& csrs) {
  if (ca_ != nullptr && !csrs.csr.empty()) {
    CANOPY_TRY(net::pki::ReadCsr(csrs.csr));  // a bad CSR must not use the token up
  }
  if (ca_ != nullptr && !csrs.node_ca_csr.empty()) CANOPY_TRY(net::pki::ReadCsr(csrs.node_ca_csr));
  std::string key;
  ClusterCerts certs;
  core::Cluster cluster;
  TimePoint now = clock_->Now();
  CANOPY_TRY(store_.Transaction([&](store::Store& tx) -> Status {
    CANOPY_ASSIGN_OR_RETURN(core::ClusterToken t,
                            tx.cluster_tokens().Consume(Sha256Hex(token), now));
    auto c = tx.clusters().Get(t.cluster_id);
    if (!c) return NotFoundAs(std::move(c).error(), "cluster not found");
    if (c->state == core::ClusterState::kDeleting) {
      return Error::Conflict("cluster is DELETING and cannot pair");
    }
    // A new key every time: pairing again (its data dir was lost, or it was re-installed)
    // retires whatever key the old installation had.
    if (!c->key_ciphertext.empty()) {
      SPDLOG_INFO("Cluster pairs again; its key is replaced cluster={}", c->id);
    }
    key = std::string(kClusterKeyPrefix) + RandomToken(32);
    CANOPY_ASSIGN_OR_RETURN(c->key_ciphertext, secrets_.Seal(SecretString(key), c->id));
    if (ca_ != nullptr && !csrs.csr.empty()) {
      CANOPY_ASSIGN_OR_RETURN(certs, ca_->IssueCluster(c->id, csrs.csr, csrs.node_ca_csr, url));
    }
    c->state = core::ClusterState::kActive;
    c->cluster_url = url;
    c->software_version = version;
    c->paired_at = now;
    c->last_seen = now;
    c->link_interval_seconds = opts_.link_interval.count();
    c->updated_at = now;
    CANOPY_TRY(tx.clusters().Update(*c));
    cluster = std::move(*c);
    return OkStatus();
  }));
  SPDLOG_INFO("Cluster paired cluster={} name={} url={}", cluster.id, cluster.name,
              cluster.cluster_url);
  return PairResult{cluster.id, key, opts_.link_interval.count(), std::move(certs),
                    ca_ != nullptr ? ca_->ca_pem() : std::string()};
}

Result<core::Cluster> ClusterTier::Authenticate(const std::string& cluster_id,
                                                const std::string& key) {
  if (key.empty()) return Error::Unauthenticated("missing cluster key");
  auto got = store_.clusters().Get(cluster_id);
  if (!got) return NotFoundAs(std::move(got).error(), "cluster not found");
  core::Cluster c = std::move(*got);
  if (c.key_ciphertext.empty()) return Error::Unauthenticated("cluster has not paired");
  CANOPY_ASSIGN_OR_RETURN(SecretString stored, secrets_.Open(c.key_ciphertext, c.id));
  if (!ConstantTimeEquals(key, stored.Reveal())) return Error::Unauthenticated("wrong cluster key");
  return c;
}

Result<LinkReply> ClusterTier::Reply(const std::string& cluster_id, const Json& acked,
                                     int64_t interval) {
  CANOPY_ASSIGN_OR_RETURN(auto pending,
                          store_.cluster_commands().ListPending(cluster_id, kMaxCommandsPerReply));
  std::vector<std::string> ids;
  for (const auto& c : pending) ids.push_back(c.id);
  if (!ids.empty()) {
    auto st = store_.cluster_commands().MarkDelivered(ids, clock_->Now());
    if (!st) {
      SPDLOG_WARN("Cannot count command delivery cluster={} error={}", cluster_id,
                  st.error().ToString());
    }
  }
  for (auto& cmd : pending) {
    if (!cmd.args.is_object() || !cmd.args.contains("secret_env_sealed")) continue;
    // A service's secret values, sealed at rest under the service id: opened only for the
    // cluster that runs the job, merged into the job's environment.
    std::string sealed;
    std::string service_id = cmd.args.value("service_id", "");
    auto opened = Base64Decode(cmd.args["secret_env_sealed"].get<std::string>(), &sealed)
                      ? secrets_.Open(sealed, service_id)
                      : Result<SecretString>(Error::Internal("corrupt"));
    cmd.args.erase("secret_env_sealed");
    auto values = opened ? ParseJsonObject(opened->Reveal()) : Result<Json>(opened.error());
    if (!values) {
      SPDLOG_ERROR("Cannot open a service's secret values service={} command={}", service_id,
                   cmd.id);
      continue;
    }
    if (!cmd.args["env"].is_object()) cmd.args["env"] = Json::object();
    for (const auto& [k, v] : values->items()) cmd.args["env"][k] = v;
  }
  return LinkReply{std::move(pending), acked, interval, {}};
}

void ClusterTier::Link(const core::Cluster& c, LinkReport report, std::chrono::seconds wait,
                       LinkDone done) {
  auto acked = commands_.ApplyAcks(c.id, report.acks);
  if (!acked) return done(acked.error());
  if (c.state == core::ClusterState::kDeleting) {
    return done(Error::Conflict("cluster is DELETING"));
  }
  ClusterCerts certs;
  if (!report.csrs.empty()) {
    if (ca_ == nullptr) return done(Error::FailedPrecondition("this root issues no certificates"));
    if (report.csrs.csr.empty()) return done(Error::InvalidArgument("field 'csr' is missing"));
    auto issued = ca_->IssueCluster(c.id, report.csrs.csr, report.csrs.node_ca_csr,
                                    report.url.value_or(c.cluster_url));
    if (!issued) return done(issued.error());
    certs = std::move(*issued);
    wait = std::chrono::seconds(0);  // the cluster gets its renewed certificate at once
    SPDLOG_INFO("Cluster certificate renewed cluster={}", c.id);
  }
  store::ClusterLinkRecord rec;
  rec.url = report.url.value_or(c.cluster_url);
  rec.software_version = report.version.value_or(c.software_version);
  rec.link_interval_seconds = report.link_interval_seconds.value_or(
      c.link_interval_seconds > 0 ? c.link_interval_seconds : opts_.link_interval.count());
  rec.nodes = std::move(report.nodes);
  rec.resources = std::move(report.resources);
  auto recorded = store_.clusters().RecordLink(c.id, rec, clock_->Now());
  if (!recorded) return done(recorded.error());
  if (c.state == core::ClusterState::kOffline && recorded->state == core::ClusterState::kActive) {
    SPDLOG_INFO("Cluster back online cluster={}", c.id);
  }
  if (report.jobs) board_.RecordJobs(c.id, std::move(*report.jobs), clock_->Now());

  uint64_t seen = hub_.Seq(c.id);
  auto pending = store_.cluster_commands().ListPending(c.id, 1);
  if (!pending) return done(pending.error());
  const int64_t interval = rec.link_interval_seconds;
  if (!pending->empty() || wait.count() <= 0) {
    auto reply = Reply(c.id, *acked, interval);
    if (reply) reply->certs = std::move(certs);
    return done(std::move(reply));
  }
  wait = std::min(wait, opts_.max_link_wait);
  hub_.Park(c.id, seen, std::chrono::steady_clock::now() + wait,
            [this, id = c.id, acked = *acked, interval, done = std::move(done)]() {
              done(Reply(id, acked, interval));
            });
}

Result<std::vector<std::string>> ClusterTier::MarkOffline() {
  CANOPY_ASSIGN_OR_RETURN(
      auto ids, store_.clusters().MarkStaleOffline(clock_->Now(), opts_.missed_links_for_offline));
  for (const auto& id : ids) SPDLOG_WARN("Cluster offline: no link call cluster={}", id);
  return ids;
}

Result<std::vector<core::Cluster>> ClusterTier::List() {
  (void)MarkOffline();
  return store_.clusters().List();
}

Result<core::Cluster> ClusterTier::Get(const std::string& id) {
  (void)MarkOffline();
  auto c = store_.clusters().Get(id);
  if (!c) return NotFoundAs(std::move(c).error(), "cluster not found");
  return c;
}

}  // namespace canopy::control
