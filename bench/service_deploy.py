#!/usr/bin/env python3
"""Deploy-to-reachable latency of services on the local provider (needs root).

Starts a root and a local provider adapter (no boot delay), creates a cluster with W workers
(local.medium: 2 vCPU, 2048 MiB each), then measures, from the deploy call to the first HTTP
answer from the host at the instance's address (so the job runs AND the worker's firewall is open):
  1. one service (HELLO: a one-line HTTP server in perl, which the blank images have; no python3),
  2. S services at once (distinct ports), spread over the W workers: per-service latency
     percentiles and the time until all S answer.
Everything is undeployed and deleted afterwards. Prints a Markdown table.
Cluster and workers run the blank image new clusters get (--image to choose another).
Usage (as root): bench/service_deploy.py [--build build] [--workers 10] [--services 100] [--image I]
"""
import argparse, os, socket, sys, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster_provision import LocalBroker, add_image_arg, wait_op  # noqa: E402

BASE_PORT = 20000
# The README's service (and the tests' HelloServiceArgv): perl-base is on every Debian/Ubuntu image.
HELLO = ('$SIG{PIPE}="IGNORE"; '
         '$s=IO::Socket::INET->new(LocalPort=>shift,Listen=>64,ReuseAddr=>1) or die "listen: $!"; '
         'while($c=$s->accept){ while(<$c>){last if /^\\r?$/} '
         'print $c "HTTP/1.0 200 OK\\r\\nContent-Type: text/plain\\r\\n\\r\\n", '
         '"hello from ".$c->sockhost."\\n"; close $c }')


def answers(addr, port):
    try:
        with socket.create_connection((addr, port), timeout=0.3) as s:
            s.settimeout(0.5)
            s.sendall(b"GET / HTTP/1.0\r\n\r\n")
            return s.recv(5) == b"HTTP/"
    except OSError:
        return False


def deploy_and_time(api, ids_ports, timeout=600):
    """Deploys every (id, port); returns {id: seconds from its deploy call to its first answer}."""
    start, done, addr = {}, {}, {}
    for sid, _ in ids_ports:
        start[sid] = time.time()
        code, body = api.call("POST", "/api/v1/services/%s/deploy" % sid, {})
        if code != 202:
            raise SystemExit("deploy failed: %s %s" % (code, body))
    end = time.time() + timeout
    last_list = 0.0
    while len(done) < len(ids_ports) and time.time() < end:
        if time.time() - last_list > 0.2 and len(addr) < len(ids_ports):
            last_list = time.time()
            _, svcs = api.call("GET", "/api/v1/services")
            for s in svcs or []:
                inst = s.get("instances") or []
                if inst and inst[0].get("address"):
                    addr[s["id"]] = inst[0]["address"]
        for sid, port in ids_ports:
            if sid in done or sid not in addr:
                continue
            if answers(addr[sid], port):
                done[sid] = time.time() - start[sid]
        time.sleep(0.02)
    if len(done) < len(ids_ports):
        raise SystemExit("%d of %d services never answered" % (len(ids_ports) - len(done), len(ids_ports)))
    return done


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--workers", type=int, default=10)
    ap.add_argument("--services", type=int, default=100)
    add_image_arg(ap)
    a = ap.parse_args()
    canopyd = os.path.abspath(os.path.join(a.build, "bin", "canopyd"))
    broker = LocalBroker(canopyd, root_args=["--op-workers", "8"])
    api, cred = broker.api, broker.cred
    rows = []
    try:
        code, body = api.call("POST", "/api/v1/clusters", {
            "name": "bench", "credential_id": cred["id"], "region": "local", "instance_type": "local.small",
            "image": a.image, "disk_gb": 1,
            "workers": {"count": a.workers, "instance_type": "local.medium"}})
        if code != 202:
            raise SystemExit("create failed: %s %s" % (code, body))
        cid = body["cluster"]["id"]
        if wait_op(api, body["operation_id"])["state"] != "succeeded":
            raise SystemExit("cluster create failed")
        time.sleep(3)  # let every node's first report reach the root

        def make(i):
            p = BASE_PORT + i
            code, s = api.call("POST", "/api/v1/services", {
                "name": "bench-%d" % i, "command": ["perl", "-MIO::Socket::INET", "-e", HELLO, str(p)],
                "ports": [{"port": p}], "cpu_millis": 10, "memory_mib": 16})
            if code != 201:
                raise SystemExit("service create failed: %s %s" % (code, s))
            return s["id"], p

        one = [make(0)]
        t = deploy_and_time(api, one)
        rows.append(("1 service, %d workers" % a.workers, list(t.values()), max(t.values())))
        many = [make(i) for i in range(1, a.services + 1)]
        t0 = time.time()
        t = deploy_and_time(api, many)
        rows.append(("%d services, %d workers" % (a.services, a.workers), list(t.values()), time.time() - t0))
        _, svcs = api.call("GET", "/api/v1/services")
        per_node = {}
        for s in svcs:
            for i in s["instances"]:
                per_node[i["node_id"]] = per_node.get(i["node_id"], 0) + 1
        print("instances per node: %s" % sorted(per_node.values()), file=sys.stderr)
        for sid, _ in one + many:
            api.call("POST", "/api/v1/services/%s/undeploy" % sid)
        end = time.time() + 120
        while time.time() < end:
            _, svcs = api.call("GET", "/api/v1/services")
            if all(not s["instances"] for s in svcs):
                break
            time.sleep(0.5)
        for sid, _ in one + many:
            api.call("DELETE", "/api/v1/services/" + sid)
        _, workers = api.call("GET", "/api/v1/clusters/%s/workers" % cid)
        for d in [api.call("DELETE", "/api/v1/clusters/%s/workers/%s" % (cid, w["id"]))[1] for w in workers]:
            wait_op(api, d["operation_id"])
        for _ in range(60):
            code, d = api.call("DELETE", "/api/v1/clusters/" + cid)
            if code == 202:
                wait_op(api, d["operation_id"])
                break
            print("cluster delete: %s %s (retrying)" % (code, d), file=sys.stderr)
            time.sleep(1)
    finally:
        broker.close()
    print("# %s, %d cores, image %s" % (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                        os.cpu_count(), a.image))
    print("| case | p50 s | p95 s | max s | all reachable after s |")
    print("|---|---|---|---|---|")
    for name, xs, total in rows:
        print("| %s | %.2f | %.2f | %.2f | %.2f |" % (name, pct(xs, 50), pct(xs, 95), max(xs), total))


if __name__ == "__main__":
    main()
