"""Shared by the Python benchmarks and tests: a root plus a fake provider adapter as child
processes on loopback, one-shot JSON calls (optionally from another loopback source address),
and stopping everything."""
import http.client, json, os, signal, socket, subprocess, time


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def call(port, method, path, body=None, token="", source="127.0.0.1", timeout=10):
    """(status, parsed JSON or None); status 0 when the connection failed."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout,
                                      source_address=(source, 0))
    try:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = "Bearer " + token
        conn.request(method, path, json.dumps(body) if body is not None else None, headers)
        r = conn.getresponse()
        text = r.read().decode()
        try:
            data = json.loads(text) if text else None
        except ValueError:
            data = None
        return r.status, data
    except OSError:
        return 0, None
    finally:
        conn.close()


class RootWithFakeAdapter:
    """`canopyd root` on 127.0.0.1 (admin password `password`) and a live fake adapter, under
    `work`. .port, .url, .token (admin), .procs; stop() ends both."""

    def __init__(self, canopyd, work, password, root_args=()):
        self.env = dict(os.environ, CANOPY_ADMIN_PASSWORD=password, CANOPY_LOG_LEVEL="warn")
        self.port = free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self.procs = [subprocess.Popen(
            [canopyd, "root", "--listen", "127.0.0.1:%d" % self.port, "--data-dir",
             os.path.join(work, "root"), "--heartbeat-interval", "1"] + list(root_args),
            stdout=open(os.path.join(work, "root.log"), "w"), stderr=subprocess.STDOUT,
            env=self.env)]
        self.log = os.path.join(work, "root.log")
        for _ in range(100):
            if call(self.port, "GET", "/healthz")[0] == 200:
                break
            time.sleep(0.1)
        _, login = call(self.port, "POST", "/api/v1/auth/login",
                        {"username": "admin", "password": password})
        self.token = login["access_token"]
        _, tok = call(self.port, "POST", "/api/v1/provider-tokens", {}, self.token)
        self.procs.append(subprocess.Popen(
            [canopyd, "provider", "--type", "fake", "--root", self.url, "--token", tok["token"],
             "--listen", "127.0.0.1:0", "--data-dir", os.path.join(work, "adapter")],
            stdout=open(os.path.join(work, "adapter.log"), "w"), stderr=subprocess.STDOUT,
            env=self.env))
        for _ in range(100):
            code, provs = call(self.port, "GET", "/api/v1/providers", None, self.token)
            if code == 200 and provs and all(p.get("status") == "live" for p in provs):
                break
            time.sleep(0.1)

    def running(self):
        return all(p.poll() is None for p in self.procs)

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
