#!/usr/bin/env python3
"""The root under abuse: idle connections plus a login flood, while a user reads and adapters
heartbeat (issue 14, part 3).

Starts a root on 127.0.0.1 and a fake provider adapter (heartbeat every second), then:
  idle   = --idle connections held open without a request, spread over source addresses
           127.0.0.10, .11, ... (--per-address each; the root caps connections per address);
  flood  = --flooders threads posting logins with wrong passwords for random usernames, each
           request from another address of 127.0.1.0/24 (so per-address throttling alone does not
           stop them: the KDF lane's bound does);
  probe  = an authenticated GET /api/v1/clusters from 127.0.0.1 every 50 ms for --seconds,
           timed on a fresh connection each (the worst case: connect + TLS-less request);
  live   = GET /api/v1/providers every second: every adapter must stay "live".
Prints the probe's p50/p99/max, the flood's answers by status, and whether adapters stayed live.
--check exits 1 unless every probe answered 200, adapters stayed live, the flood got only
401/429/503 answers and the root is still running (ctest runs it this way, smaller).
Usage: bench/api_abuse.py [--build build] [--idle 3000] [--per-address 500] [--flooders 8]
                          [--seconds 20] [--check]
"""
import argparse, collections, os, random, shutil, socket, sys, tempfile, threading, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from canopy_procs import RootWithFakeAdapter, call  # noqa: E402

PASSWORD = "bench-admin-password-1"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--idle", type=int, default=3000)
    ap.add_argument("--per-address", type=int, default=500)
    ap.add_argument("--flooders", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    canopyd = os.path.abspath(os.path.join(args.build, "bin", "canopyd"))
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, args.idle + 1024)), hard))

    work = tempfile.mkdtemp(prefix="canopy-abuse-")
    daemons = None
    idle = []
    try:
        daemons = RootWithFakeAdapter(canopyd, work, PASSWORD)
        port, token = daemons.port, daemons.token

        # Idle connections, spread over source addresses.
        refused_idle = 0
        for i in range(args.idle):
            src = "127.0.0.%d" % (10 + i // args.per_address)
            s = socket.socket()
            s.bind((src, 0))
            s.settimeout(5)
            try:
                s.connect(("127.0.0.1", port))
                idle.append(s)
            except OSError:
                refused_idle += 1
                s.close()
        time.sleep(0.5)
        # Connections the root refused at once (503 + close) read EOF or a 503 now.
        closed = 0
        for s in idle:
            s.setblocking(False)
            try:
                if s.recv(64, socket.MSG_PEEK) is not None:
                    closed += 1
            except BlockingIOError:
                pass
            except OSError:
                closed += 1
        held = len(idle) - closed

        stop = threading.Event()
        flood = collections.Counter()
        flood_lock = threading.Lock()

        def flooder(n):
            rnd = random.Random(n)
            while not stop.is_set():
                src = "127.0.1.%d" % rnd.randrange(1, 250)
                code, _ = call(port, "POST", "/api/v1/auth/login",
                               {"username": "user%d" % rnd.randrange(100000),
                                "password": "wrong-password-%d" % rnd.randrange(1 << 30)},
                               source=src)
                with flood_lock:
                    flood[code] += 1

        live_ok = [True]

        def watch_adapters():
            while not stop.is_set():
                code, provs = call(port, "GET", "/api/v1/providers", None, token)
                if code != 200 or not provs or any(p.get("status") != "live" for p in provs):
                    live_ok[0] = False
                stop.wait(1)

        threads = [threading.Thread(target=flooder, args=(i,)) for i in range(args.flooders)]
        threads.append(threading.Thread(target=watch_adapters))
        for t in threads:
            t.start()
        time.sleep(1)  # the flood is under way
        lat, statuses = [], collections.Counter()
        end = time.time() + args.seconds
        while time.time() < end:
            t0 = time.perf_counter()
            code, _ = call(port, "GET", "/api/v1/clusters", None, token)
            lat.append((time.perf_counter() - t0) * 1000)
            statuses[code] += 1
            time.sleep(0.05)
        stop.set()
        for t in threads:
            t.join()
        alive = daemons.running()
        lat.sort()
        pct = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]
        print("idle connections: %d asked, %d held open, %d refused by the root (503/closed), "
              "%d not connected" % (args.idle, held, closed, refused_idle))
        print("login flood: %d threads, %d requests, answers %s" %
              (args.flooders, sum(flood.values()), dict(sorted(flood.items()))))
        print("GET /api/v1/clusters: %d probes, statuses %s, p50 %.1f ms, p99 %.1f ms, max %.1f ms"
              % (len(lat), dict(statuses), pct(0.5), pct(0.99), lat[-1]))
        print("adapters stayed live: %s; root running: %s" % (live_ok[0], alive))
        if args.check:
            bad_flood = {c: n for c, n in flood.items() if c not in (401, 429, 503)}
            ok = (alive and live_ok[0] and set(statuses) == {200} and not bad_flood)
            if not ok:
                print("CHECK FAILED: bad flood answers %s" % bad_flood)
                print(open(daemons.log).read()[-4000:])
                return 1
        return 0
    finally:
        for s in idle:
            s.close()
        if daemons:
            daemons.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
