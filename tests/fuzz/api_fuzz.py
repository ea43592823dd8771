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
import argparse, os, re, shutil, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench"))
from canopy_procs import RootWithFakeAdapter, call  # noqa: E402

PASSWORD = "fuzz-admin-password-1"
# Share of the examples per role (admin reaches every route; the others mostly get 403/401).
ROLES = [("admin", 0.55), ("infra", 0.2), ("app", 0.15), ("anonymous", 0.1)]


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
    daemons = None
    try:
        daemons = RootWithFakeAdapter(canopyd, work, PASSWORD)
        port, url = daemons.port, daemons.url
        tokens = {"admin": daemons.token, "anonymous": ""}
        for role in ("infra", "app"):
            pw = "fuzz-%s-password-1" % role
            call(port, "POST", "/api/v1/users", {"username": role + "-user", "password": pw,
                                                "roles": [role]}, tokens["admin"])
            _, t = call(port, "POST", "/api/v1/auth/login",
                        {"username": role + "-user", "password": pw})
            tokens[role] = t["access_token"]
        doc = call(port, "GET", "/api/v1/openapi.json")[1]
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
        alive = daemons.running()
        print("total: %d requests over %d operations and 4 roles; root running: %s" %
              (total, operations, alive))
        if failed or not alive or total < args.requests:
            if total < args.requests:
                print("FAILED: fewer requests than %d" % args.requests)
            print(open(daemons.log).read()[-3000:])
            return 1
        return 0
    finally:
        if daemons:
            daemons.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
