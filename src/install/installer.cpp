#include "install/installer.h"

#include <openssl/evp.h>

#include <fstream>
#include <map>
#include <memory>

#include "common/ids.h"
#include "common/log.h"

namespace canopy::install {

namespace {

using SteadyClock = std::chrono::steady_clock;

int64_t MsSince(SteadyClock::time_point t0) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(SteadyClock::now() - t0).count();
}

// Single-quoted for POSIX sh.
std::string Q(std::string_view s) { return ShellQuote(s); }

// Double-quoted for a systemd unit line (specifiers and variables escaped).
std::string SystemdQuote(std::string_view s) {
  std::string q = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      q += '\\';
      q += c;
    } else if (c == '%') {
      q += "%%";
    } else if (c == '$') {
      q += "$$";
    } else if (c == '\n') {
      q += "\\n";
    } else {
      q += c;
    }
  }
  q += "\"";
  return q;
}

bool ValidName(std::string_view n) {
  if (n.empty() || n.size() > 64) {
    return false;
  }
  for (char c : n) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_')) {
      return false;
    }
  }
  return true;
}

bool ValidEnvName(std::string_view n) {
  if (n.empty() || (n[0] >= '0' && n[0] <= '9')) {
    return false;
  }
  for (char c : n) {
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_')) {
      return false;
    }
  }
  return true;
}

Status ValidateSpec(const ComponentSpec& spec) {
  if (!ValidName(spec.name)) {
    return Error::InvalidArgument("component name must match [a-z0-9_-]{1,64}");
  }
  if (spec.remote_dir.empty() || spec.remote_dir.find('\n') != std::string::npos) {
    return Error::InvalidArgument("invalid remote directory");
  }
  for (const auto& [k, v] : spec.env) {
    if (!ValidEnvName(k)) {
      return Error::InvalidArgument("invalid environment variable name: " + k);
    }
  }
  return OkStatus();
}

Result<std::string> FileSha256Hex(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return Error::NotFound("local binary not found: " + path);
  }
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1) {
    return Error::Internal("sha256 init failed");
  }
  std::string buf(1 << 16, '\0');
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    if (in.gcount() > 0) {
      EVP_DigestUpdate(ctx.get(), buf.data(), static_cast<size_t>(in.gcount()));
    }
  }
  if (in.bad()) {
    return Error::Internal("cannot read local binary " + path);
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx.get(), md, &len);
  std::string hex;
  for (unsigned int i = 0; i < len; ++i) {
    hex += fmt::format("{:02x}", md[i]);
  }
  return hex;
}

// Lines "key=value" of a script's stdout.
std::map<std::string, std::string> ParseKv(const std::string& out) {
  std::map<std::string, std::string> kv;
  size_t pos = 0;
  while (pos < out.size()) {
    size_t nl = out.find('\n', pos);
    std::string line = out.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
    pos = nl == std::string::npos ? out.size() : nl + 1;
    auto eq = line.find('=');
    if (eq != std::string::npos) {
      kv[line.substr(0, eq)] = line.substr(eq + 1);
    }
  }
  return kv;
}

int64_t ToInt(const std::string& s) {
  try {
    return s.empty() ? 0 : std::stoll(s);
  } catch (...) {
    return 0;
  }
}

Error InPhase(Error e, const char* phase) {
  e.message = fmt::format("install {}: {}", phase, e.message);
  e.reason = fmt::format("install_{}", phase);
  return e;
}

Error ScriptFailed(const char* what, const ExecResult& r) {
  // stderr of our own scripts carries no secrets (configs are never printed).
  std::string err = r.err.substr(0, 300);
  return Error::Unavailable(
      fmt::format("{} script exited with status {}: {}", what, r.exit_status, err));
}

// Shell functions shared by the start, stop and status scripts. Expects D and N set.
constexpr const char* kShellLib = R"SH(
cd "$D" 2>/dev/null || { echo "remote directory missing" >&2; exit 3; }
U="canopy-$N.service"
nap() { sleep 0.1 2>/dev/null || sleep 1; }
# A pid is live when it exists and is not a zombie (PID 1 may not reap promptly).
live() {
  [ -n "$1" ] && kill -0 "$1" 2>/dev/null || return 1
  if [ -r "/proc/$1/status" ] && grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null; then
    return 1
  fi
  return 0
}
sup_pid() {
  p=$(cat "run/$N.pid" 2>/dev/null)
  live "$p" || return 1
  if [ -r "/proc/$p/cmdline" ]; then grep -q "$N.sup.sh" "/proc/$p/cmdline" 2>/dev/null || return 1; fi
  return 0
}
use_systemd() {
  [ -f "/etc/systemd/system/$U" ] && command -v systemctl >/dev/null 2>&1
}
S=""; [ "$(id -u)" != 0 ] && S="sudo -n"
stop_sup() {
  if sup_pid; then
    c=$(cat "run/$N.child" 2>/dev/null)
    kill -TERM "$p" 2>/dev/null
    i=0
    while [ $i -lt 100 ] && live "$p"; do nap; i=$((i+1)); done
    if live "$p"; then
      kill -KILL "$p" 2>/dev/null
      live "$c" && kill -KILL "$c" 2>/dev/null
    fi
  fi
  rm -f "run/$N.pid" "run/$N.child"
}
)SH";

std::string Prelude(const std::string& abs_dir, const std::string& name) {
  return fmt::format("D={}\nN={}\n{}", Q(abs_dir), Q(name), kShellLib);
}

}  // namespace

std::string SshInstaller::SupervisorScript(const ComponentSpec& spec, const std::string& abs_dir) {
  std::string cmd = "./bin/canopyd";
  for (const auto& a : spec.argv) {
    std::string arg = a;
    if (auto at = arg.find("{config}"); at != std::string::npos) {
      arg.replace(at, 8, "etc/" + spec.name + ".conf");
    }
    cmd += " " + Q(arg);
  }
  std::string env;
  for (const auto& [k, v] : spec.env) {
    env += fmt::format("export {}={}\n", k, Q(v));
  }
  return fmt::format(R"SH(#!/bin/sh
# Canopy supervisor for component {name}, written by the installer: keeps the process running,
# restarting it with exponential backoff (1 s .. 30 s, reset after 60 s of uptime).
cd {dir} || exit 1
N={qname}
echo $$ > "run/$N.pid"
{env}stop=0
child=
trap 'stop=1; [ -n "$child" ] && kill -TERM "$child" 2>/dev/null' TERM INT HUP
delay=1
while [ "$stop" = 0 ]; do
  started=$(date +%s)
  {cmd} </dev/null >>"log/$N.log" 2>&1 &
  child=$!
  echo "$child" > "run/$N.child"
  wait "$child"
  rc=$?
  if [ "$stop" = 1 ]; then wait "$child" 2>/dev/null; break; fi
  [ $(( $(date +%s) - started )) -ge 60 ] && delay=1
  echo "$(date -u) canopy-supervisor: $N exited with status $rc, restarting in $delay s" >>"log/$N.log"
  sleep "$delay" &
  child=$!
  wait "$child"
  delay=$((delay * 2))
  [ "$delay" -gt 30 ] && delay=30
done
rm -f "run/$N.pid" "run/$N.child"
)SH",
                     fmt::arg("name", spec.name), fmt::arg("dir", Q(abs_dir)),
                     fmt::arg("qname", Q(spec.name)), fmt::arg("env", env), fmt::arg("cmd", cmd));
}

std::string SshInstaller::EnvironmentFile(const ComponentSpec& spec) {
  std::string out;
  for (const auto& [k, v] : spec.env) {
    std::string quoted;
    for (char c : v) {
      if (c == '\\' || c == '"') quoted += '\\';
      quoted += c;
    }
    out += k + "=\"" + quoted + "\"\n";
  }
  return out;
}

std::string SshInstaller::SystemdUnit(const ComponentSpec& spec, const std::string& abs_dir,
                                      const std::string& user) {
  std::string exec = SystemdQuote(abs_dir + "/bin/canopyd");
  for (const auto& a : spec.argv) {
    std::string arg = a;
    if (auto at = arg.find("{config}"); at != std::string::npos) {
      arg.replace(at, 8, abs_dir + "/etc/" + spec.name + ".conf");
    }
    exec += " " + SystemdQuote(arg);
  }
  std::string env;
  if (!spec.env.empty()) env = "EnvironmentFile=" + abs_dir + "/etc/" + spec.name + ".env\n";
  std::string log = abs_dir + "/log/" + spec.name + ".log";
  return fmt::format(R"(# Written by the Canopy installer.
[Unit]
Description=Canopy {name}
Wants=network-online.target
After=network-online.target

[Service]
Type=simple
User={user}
WorkingDirectory={dir}
{env}ExecStart={exec}
Restart=always
RestartSec=2
# The node agent puts each job in a cgroup of its own (memory and CPU limits).
Delegate=yes
StandardOutput=append:{log}
StandardError=append:{log}

[Install]
WantedBy=multi-user.target
)",
                     fmt::arg("name", spec.name), fmt::arg("user", user), fmt::arg("dir", abs_dir),
                     fmt::arg("env", env), fmt::arg("exec", exec), fmt::arg("log", log));
}

Result<InstallReport> SshInstaller::Install(const SshTarget& target,
                                            const ComponentSpec& spec) const {
  if (auto v = ValidateSpec(spec); !v) {
    return Unexpected(std::move(v).error());
  }
  InstallReport rep;

  // connect
  auto t0 = SteadyClock::now();
  auto session_r = SshSession::WaitForSsh(target, opts_.wait, &rep.connect_attempts);
  rep.timings.connect_ms = MsSince(t0);
  if (!session_r) {
    return InPhase(std::move(session_r).error(), "connect");
  }
  auto session = std::move(session_r).value();

  // check: one script (shell start-up is slow on some images) reports what is there.
  t0 = SteadyClock::now();
  auto digest_r = FileSha256Hex(spec.binary_path);
  if (!digest_r) {
    return InPhase(std::move(digest_r).error(), "check");
  }
  const std::string local_digest = *digest_r;
  std::string check = fmt::format(R"SH(umask 077
R={r}
N={n}
case "$R" in /*) D="$R" ;; *) D="$(pwd)/$R" ;; esac
mkdir -p "$D/bin" "$D/etc" "$D/run" "$D/log" || exit 3
echo "home=$D"
echo "user=$(id -un 2>/dev/null)"
echo "bin=$(cat "$D/bin/canopyd.sha256" 2>/dev/null)"
echo "spec=$(cat "$D/run/$N.spec.sha256" 2>/dev/null)"
init=none
if [ {allow} = 1 ] && command -v systemctl >/dev/null 2>&1; then
  case "$(systemctl is-system-running 2>/dev/null)" in running|degraded) init=systemd ;; esac
  if [ "$init" = systemd ] && [ "$(id -u)" != 0 ]; then sudo -n true 2>/dev/null || init=none; fi
fi
echo "init=$init"
)SH",
                                  fmt::arg("r", Q(spec.remote_dir)), fmt::arg("n", Q(spec.name)),
                                  fmt::arg("allow", opts_.allow_systemd ? 1 : 0));
  auto check_r = session->Exec(check, opts_.script_timeout);
  if (!check_r) {
    return InPhase(std::move(check_r).error(), "check");
  }
  if (check_r->exit_status != 0) {
    return InPhase(ScriptFailed("check", *check_r), "check");
  }
  auto kv = ParseKv(check_r->out);
  const std::string dir = kv["home"];
  if (dir.empty() || dir[0] != '/') {
    return InPhase(Error::Unavailable("check script gave no remote directory"), "check");
  }
  rep.mode = kv["init"] == "systemd" ? "systemd" : "supervisor";
  const bool systemd = rep.mode == "systemd";
  const std::string script =
      systemd ? SystemdUnit(spec, dir, kv["user"]) : SupervisorScript(spec, dir);
  // The digest covers everything that requires a restart when it changes.
  const std::string env_file = systemd ? EnvironmentFile(spec) : "";
  const std::string spec_digest = Sha256Hex(
      SecretString(rep.mode + '\0' + spec.config.Reveal() + '\0' + script + '\0' + env_file)
          .Reveal());
  rep.upload_skipped = kv["bin"] == local_digest;
  rep.config_changed = kv["spec"] != spec_digest;
  rep.timings.check_ms = MsSince(t0);

  // upload: binary to a temp name + rename, then its digest (only after a complete upload).
  t0 = SteadyClock::now();
  auto upload = [&]() -> canopy::Status {
    if (!rep.upload_skipped) {
      CANOPY_TRY(session->UploadFile(spec.binary_path, dir + "/bin/canopyd", 0755));
      CANOPY_TRY(session->UploadBytes(local_digest, dir + "/bin/canopyd.sha256", 0600));
    }
    if (rep.config_changed) {
      if (!spec.config.Reveal().empty()) {
        CANOPY_TRY(
            session->UploadBytes(spec.config.Reveal(), dir + "/etc/" + spec.name + ".conf", 0600));
      }
      if (systemd) {
        if (!env_file.empty()) {
          CANOPY_TRY(session->UploadBytes(env_file, dir + "/etc/" + spec.name + ".env", 0600));
        }
        CANOPY_TRY(
            session->UploadBytes(script, dir + "/run/canopy-" + spec.name + ".service", 0644));
      } else {
        CANOPY_TRY(session->UploadBytes(script, dir + "/run/" + spec.name + ".sup.sh", 0700));
      }
      CANOPY_TRY(
          session->UploadBytes(spec_digest, dir + "/run/" + spec.name + ".spec.sha256", 0600));
    }
    return OkStatus();
  };
  if (auto u = upload(); !u) {
    return InPhase(std::move(u).error(), "upload");
  }
  rep.timings.upload_ms = MsSince(t0);

  // preflight: the uploaded binary checks what the component needs (e.g. the tier above is
  // reachable from here), so a doomed start fails now with the reason instead of a timeout later.
  if (!spec.preflight.empty()) {
    t0 = SteadyClock::now();
    std::string cmd = fmt::format("cd {} || exit 3\nexec ./bin/canopyd", Q(dir));
    for (const auto& a : spec.preflight) cmd += " " + Q(a);
    cmd += " </dev/null\n";
    auto pre = session->Exec(cmd, opts_.script_timeout);
    if (!pre) {
      return InPhase(std::move(pre).error(), "preflight");
    }
    if (pre->exit_status != 0) {
      std::string why = pre->err;
      while (!why.empty() && (why.back() == '\n' || why.back() == '\r' || why.back() == ' ')) {
        why.pop_back();
      }
      if (auto nl = why.rfind('\n'); nl != std::string::npos) why = why.substr(nl + 1);
      if (why.rfind("error: ", 0) == 0) why = why.substr(7);
      if (why.size() > 400) why.resize(400);
      if (why.empty()) why = fmt::format("exited with status {}", pre->exit_status);
      Error e = Error::FailedPrecondition(why);
      e.reason = "install_preflight";
      return e;
    }
    rep.timings.preflight_ms = MsSince(t0);
  }

  // start: (re)start only when something changed or it is not running: never a second copy.
  t0 = SteadyClock::now();
  const bool changed = !rep.upload_skipped || rep.config_changed;
  std::string start = Prelude(dir, spec.name) + fmt::format("CHANGED={}\n", changed ? 1 : 0);
  if (systemd) {
    start += R"SH(
if [ "$CHANGED" = 1 ] || [ ! -f "/etc/systemd/system/$U" ]; then
  $S cp "run/$U" "/etc/systemd/system/$U" && $S systemctl daemon-reload || exit 5
  $S systemctl enable "$U" >/dev/null 2>&1
  $S systemctl restart "$U" || exit 6
  state=started
elif systemctl is-active --quiet "$U"; then
  state=already_running
else
  $S systemctl start "$U" || exit 6
  state=started
fi
echo "state=$state"
echo "pid=$(systemctl show -p MainPID --value "$U" 2>/dev/null)"
)SH";
  } else {
    start += R"SH(
if sup_pid; then
  if [ "$CHANGED" = 0 ]; then echo "state=already_running"; echo "pid=$p"; exit 0; fi
  stop_sup
fi
rm -f "run/$N.pid" "run/$N.child"
if command -v setsid >/dev/null 2>&1; then
  nohup setsid sh "run/$N.sup.sh" </dev/null >>"log/$N.log" 2>&1 &
else
  nohup sh "run/$N.sup.sh" </dev/null >>"log/$N.log" 2>&1 &
fi
i=0
while [ $i -lt 100 ]; do
  if sup_pid && [ -s "run/$N.child" ]; then echo "state=started"; echo "pid=$p"; exit 0; fi
  nap
  i=$((i+1))
done
echo "supervisor did not start" >&2
exit 4
)SH";
  }
  auto start_r = session->Exec(start, opts_.script_timeout);
  if (!start_r) {
    return InPhase(std::move(start_r).error(), "start");
  }
  if (start_r->exit_status != 0) {
    return InPhase(ScriptFailed("start", *start_r), "start");
  }
  auto skv = ParseKv(start_r->out);
  rep.already_running = skv["state"] == "already_running";
  rep.pid = ToInt(skv["pid"]);
  rep.timings.start_ms = MsSince(t0);
  SPDLOG_INFO(
      "Installed component host={} name={} mode={} upload_skipped={} connect_ms={} check_ms={} "
      "upload_ms={} start_ms={}",
      target.host, spec.name, rep.mode, rep.upload_skipped, rep.timings.connect_ms,
      rep.timings.check_ms, rep.timings.upload_ms, rep.timings.start_ms);
  return rep;
}

namespace {

Result<std::unique_ptr<SshSession>> ConnectFor(const SshTarget& target, const WaitOptions& w) {
  return SshSession::WaitForSsh(target, w);
}

std::string DirExpr(const std::string& remote_dir) {
  return fmt::format("R={}\ncase \"$R\" in /*) D=\"$R\" ;; *) D=\"$(pwd)/$R\" ;; esac\n",
                     Q(remote_dir));
}

}  // namespace

canopy::Status SshInstaller::Stop(const SshTarget& target, const std::string& name,
                                  const std::string& remote_dir) const {
  if (!ValidName(name)) {
    return Error::InvalidArgument("component name must match [a-z0-9_-]{1,64}");
  }
  CANOPY_ASSIGN_OR_RETURN(auto session, ConnectFor(target, opts_.wait));
  std::string script = DirExpr(remote_dir) + fmt::format("N={}\n", Q(name)) +
                       "[ -d \"$D\" ] || exit 0\n" + kShellLib + R"SH(
if use_systemd; then
  $S systemctl disable --now "$U" >/dev/null 2>&1 || $S systemctl stop "$U" || exit 6
fi
stop_sup
echo "state=stopped"
)SH";
  CANOPY_ASSIGN_OR_RETURN(auto r, session->Exec(script, opts_.script_timeout));
  if (r.exit_status != 0) {
    return ScriptFailed("stop", r);
  }
  return OkStatus();
}

Result<ComponentStatus> SshInstaller::GetStatus(const SshTarget& target, const std::string& name,
                                                const std::string& remote_dir) const {
  if (!ValidName(name)) {
    return Error::InvalidArgument("component name must match [a-z0-9_-]{1,64}");
  }
  CANOPY_ASSIGN_OR_RETURN(auto session, ConnectFor(target, opts_.wait));
  std::string script = DirExpr(remote_dir) + fmt::format("N={}\n", Q(name)) +
                       "[ -d \"$D\" ] || { echo running=0; exit 0; }\n" + kShellLib + R"SH(
if use_systemd; then
  echo "mode=systemd"
  if systemctl is-active --quiet "$U"; then echo running=1; else echo running=0; fi
  echo "pid=$(systemctl show -p MainPID --value "$U" 2>/dev/null)"
elif [ -f "run/$N.sup.sh" ]; then
  echo "mode=supervisor"
  if sup_pid; then
    echo "pid=$p"
    c=$(cat "run/$N.child" 2>/dev/null)
    if live "$c"; then echo running=1; echo "child=$c"; else echo running=0; fi
  else
    echo running=0
  fi
else
  echo running=0
fi
)SH";
  CANOPY_ASSIGN_OR_RETURN(auto r, session->Exec(script, opts_.script_timeout));
  if (r.exit_status != 0) {
    return ScriptFailed("status", r);
  }
  auto kv = ParseKv(r.out);
  ComponentStatus st;
  st.running = kv["running"] == "1";
  st.mode = kv["mode"];
  st.pid = ToInt(kv["pid"]);
  st.child_pid = ToInt(kv["child"]);
  return st;
}

}  // namespace canopy::install
