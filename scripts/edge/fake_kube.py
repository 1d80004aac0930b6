"""A small stand-in for the Kubernetes API server: just enough list + watch
for Traefik's kubernetesIngress and kubernetesCRD providers (client-go
informers) to read the rendered manifests as they would on a cluster.

Objects live in memory; `put` and `delete` bump a global resourceVersion
and wake every watch whose collection (and namespace) matches. Unknown
collections answer an empty list, so a provider that asks for a kind the
manifests lack sees "none", as on a real cluster with the CRDs installed.
"""

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

# plural -> (group, version, kind); "" is the core group.
KINDS = {
    "services": ("", "v1", "Service"),
    "secrets": ("", "v1", "Secret"),
    "endpoints": ("", "v1", "Endpoints"),
    "namespaces": ("", "v1", "Namespace"),
    "nodes": ("", "v1", "Node"),
    "configmaps": ("", "v1", "ConfigMap"),
    "endpointslices": ("discovery.k8s.io", "v1", "EndpointSlice"),
    "ingresses": ("networking.k8s.io", "v1", "Ingress"),
    "ingressclasses": ("networking.k8s.io", "v1", "IngressClass"),
}
TRAEFIK_PLURALS = {
    "middlewares": "Middleware", "middlewaretcps": "MiddlewareTCP",
    "ingressroutes": "IngressRoute", "ingressroutetcps": "IngressRouteTCP",
    "ingressrouteudps": "IngressRouteUDP", "tlsoptions": "TLSOption",
    "tlsstores": "TLSStore", "traefikservices": "TraefikService",
    "serverstransports": "ServersTransport",
    "serverstransporttcps": "ServersTransportTCP",
}
for _plural, _kind in TRAEFIK_PLURALS.items():
    KINDS[_plural] = ("traefik.io", "v1alpha1", _kind)
PLURAL_OF = {(g, k): p for p, (g, _v, k) in KINDS.items()}

PATH = re.compile(
    r"^/(?:api/(?P<cv>v1)|apis/(?P<g>[^/]+)/(?P<gv>[^/]+))"
    r"(?:/namespaces/(?P<ns>[^/]+))?/(?P<plural>[a-z]+)(?:/(?P<name>[^/]+))?$"
)


class Store:
    def __init__(self):
        self.cond = threading.Condition()
        self.rv = 100
        self.objects = {}  # (plural, ns, name) -> obj
        self.log = []  # (rv, plural, ns, type, obj)
        self.requests = []  # paths seen, for debugging
        self.closed = False

    def put(self, obj):
        group = obj["apiVersion"].split("/")[0] if "/" in obj["apiVersion"] else ""
        plural = PLURAL_OF[(group, obj["kind"])]
        meta = obj.setdefault("metadata", {})
        ns = meta.get("namespace", "")
        with self.cond:
            self.rv += 1
            key = (plural, ns, meta["name"])
            kind = "MODIFIED" if key in self.objects else "ADDED"
            meta.setdefault("uid", f"uid-{plural}-{ns}-{meta['name']}")
            meta.setdefault("creationTimestamp", "2026-01-01T00:00:00Z")
            meta["resourceVersion"] = str(self.rv)
            self.objects[key] = json.loads(json.dumps(obj))
            self.log.append((self.rv, plural, ns, kind, self.objects[key]))
            self.cond.notify_all()

    def delete(self, kind, ns, name, group=""):
        plural = PLURAL_OF[(group, kind)]
        with self.cond:
            obj = self.objects.pop((plural, ns, name), None)
            if obj is None:
                return
            self.rv += 1
            obj = json.loads(json.dumps(obj))
            obj["metadata"]["resourceVersion"] = str(self.rv)
            self.log.append((self.rv, plural, ns, "DELETED", obj))
            self.cond.notify_all()

    def get(self, kind, ns, name, group=""):
        with self.cond:
            o = self.objects.get((PLURAL_OF[(group, kind)], ns, name))
            return json.loads(json.dumps(o)) if o else None

    def close(self):
        with self.cond:
            self.closed = True
            self.cond.notify_all()


def _matches(obj, selector):
    if not selector:
        return True
    labels = obj.get("metadata", {}).get("labels", {}) or {}
    for term in selector.split(","):
        if "!=" in term:
            k, v = term.split("!=", 1)
            if labels.get(k) == v:
                return False
        elif "=" in term:
            k, v = term.replace("==", "=").split("=", 1)
            if labels.get(k) != v:
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def make_handler(store):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def _json(self, code, doc):
            body = json.dumps(doc).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            url = urlsplit(self.path)
            q = {k: v[0] for k, v in parse_qs(url.query).items()}
            store.requests.append(self.path)
            if url.path == "/version":
                return self._json(200, {"major": "1", "minor": "34", "gitVersion": "v1.34.0",
                                        "platform": "linux/amd64"})
            m = PATH.match(url.path)
            if not m or m["plural"] not in KINDS:
                return self._json(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                        "reason": "NotFound", "code": 404})
            plural, ns, name = m["plural"], m["ns"], m["name"]
            group, version, kind = KINDS[plural]
            selector = q.get("labelSelector", "")
            if name:
                with store.cond:
                    obj = store.objects.get((plural, ns or "", name))
                if obj is None:
                    return self._json(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                            "reason": "NotFound", "code": 404})
                return self._json(200, obj)
            api_version = f"{group}/{version}" if group else version
            if q.get("watch") in ("true", "1"):
                return self._watch(plural, ns, selector, int(q.get("resourceVersion") or 0),
                                   float(q.get("timeoutSeconds") or 300), api_version, kind,
                                   q.get("sendInitialEvents") == "true")
            with store.cond:
                items = [o for (p, ons, _n), o in sorted(store.objects.items())
                         if p == plural and (ns is None or ons == ns) and _matches(o, selector)]
                rv = store.rv
            return self._json(200, {"kind": f"{kind}List", "apiVersion": api_version,
                                    "metadata": {"resourceVersion": str(rv)}, "items": items})

        def _watch(self, plural, ns, selector, since, timeout, api_version, kind, initial):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            deadline = time.monotonic() + min(timeout, 60)
            sent = since
            try:
                if initial:
                    # A streaming list (client-go's WatchList): every current
                    # object as ADDED, then the bookmark that ends the list.
                    with store.cond:
                        items = [o for (p, ons, _n), o in sorted(store.objects.items())
                                 if p == plural and (ns is None or ons == ns) and _matches(o, selector)]
                        sent = store.rv
                    events = [{"type": "ADDED", "object": o} for o in items]
                    events.append({"type": "BOOKMARK", "object": {
                        "kind": kind, "apiVersion": api_version,
                        "metadata": {"resourceVersion": str(sent),
                                     "annotations": {"k8s.io/initial-events-end": "true"}}}})
                    for e in events:
                        line = json.dumps(e).encode() + b"\n"
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                    self.wfile.flush()
                while True:
                    with store.cond:
                        while not store.closed and not any(
                                rv > sent and p == plural for rv, p, *_ in store.log[-200:]):
                            left = deadline - time.monotonic()
                            if left <= 0:
                                break
                            store.cond.wait(min(left, 1.0))
                        if store.closed or time.monotonic() >= deadline:
                            break
                        events = [(rv, t, o) for rv, p, ons, t, o in store.log
                                  if rv > sent and p == plural and (ns is None or ons == ns)]
                        sent = store.rv
                    for _rv, t, o in events:
                        if not _matches(o, selector):
                            continue
                        line = json.dumps({"type": t, "object": o}).encode() + b"\n"
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                pass
            self.close_connection = True

    return Handler


class FakeKube:
    """The fake API server on 127.0.0.1:port (0 = any free port)."""

    def __init__(self, port=0):
        self.store = Store()
        self.server = ThreadingHTTPServer(("127.0.0.1", port), make_handler(self.store))
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.store.close()
        self.server.shutdown()
        self.server.server_close()
