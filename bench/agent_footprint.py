#!/usr/bin/env python3
"""Footprint of what the installer pushes to instances (needs root).

Reports the pushed binary (size, whether it is static), then starts a root and a local provider
adapter, creates a cluster with W workers, lets it settle for S seconds and reads VmRSS and VmHWM
of the cluster daemon and of every node agent it started (from /proc). Deletes everything after.
Usage (as root): bench/agent_footprint.py [--build build] [--workers 2] [--settle 20]
"""
import argparse, os, signal, shutil, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster_provision import Api, GATEWAY, free_port, wait_op  # noqa: E402


def status_kib(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def agents(dist):
    """(role, pid) of every running process whose executable is a pushed copy of `dist`."""
    size = os.path.getsize(dist)
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            exe = os.readlink("/proc/%s/exe" % d)
            argv = open("/proc/%s/cmdline" % d, "rb").read().split(b"\0")
        except OSError:
            continue
        if exe.endswith("/bin/canopyd") and os.path.getsize(exe) == size and len(argv) > 1:
            out.append((argv[1].decode(), int(d)))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--settle", type=int, default=20)
    a = ap.parse_args()
    canopyd = os.path.abspath(os.path.join(a.build, "bin", "canopyd"))
    dist = canopyd + "-dist"
    kind = subprocess.run(["file", "-b", dist], capture_output=True, text=True).stdout.strip()
    work = tempfile.mkdtemp(prefix="canopy-bench-")
    port = free_port()
    env = dict(os.environ, CANOPY_ADMIN_PASSWORD="bench-admin-password-1", CANOPY_LOG_LEVEL="info")
    root = subprocess.Popen([canopyd, "root", "--listen", "0.0.0.0:%d" % port, "--data-dir",
                             os.path.join(work, "root"), "--heartbeat-interval", "1",
                             "--cluster-url", "http://%s:%d" % (GATEWAY, port)],
                            stdout=open(os.path.join(work, "root.log"), "w"), stderr=subprocess.STDOUT, env=env)
    adapter = None
    api = Api("http://127.0.0.1:%d" % port)
    rows = []
    try:
        for _ in range(100):
            if api.call("GET", "/healthz")[0] == 200:
                break
            time.sleep(0.1)
        _, login = api.call("POST", "/api/v1/auth/login",
                            {"username": "admin", "password": env["CANOPY_ADMIN_PASSWORD"]})
        api.token = login["access_token"]
        _, tok = api.call("POST", "/api/v1/provider-tokens", {})
        adapter = subprocess.Popen([canopyd, "provider", "--type", "local", "--root", api.url, "--token",
                                    tok["token"], "--listen", "127.0.0.1:0", "--data-dir",
                                    os.path.join(work, "adapter"), "--state-dir", os.path.join(work, "local")],
                                   stdout=open(os.path.join(work, "adapter.log"), "w"),
                                   stderr=subprocess.STDOUT, env=env)
        cred = None
        for _ in range(100):
            code, cred = api.call("POST", "/api/v1/credentials",
                                  {"name": "local", "provider": "local", "secret": {"type": "local"}})
            if code == 201:
                break
            time.sleep(0.2)
        code, body = api.call("POST", "/api/v1/clusters", {
            "name": "footprint", "credential_id": cred["id"], "region": "local",
            "instance_type": "local.small", "image": "debian-12", "disk_gb": 1,
            "workers": {"count": a.workers}})
        if code != 202:
            raise SystemExit("create failed: %s %s" % (code, body))
        cid = body["cluster"]["id"]
        if wait_op(api, body["operation_id"])["state"] != "succeeded":
            raise SystemExit("cluster create failed")
        time.sleep(a.settle)
        for role, pid in sorted(agents(dist)):
            rows.append((role, status_kib(pid, "VmRSS") / 1024.0, status_kib(pid, "VmHWM") / 1024.0))
        code, d = api.call("DELETE", "/api/v1/clusters/%s?force=true" % cid)
        if code == 202:
            wait_op(api, d["operation_id"])
    finally:
        for p in (root, adapter):
            if p:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
        inst_dir = os.path.join(work, "local", "instances")
        for i in (os.listdir(inst_dir) if os.path.isdir(inst_dir) else []):
            for pid in subprocess.run(["ip", "netns", "pids", "canopy-" + i], capture_output=True,
                                      text=True).stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except OSError:
                    pass
            subprocess.run(["ip", "netns", "del", "canopy-" + i], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    print("# %s, %d cores" % (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), os.cpu_count()))
    print("pushed binary: %.1f MiB, %s" % (os.path.getsize(dist) / 1048576.0, kind))
    print("| role | RSS MiB | peak RSS MiB |")
    print("|---|---|---|")
    for role, rss, hwm in rows:
        print("| %s | %.1f | %.1f |" % (role, rss, hwm))


if __name__ == "__main__":
    main()
