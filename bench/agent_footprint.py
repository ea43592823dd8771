#!/usr/bin/env python3
"""Footprint of what the installer pushes to instances (needs root).

Reports the pushed binary (size, whether it is static), then starts a root and a local provider
adapter, creates a cluster with W workers, lets it settle for S seconds and reads VmRSS and VmHWM
of the cluster daemon and of every node agent it started (from /proc). Deletes everything after.
Usage (as root): bench/agent_footprint.py [--build build] [--workers 2] [--settle 20] [--image I]
"""
import argparse, os, subprocess, sys, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster_provision import LocalBroker, add_image_arg, wait_op  # noqa: E402


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
        # /proc/PID/exe opens the executable itself, also for a process chrooted into an image.
        if exe.endswith("/bin/canopyd") and os.stat("/proc/%s/exe" % d).st_size == size \
                and len(argv) > 1:
            out.append((argv[1].decode(), int(d)))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--settle", type=int, default=20)
    add_image_arg(ap)
    a = ap.parse_args()
    canopyd = os.path.abspath(os.path.join(a.build, "bin", "canopyd"))
    dist = canopyd + "-dist"
    kind = subprocess.run(["file", "-b", dist], capture_output=True, text=True).stdout.strip()
    broker = LocalBroker(canopyd)
    api = broker.api
    rows = []
    try:
        code, body = api.call("POST", "/api/v1/clusters", {
            "name": "footprint", "credential_id": broker.cred["id"], "region": "local",
            "instance_type": "local.small", "image": a.image, "disk_gb": 1,
            "workers": {"count": a.workers}})
        if code != 202:
            raise SystemExit("create failed: %s %s" % (code, body))
        cid = body["cluster"]["id"]
        if wait_op(api, body["operation_id"])["state"] != "succeeded":
            raise SystemExit("cluster create failed")
        time.sleep(a.settle)
        for role, pid in sorted(agents(dist)):
            rows.append((role, status_kib(pid, "VmRSS") / 1024.0, status_kib(pid, "VmHWM") / 1024.0))
    finally:
        broker.close()
    print("# %s, %d cores, image %s" % (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                        os.cpu_count(), a.image))
    print("pushed binary: %.1f MiB, %s" % (os.path.getsize(dist) / 1048576.0, kind))
    print("| role | RSS MiB | peak RSS MiB |")
    print("|---|---|---|")
    for role, rss, hwm in rows:
        print("| %s | %.1f | %.1f |" % (role, rss, hwm))


if __name__ == "__main__":
    main()
