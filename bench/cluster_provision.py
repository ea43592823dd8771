#!/usr/bin/env python3
"""Cluster + N workers on the local provider, end to end through the root's API (needs root).

Starts a root (listening on 0.0.0.0, clusters dial it at the bridge address) and a local provider
adapter with --boot-delay, then for each N: POST /api/v1/clusters with N initial workers, waits
until the operation (and so every worker) is done, and splits the time into phases from the
operations' step timestamps and the root's install log lines:
  cloud    = instance + running steps (VM create and boot, incl. the boot delay)
  ssh      = SSH connect time of the installs (avg per install, from "connect_ms=")
  install  = install steps minus nothing (wall time of the step: connect + upload + start)
  register = pair (cluster) / register (workers) steps
Each cluster is deleted (workers first) before the next run. Prints a Markdown table.
Cluster and workers run DEFAULT_IMAGE, the blank image new clusters get (scripts/local-images.sh
builds it); --image debian-12 runs them on this host's filesystem, as before issue 12.
--provider gcp runs the same through the GCP adapter and the Compute Engine double
(scripts/sim/gcp-sim, started with the boot delay; its machines are debian-12-minbase).
Usage (as root): bench/cluster_provision.py [--build build] [--boot-delay-ms 5000] [--image I]
                 [--provider local|gcp] [N ...]
"""
import argparse, datetime, json, os, re, shutil, signal, socket, subprocess, sys, tempfile, time
import urllib.request, urllib.error

GATEWAY = "198.18.0.1"  # the local provider's default bridge address
DEFAULT_IMAGE = "debian-12-minbase"  # the first offered image: what new clusters get


def add_image_arg(ap):
    ap.add_argument("--image", default=DEFAULT_IMAGE,
                    help="local image of the cluster and workers (default %s; debian-12 is this "
                         "host's filesystem)" % DEFAULT_IMAGE)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Api:
    def __init__(self, url):
        self.url, self.token = url, ""

    def call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", "Bearer " + self.token)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                text = r.read().decode()
                return r.status, (json.loads(text) if text else None)
        except urllib.error.HTTPError as e:
            text = e.read().decode()
            return e.code, (json.loads(text) if text else None)
        except (urllib.error.URLError, ConnectionError):
            return 0, None


def ts(s):
    return datetime.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp() if s else None


def step_secs(op, *names):
    total = 0.0
    for st in op["steps"]:
        if st["name"] in names and st["started_at"] and st["finished_at"]:
            total += ts(st["finished_at"]) - ts(st["started_at"])
    return total


def wait_op(api, op_id, timeout=900):
    end = time.time() + timeout
    while time.time() < end:
        code, op = api.call("GET", "/api/v1/operations/" + op_id)
        if code == 200 and op["state"] in ("succeeded", "failed"):
            return op
        time.sleep(0.2)
    raise SystemExit("operation %s did not finish" % op_id)


class LocalBroker:
    """A root and a local provider adapter in a temp dir, logged in as admin, with a credential
    "local" (self.cred). close() stops both and removes every instance and the temp dir."""

    def __init__(self, canopyd, root_args=(), adapter_args=(), adapter_type="local",
                 adapter_config=None, secret=None):
        self.work = tempfile.mkdtemp(prefix="canopy-bench-")
        port = free_port()
        self.env = dict(os.environ, CANOPY_ADMIN_PASSWORD="bench-admin-password-1",
                        CANOPY_LOG_LEVEL="info")
        self.root = subprocess.Popen(
            [canopyd, "root", "--listen", "0.0.0.0:%d" % port, "--data-dir",
             os.path.join(self.work, "root"), "--heartbeat-interval", "1", "--cluster-url",
             "http://%s:%d" % (GATEWAY, port)] + list(root_args),
            stdout=open(os.path.join(self.work, "root.log"), "w"), stderr=subprocess.STDOUT,
            env=self.env)
        self.adapter = None
        self.api = Api("http://127.0.0.1:%d" % port)
        for _ in range(100):
            if self.api.call("GET", "/healthz")[0] == 200:
                break
            time.sleep(0.1)
        _, login = self.api.call("POST", "/api/v1/auth/login",
                                 {"username": "admin", "password": self.env["CANOPY_ADMIN_PASSWORD"]})
        self.api.token = login["access_token"]
        _, tok = self.api.call("POST", "/api/v1/provider-tokens", {})
        cmd = [canopyd, "provider", "--type", adapter_type, "--root", self.api.url, "--token",
               tok["token"], "--listen", "127.0.0.1:0", "--data-dir",
               os.path.join(self.work, "adapter")]
        if adapter_type == "local":
            cmd += ["--state-dir", os.path.join(self.work, "local")]
        if adapter_config is not None:
            cmd += ["--config", json.dumps(adapter_config)]
        self.adapter = subprocess.Popen(
            cmd + list(adapter_args),
            stdout=open(os.path.join(self.work, "adapter.log"), "w"), stderr=subprocess.STDOUT,
            env=self.env)
        self.cred = None
        for _ in range(100):
            code, self.cred = self.api.call("POST", "/api/v1/credentials", {
                "name": adapter_type, "provider": adapter_type,
                "secret": secret if secret is not None else {"type": "local"}})
            if code == 201:
                break
            time.sleep(0.2)

    def close(self):
        for p in (self.root, self.adapter):
            if p:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
        inst_dir = os.path.join(self.work, "local", "instances")
        for i in (os.listdir(inst_dir) if os.path.isdir(inst_dir) else []):
            for pid in subprocess.run(["ip", "netns", "pids", "canopy-" + i], capture_output=True,
                                      text=True).stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except OSError:
                    pass
            subprocess.run(["ip", "netns", "del", "canopy-" + i], capture_output=True)
        shutil.rmtree(self.work, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--boot-delay-ms", type=int, default=5000)
    add_image_arg(ap)
    ap.add_argument("--provider", choices=["local", "gcp"], default="local",
                    help="gcp: through the Compute Engine double (scripts/sim/gcp-sim) and the "
                         "GCP adapter; the double's machines run debian-12-minbase")
    ap.add_argument("counts", nargs="*", type=int, default=[1, 10, 30])
    a = ap.parse_args()
    canopyd = os.path.abspath(os.path.join(a.build, "bin", "canopyd"))
    sim_dir = None
    if a.provider == "gcp":
        sim_dir = tempfile.mkdtemp(prefix="canopy-bench-gcp-")
        here = os.path.dirname(os.path.abspath(__file__))
        subprocess.run([sys.executable, os.path.join(here, "..", "scripts", "sim", "gcp-sim"),
                        "start", "--quiet", "--dir", sim_dir, "--boot-delay-ms",
                        str(a.boot_delay_ms), "--canopy-sim",
                        os.path.abspath(os.path.join(a.build, "bin", "canopy-sim")),
                        "--parent-pid", str(os.getpid())], check=True)
        with open(os.path.join(sim_dir, "sim.json")) as f:
            sim = json.load(f)
        broker = LocalBroker(canopyd, root_args=["--op-workers", "8"], adapter_type="gcp",
                             adapter_config=sim["adapter_config"], secret=sim["credential"])
        _, offers = broker.api.call("GET", "/api/v1/offers?provider=gcp&credential_id=%s"
                                    "&region=us-central1" % broker.cred["id"])
        image = [i["id"] for i in offers["images"] if "debian-12" in i["id"]][0]
        where = {"region": "us-central1", "instance_type": "e2-small", "image": image,
                 "disk_gb": 10}
        a.image = image
    else:
        broker = LocalBroker(canopyd, root_args=["--op-workers", "8"],
                             adapter_args=["--boot-delay", str(a.boot_delay_ms)])
        where = {"region": "local", "instance_type": "local.small", "image": a.image,
                 "disk_gb": 1}
    api, cred, work = broker.api, broker.cred, broker.work
    rows = []
    try:
        for n in a.counts:
            log_mark = os.path.getsize(os.path.join(work, "root.log"))
            t0 = time.time()
            body = {"name": "bench%d" % n, "credential_id": cred["id"], "workers": {"count": n}}
            body.update(where)
            code, body = api.call("POST", "/api/v1/clusters", body)
            if code != 202:
                raise SystemExit("create failed: %s %s" % (code, body))
            cid = body["cluster"]["id"]
            op = wait_op(api, body["operation_id"])
            total = time.time() - t0
            if op["state"] != "succeeded":
                raise SystemExit("cluster op failed: %s" % json.dumps(op))
            _, ops = api.call("GET", "/api/v1/operations?target=" + cid)
            child = [o for o in ops if o["kind"] == "workers.provision"][0]
            with open(os.path.join(work, "root.log")) as f:
                f.seek(log_mark)
                text = f.read()
            node_connect = [int(x) for x in re.findall(r"Node installed .*?connect_ms=(\d+)", text)]
            cl_connect = [int(x) for x in re.findall(r"Cluster installed .*?connect_ms=(\d+)", text)]
            rows.append({
                "n": n, "total": total,
                "c_cloud": step_secs(op, "instance", "running"),
                "c_ssh": (cl_connect[0] / 1000.0) if cl_connect else 0.0,
                "c_install": step_secs(op, "install"),
                "c_register": step_secs(op, "pair"),
                "w_cloud": step_secs(child, "instances", "running"),
                "w_ssh": (sum(node_connect) / len(node_connect) / 1000.0) if node_connect else 0.0,
                "w_install": step_secs(child, "install"),
                "w_register": step_secs(child, "register"),
                "other": step_secs(op, "key_pair", "firewalls", "identity"),
            })
            print("N=%d total %.2fs" % (n, total), file=sys.stderr)
            # Clean up: delete workers, then the cluster.
            _, workers = api.call("GET", "/api/v1/clusters/%s/workers" % cid)
            dels = [api.call("DELETE", "/api/v1/clusters/%s/workers/%s" % (cid, w["id"]))[1]
                    for w in workers]
            for d in dels:
                wait_op(api, d["operation_id"])
            _, d = api.call("DELETE", "/api/v1/clusters/" + cid)
            wait_op(api, d["operation_id"])
    finally:
        broker.close()
        if sim_dir:
            here = os.path.dirname(os.path.abspath(__file__))
            subprocess.run([sys.executable, os.path.join(here, "..", "scripts", "sim", "gcp-sim"),
                            "stop", "--dir", sim_dir], capture_output=True)
            shutil.rmtree(sim_dir, ignore_errors=True)
    print("# %s, %d cores, boot delay %d ms, provider %s, image %s" % (
        time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), os.cpu_count(), a.boot_delay_ms,
        a.provider, a.image))
    print("| workers | total s | cluster cloud | cluster ssh | cluster install | cluster pair | "
          "workers cloud | worker ssh (avg) | workers install | workers register | other |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print("| %d | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f |" % (
            r["n"], r["total"], r["c_cloud"], r["c_ssh"], r["c_install"], r["c_register"],
            r["w_cloud"], r["w_ssh"], r["w_install"], r["w_register"], r["other"]))


if __name__ == "__main__":
    main()
