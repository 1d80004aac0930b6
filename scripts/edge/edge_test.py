#!/usr/bin/env python3
"""The production edge as an operator and a client meet it, in one run:

  the production overlay rendered at a release tag (scripts/release.sh +
  kubectl kustomize) -> the real Traefik 3.7 reading it through its
  kubernetesIngress and kubernetesCRD providers (scripts/edge/fake_kube.py)
  -> every Deployment's pod as the exact `shim` command of its manifest on
  its own loopback address, with readiness probes driving EndpointSlices
  (scripts/edge/cluster.py) -> the function binaries this build ships,
  against a real Postgres and Redis.

Checked through Traefik with Python's http.client (which writes a whole
request body before it reads the answer): every route of template.yaml
reaches its own function; the shim's internals are not reachable; oversized,
unknown-path, unknown-host, rate-limited and no-endpoint errors are the JSON
error shape; security headers on every answer; per-client rate limits
behind a trusted proxy and none for forged headers; the origin certificate
on websecure and the redirect on web; zero failed requests while a pod is
replaced under load, whether its endpoint is marked terminating at SIGTERM
or only failing readiness removes it.

Run by `make test` (and `make edge-check`). Needs DATABASE_URL and REDIS_URL
(scripts/services.sh), kubectl and traefik on PATH (scripts/pytools.sh
kubectl edge), the debug build (cargo build). Loopback only, bounded loops;
everything it starts is stopped at the end. Prints one line per check and
"N passed, M failed".
"""

import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from stack import CDN, STRANGER, concrete, fresh_client, start, template_routes  # noqa: E402

TAG = "0edge0test00"
ROLLOUT_FUNCTION, ROLLOUT_PATH = "api-lookups", "/api/static_data/"
SECURITY_HEADERS = {
    "strict-transport-security": "max-age=15552000; includeSubDomains",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "strict-origin-when-cross-origin",
}

# -- checks -----------------------------------------------------------------------

RESULTS = []


def check(name):
    def wrap(fn):
        def run(*a):
            started = time.monotonic()
            try:
                fn(*a)
                RESULTS.append((name, None))
                print(f"edge: ok    {name} ({time.monotonic() - started:.1f}s)", flush=True)
            except Exception as e:  # noqa: BLE001 - every failure is reported
                RESULTS.append((name, e))
                print(f"edge: FAIL  {name} ({time.monotonic() - started:.1f}s)\n"
                      + "".join("    " + line for line in traceback.format_exception(e)), flush=True)
        return run
    return wrap


def assert_error_shape(a, status, what):
    assert a.status == status, f"{what}: {a!r}"
    assert a.headers.get("content-type", "").startswith("application/json"), f"{what}: {a!r}"
    doc = a.json()
    assert isinstance(doc, dict) and isinstance(doc.get("error"), dict), f"{what}: {a!r}"
    assert doc["error"].get("code") and doc["error"].get("message"), f"{what}: {a!r}"
    assert_security_headers(a, what)
    return doc["error"]


def assert_security_headers(a, what):
    for k, v in SECURITY_HEADERS.items():
        assert a.headers.get(k) == v, f"{what}: header {k} is {a.headers.get(k)!r}, want {v!r}"
    assert "server" not in a.headers, f"{what}: Server header {a.headers['server']!r}"


def run_checks(cluster, edge, ports):
    @check("every route of template.yaml reaches its own function through Traefik")
    def routes():
        routes = template_routes()
        assert len(routes) > 50, f"only {len(routes)} routes"
        for fn, method, path in routes:
            pods = cluster.pods_of(fn)
            assert pods, f"{fn}: no pod"
            before = sum(p.invocations() for p in pods)
            m = "GET" if method == "ANY" else method
            a = edge.request(m, concrete(path), body=b"{}" if m in ("POST", "PUT", "PATCH") else None)
            after = sum(p.invocations() for p in pods)
            assert after == before + 1, f"{method} {path}: {fn} was not invoked ({a!r})"
            # The function's own answer (401 without a token, 422, 501 for a
            # store not configured here...), never the edge's or the shim's
            # routing errors.
            assert a.status not in (404, 405, 502, 503, 504) or (a.json() or {}).get("error", {}).get("source") is None, \
                f"{method} {path}: {a!r}"
            assert_security_headers(a, f"{method} {path}")

    @check("the shim's internals are not reachable through Traefik")
    def internals():
        for method, path in [("GET", "/_shim/metrics"), ("GET", "/_shim/ready"), ("GET", "/_shim/live"),
                             ("POST", "/2015-03-31/functions/web/invocations"),
                             ("POST", "/2015-03-31/functions/function/invocations"),
                             ("POST", "/2015-03-31/functions/api-auth/invocations")]:
            a = edge.request(method, path, body=json.dumps({"requestContext": {"http": {"sourceIp": "1.2.3.4"}}}).encode()
                             if method == "POST" else None)
            err = assert_error_shape(a, 404, f"{method} {path}")
            assert err["code"] == "shim_not_found", f"{method} {path}: {a!r}"
            assert b"shim_ready" not in a.body and b"sourceIp" not in a.body, f"{method} {path}: {a!r}"
        # Nor on any pod's public port; the admin port answers (for kubelet
        # and Prometheus) but is no Service's target.
        for p in cluster.pods:
            c = http.client.HTTPConnection(p.ip, p.ports["http"], timeout=5)
            c.request("GET", "/_shim/metrics")
            r = c.getresponse()
            body = r.read()
            assert r.status == 404 and b"shim_ready" not in body, f"{p.deployment} public /_shim/metrics: {r.status}"
            assert p.admin_get("/_shim/ready")[0] == 200
        for s in cluster.services.values():
            for sp in s["spec"]["ports"]:
                assert sp.get("targetPort") not in ("admin", 9090), f"Service {s['metadata']['name']} exposes admin"

    @check("oversized bodies get a JSON 413, also when the client writes the whole body first")
    def oversized():
        for path in ("/api/tasks/", "/api/auth/login/", "/api/residences/"):
            a = edge.request("POST", path, body=b"x" * (7 * 1024 * 1024))
            err = assert_error_shape(a, 413, f"POST 7 MiB {path}")
            assert err["code"] in ("payload_too_large", "shim_payload_too_large"), a
        # and the connection's next request is served normally
        assert edge.request("GET", "/api/health/").status == 200

    @check("unknown paths and unknown hosts get a JSON 404")
    def unknown():
        err = assert_error_shape(edge.request("GET", "/no/such/path"), 404, "unknown path")
        assert err["code"] == "shim_not_found"
        a = edge.request("GET", "/api/health/", host="other.example.org")
        err = assert_error_shape(a, 404, "unknown host")
        assert err.get("source") == "edge", a

    @check("a client over its rate limit gets a JSON 429 with Retry-After")
    def rate_limited():
        seen = []
        conn = edge.connection(STRANGER)
        try:
            for _ in range(400):
                a = edge.request("GET", "/api/health/", source=STRANGER, conn=conn)
                seen.append(a.status)
                if a.status == 429:
                    break
        finally:
            conn.close()
        assert 429 in seen, f"never limited: {sorted(set(seen))}"
        assert all(s in (200, 429) for s in seen), sorted(set(seen))
        err = assert_error_shape(a, 429, "rate limited")
        assert err["code"] == "rate_limited" and a.headers.get("retry-after", "").isdigit(), a

    @check("clients behind a trusted proxy have their own buckets; a forged X-Forwarded-For does not")
    def per_client():
        def burst(source, xff_of):
            """200 requests as fast as one connection goes; how many got 429."""
            conn = edge.connection(source)
            limited = 0
            try:
                for i in range(200):
                    limited += edge.request("GET", "/api/health/", source=source, xff=xff_of(i),
                                            conn=conn).status == 429
            finally:
                conn.close()
            return limited
        # Behind the trusted proxy: one client is limited, 200 different
        # clients are not (each has its own bucket of 100).
        one = fresh_client()
        assert burst(CDN, lambda i: one) > 0, "one client behind the proxy was never limited"
        many = [fresh_client() for _ in range(200)]
        assert burst(CDN, lambda i: many[i]) == 0, "distinct clients behind the proxy share a bucket"
        # An untrusted peer naming a different client each time is still
        # one client: its own address is the key.
        forged = burst(STRANGER, lambda i: fresh_client())
        assert forged > 0, "a forged X-Forwarded-For got a fresh bucket per request"

    @check("TLS: websecure serves the origin certificate, web redirects to HTTPS")
    def tls():
        c = edge.connection()
        c.connect()
        cert = c.sock.getpeercert()
        c.close()
        names = [v for k, v in cert.get("subjectAltName", []) if k == "DNS"]
        assert edge.host in names, names
        raw = http.client.HTTPConnection("127.0.0.1", ports["web"], timeout=5)
        raw.request("GET", "/api/health/?x=1", headers={"Host": edge.host})
        r = raw.getresponse()
        r.read()
        assert r.status in (301, 308), r.status
        loc = urllib.parse.urlsplit(r.getheader("location"))
        assert (loc.scheme, loc.hostname, loc.path, loc.query) == ("https", edge.host, "/api/health/", "x=1"), loc

    @check("zero failed requests while a pod is replaced under load (endpoint marked terminating at SIGTERM)")
    def rollout_terminating():
        rollout(cluster, edge, mark_terminating=True)

    @check("zero failed requests while a pod is replaced under load (only readiness removes it)")
    def rollout_readiness():
        rollout(cluster, edge, mark_terminating=False)

    @check("a Service with no ready pod answers a JSON 503 with Retry-After")
    def no_endpoint():
        (pod,) = cluster.pods_of("api-docs")
        cluster.terminate(pod, mark_terminating=True)
        pod.proc.wait(timeout=pod.grace)
        deadline = time.monotonic() + 15
        while True:
            a = edge.request("GET", "/api/openapi.json")
            if a.status == 503 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        err = assert_error_shape(a, 503, "no endpoint")
        assert a.headers.get("retry-after", "").isdigit(), a
        assert err.get("source") == "edge", a

    for c in (routes, internals, oversized, unknown, tls, rate_limited, per_client,
              rollout_terminating, rollout_readiness, no_endpoint):
        c()


def rollout(cluster, edge, mark_terminating):
    """Replaces one of the function's pods as a rolling update does (surge
    one, wait ready, delete one) while 4 clients keep requesting."""
    stop = threading.Event()
    lock = threading.Lock()
    counts = {"ok": 0, "failed": 0}
    failures = []

    def client():
        conn = edge.connection(CDN)
        while not stop.is_set():
            try:
                a = edge.request("GET", ROLLOUT_PATH, conn=conn)
                ok = a.status == 200
                detail = repr(a)
            except (OSError, http.client.HTTPException) as e:
                ok, detail = False, repr(e)
                conn.close()
                conn = edge.connection(CDN)
            with lock:
                counts["ok" if ok else "failed"] += 1
                if not ok and len(failures) < 5:
                    failures.append(detail)
        conn.close()

    old = cluster.pods_of(ROLLOUT_FUNCTION)[0]
    threads = [threading.Thread(target=client, daemon=True) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(1)
        new = cluster.start_pod(ROLLOUT_FUNCTION)
        cluster.wait_ready(new)
        time.sleep(3)  # the new endpoint reaches Traefik (provider delay)
        before = counts["ok"]
        cluster.terminate(old, mark_terminating)
        old.proc.wait(timeout=old.grace)
        time.sleep(1)
        during = counts["ok"] - before
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=35)
    assert old.proc.returncode == 0, f"the old pod exited {old.proc.returncode}"
    assert during > 50, f"only {during} requests while the pod left"
    assert counts["failed"] == 0, f"{counts['failed']} of {sum(counts.values())} failed: {failures}"
    print(f"edge:       {counts['ok']} requests, 0 failed", flush=True)


# -- set-up --------------------------------------------------------------------------

def database():
    url = urllib.parse.urlsplit(os.environ["DATABASE_URL"])
    name = f"honeydue_test_edge_{os.getpid()}"
    admin = urllib.parse.urlunsplit(url._replace(path="/postgres"))
    subprocess.run(["psql", admin, "-qc", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)',
                    "-c", f'CREATE DATABASE "{name}"'], check=True, stdout=subprocess.DEVNULL)
    return urllib.parse.urlunsplit(url._replace(path="/" + name)), admin, name


def main():
    started = time.monotonic()
    work = tempfile.mkdtemp(prefix="honeydue-edge-")
    db_url, db_admin, db_name = database()
    secrets = {"DATABASE_URL": db_url, "APP_SECRET": "edge-test-secret-0123456789",
               "S3_ACCESS_KEY_ID": "edge", "S3_SECRET_ACCESS_KEY": "edge-secret"}
    # In-cluster names that do not resolve here: the real Redis on
    # loopback; S3 and SMTP at addresses that refuse (no route uses them).
    overrides = {"REDIS_URL": os.environ.get("REDIS_URL", ""), "S3_ENDPOINT": "http://127.0.0.1:9",
                 "S3_FORCE_PATH_STYLE": "true", "SMTP_HOST": "127.0.0.1", "SMTP_PORT": "9",
                 "AWS_LAMBDA_LOG_LEVEL": "warn"}
    if os.environ.get("EDGE_TRY_DRAIN_DELAY"):
        # To see the rollout checks fail with another drain delay (2 s was
        # the shim's default before it was derived from the probes).
        overrides["SHIM_DRAIN_DELAY"] = os.environ["EDGE_TRY_DRAIN_DELAY"]
    stack = None
    try:
        stack = start(work, tag=TAG, secrets=secrets, overrides=overrides,
                      replicas={ROLLOUT_FUNCTION: 2})
        cluster = stack.cluster
        print(f"edge: {len(cluster.pods)} pods and Traefik up in {time.monotonic() - started:.1f}s", flush=True)
        run_checks(cluster, stack.edge, cluster.traefik_ports)
    finally:
        if stack:
            stack.stop()
        subprocess.run(["psql", db_admin, "-qc", f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)'],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    failed = [n for n, e in RESULTS if e]
    print(f"edge: {len(RESULTS) - len(failed)} passed, {len(failed)} failed "
          f"({time.monotonic() - started:.0f}s; logs in {work})")
    if not failed:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    sys.exit(main())
