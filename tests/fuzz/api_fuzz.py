#!/usr/bin/env python3
"""Fuzzes the root's API from its own OpenAPI document with schemathesis (issue 14, part 7).

Starts a root (and a fake provider adapter, so provider routes have something behind them),
creates an infra and an app user, then runs schemathesis against /api/v1/openapi.json once per
role — admin, infra, app and anonymous — with every check (no 5xx, status codes, content types,
headers and bodies as documented, negative data rejected, auth not ignored). The examples per
operation are split over the roles so that the run makes at least --requests requests in all.
Exits 1 on any failed check, on fewer requests than asked, or when the root died.
Usage: tests/fuzz/api_fuzz.py [--build build] [--requests 10000] [--workers 8]
"""
import argparse, json, os, re, shutil, signal, socket, subprocess, sys, tempfile, time
import urllib.error, urllib.request

PASSWORD = "fuzz-admin-password-1"
# Share of the examples per role (admin reaches every route; the others mostly get 403/401).
ROLES = [("admin", 0.55), ("infra", 0.2), ("app", 0.15), ("anonymous", 0.1)]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def call(url, method, path, body=None, token=""):
    req = urllib.request.Request(url + path, method=method,
                                 data=json.dumps(body).encode() if body is not None else None)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            text = r.read().decode()
            return r.status, json.loads(text) if text else None
    except urllib.error.HTTPError as e:
        text = e.read().decode()
        return e.code, json.loads(text) if text else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--requests", type=int, default=10000)
    ap.add_argument("--workers", type=int, default=8)
    args = ap.parse_args()
    st = shutil.which("st") or shutil.which("schemathesis")
    if not st:
        print("schemathesis is not installed (scripts/setup.sh installs it)")
        return 1
    canopyd = os.path.abspath(os.path.join(args.build, "bin", "canopyd"))
    work = tempfile.mkdtemp(prefix="canopy-fuzz-")
    env = dict(os.environ, CANOPY_ADMIN_PASSWORD=PASSWORD, CANOPY_LOG_LEVEL="warn")
    port = free_port()
    url = "http://127.0.0.1:%d" % port
    procs = []
    try:
        root = subprocess.Popen([canopyd, "root", "--listen", "127.0.0.1:%d" % port, "--data-dir",
                                 os.path.join(work, "root"), "--heartbeat-interval", "1"],
                                stdout=open(os.path.join(work, "root.log"), "w"),
                                stderr=subprocess.STDOUT, env=env)
        procs.append(root)
        for _ in range(100):
            try:
                if call(url, "GET", "/healthz")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.1)
        _, login = call(url, "POST", "/api/v1/auth/login", {"username": "admin", "password": PASSWORD})
        tokens = {"admin": login["access_token"], "anonymous": ""}
        _, tok = call(url, "POST", "/api/v1/provider-tokens", {}, tokens["admin"])
        procs.append(subprocess.Popen(
            [canopyd, "provider", "--type", "fake", "--root", url, "--token", tok["token"],
             "--listen", "127.0.0.1:0", "--data-dir", os.path.join(work, "adapter")],
            stdout=open(os.path.join(work, "adapter.log"), "w"), stderr=subprocess.STDOUT, env=env))
        for role in ("infra", "app"):
            pw = "fuzz-%s-password-1" % role
            call(url, "POST", "/api/v1/users", {"username": role + "-user", "password": pw,
                                               "roles": [role]}, tokens["admin"])
            _, t = call(url, "POST", "/api/v1/auth/login", {"username": role + "-user", "password": pw})
            tokens[role] = t["access_token"]
        time.sleep(1.5)  # the adapter is live
        doc = call(url, "GET", "/api/v1/openapi.json")[1]
        operations = sum(len([m for m in v if m in ("get", "post", "put", "delete", "patch")])
                         for v in doc["paths"].values())
        total, failed = 0, False
        # Operations with few distinct inputs end before their maximum: ask ~1.4x, then top up
        # as admin with other seeds until the run has made --requests requests.
        plan = [(role, share * 1.4, 1) for role, share in ROLES]
        seeds = iter(range(2, 8))
        while plan:
            role, share, seed = plan.pop(0)
            examples = max(5, int(args.requests * share / operations) + 1)
            cmd = [st, "run", url + "/api/v1/openapi.json", "--checks", "all",
                   "--hypothesis-max-examples", str(examples), "--workers", str(args.workers),
                   "--hypothesis-seed", str(seed), "--hypothesis-suppress-health-check", "all",
                   "--request-timeout", "20000"]
            if tokens[role]:
                cmd += ["-H", "Authorization: Bearer " + tokens[role]]
            t0 = time.time()
            out = subprocess.run(cmd, capture_output=True, text=True, cwd=work)
            text = out.stdout + out.stderr
            m = re.search(r"not_a_server_error\s+(\d+)\s*/\s*(\d+)", text)
            made = int(m.group(2)) if m else 0
            total += made
            print("%-9s %3d examples/operation: %5d requests, rc %d, %.0f s" %
                  (role, examples, made, out.returncode, time.time() - t0))
            if out.returncode != 0:
                failed = True
                print(text[-6000:])
            if not plan and not failed and total < args.requests:
                seed = next(seeds, None)
                if seed is not None:
                    plan.append(("admin", (args.requests - total) * 1.5 / args.requests, seed))
        alive = all(p.poll() is None for p in procs)
        print("total: %d requests over %d operations and 4 roles; root running: %s" %
              (total, operations, alive))
        if failed or not alive or total < args.requests:
            if total < args.requests:
                print("FAILED: fewer requests than %d" % args.requests)
            print(open(os.path.join(work, "root.log")).read()[-3000:])
            return 1
        return 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
