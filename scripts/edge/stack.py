"""The production edge on loopback, shared by the edge test
(edge_test.py) and the fault-injection run (scripts/chaos/chaos.py): the
production overlay rendered at a release tag, its migrate Job run as its
manifest says, the real Traefik and every Deployment's pods as processes
(cluster.py), and an HTTPS client that reaches Traefik as a client behind
the CDN does.
"""

import datetime
import http.client
import itertools
import json
import os
import shutil
import socket
import ssl
import subprocess
import time

import yaml

from cluster import Cluster, env_from_manifest, load_docs, tls_secret

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.environ.get("EDGE_BIN_DIR") or os.path.join(
    os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target"), "debug")
# The "CDN" in front of Traefik: a trusted proxy on loopback standing in
# for Cloudflare's ranges. Untrusted clients come from 127.0.0.3.
CDN, STRANGER = "127.0.0.2", "127.0.0.3"

_clients = itertools.count(1)


def fresh_client():
    """A client address of its own (198.18.0.0/15, the benchmarking range)."""
    n = next(_clients)
    return f"198.18.{n // 250 % 250}.{n % 250 + 1}"


class EdgeConnection(http.client.HTTPSConnection):
    """HTTPS to Traefik's loopback port, with the public host as SNI."""

    def __init__(self, host, port, context, source, timeout=30):
        super().__init__(host, port, context=context, timeout=timeout, source_address=(source, 0))
        self.edge_port = port

    def connect(self):
        sock = socket.create_connection(("127.0.0.1", self.edge_port), self.timeout, self.source_address)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


class Answer:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def __repr__(self):
        return f"{self.status} {self.headers.get('content-type')} {self.body[:200]!r}"


class Edge:
    def __init__(self, host, port, ca_file):
        self.host, self.port = host, port
        self.ctx = ssl.create_default_context(cafile=ca_file)

    def connection(self, source="127.0.0.1", sni=None):
        return EdgeConnection(sni or self.host, self.port, self.ctx, source)

    def request(self, method, path, body=None, headers=None, source=CDN, host=None, xff="fresh", conn=None):
        h = {"Host": host or self.host}
        if xff == "fresh":
            xff = fresh_client() if source == CDN else None
        if xff:
            h["X-Forwarded-For"] = xff
        if body is not None:
            h.setdefault("Content-Type", "application/json")
        h.update(headers or {})
        own = conn is None
        c = conn or self.connection(source)
        try:
            c.request(method, path, body=body, headers=h)
            r = c.getresponse()
            return Answer(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
        finally:
            if own:
                c.close()


def template_routes():
    """(function, method, path) for every HttpApi event of template.yaml."""
    class Loader(yaml.SafeLoader):
        pass
    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    t = yaml.load(open(os.path.join(ROOT, "template.yaml")), Loader=Loader)
    out = []
    for r in t["Resources"].values():
        if r.get("Type") != "AWS::Serverless::Function":
            continue
        fn = r["Metadata"]["BuildProperties"]["Binary"]
        for e in (r["Properties"].get("Events") or {}).values():
            if e["Type"] == "HttpApi":
                out.append((fn, e["Properties"]["Method"].upper(), e["Properties"]["Path"]))
    return out


def concrete(path):
    return path.replace("{proxy+}", "x/y").replace("{", "").replace("}", "") \
        .replace("/id/", "/1/").replace("/token/", "/abc/")


def render(work, tag):
    shutil.copytree(os.path.join(ROOT, "k3s"), os.path.join(work, "k3s"))
    overlay = os.path.join(work, "k3s", "overlays", "production")
    subprocess.run([os.path.join(ROOT, "scripts", "release.sh"), tag, overlay], check=True)
    out = subprocess.run(["kubectl", "kustomize", overlay], check=True, capture_output=True, text=True).stdout
    return load_docs(out)


def test_ca(work, host):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "honeyDue edge test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    ca_file = os.path.join(work, "ca.pem")
    with open(ca_file, "wb") as f:
        f.write(ca.public_bytes(serialization.Encoding.PEM))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return ca_file, leaf.public_bytes(serialization.Encoding.PEM), key_pem


class Stack:
    """The running edge: `cluster` (Traefik and the pods), `edge` (the
    client), `env_for` (a container's environment) and `docs` (the rendered
    manifests)."""

    def __init__(self, cluster, edge, docs, env_for):
        self.cluster, self.edge, self.docs, self.env_for = cluster, edge, docs, env_for

    def container(self, kind, name):
        """The container of the workload `name` (Job, CronJob, Deployment)."""
        for d in self.docs:
            if d["kind"] == kind and d["metadata"]["name"] == name:
                spec = d["spec"]["jobTemplate"]["spec"] if kind == "CronJob" else d["spec"]
                (c,) = spec["template"]["spec"]["containers"]
                return c
        raise KeyError(f"{kind} {name}")

    def job_command(self, container, extra=()):
        """A Job's or CronJob's container as a command and its environment
        (the image's ENV pointed at this build)."""
        env = {"PATH": os.environ.get("PATH", ""), **self.env_for(container),
               "SHIM_TEMPLATE": os.path.join(ROOT, "template.yaml"), "SHIM_BIN_DIR": BIN}
        return [os.path.join(BIN, "shim"), *container["args"], *extra], env

    def stop(self):
        self.cluster.stop()


def start(work, *, tag, secrets, overrides, replicas=None):
    """Renders the overlay at `tag`, runs its migrate Job, starts Traefik
    and the pods, and returns once every function answers through Traefik."""
    docs = render(work, tag)
    (ingress,) = [d for d in docs if d["kind"] == "Ingress"]
    host = ingress["spec"]["rules"][0]["host"]
    ca_file, cert_pem, key_pem = test_ca(work, host)
    (tlsstore,) = [d for d in docs if d["kind"] == "TLSStore"]
    values = yaml.safe_load(
        yaml.safe_load(open(os.path.join(ROOT, "k3s", "traefik", "helmchartconfig.yaml")))["spec"]["valuesContent"])
    config = {d["metadata"]["name"]: {k: str(v) for k, v in d.get("data", {}).items()}
              for d in docs if d["kind"] == "ConfigMap"}

    def env_for(container):
        return env_from_manifest(container, config, secrets, overrides)

    # The release's migrate Job, as its manifest runs it.
    (job,) = [d for d in docs if d["kind"] == "Job"]
    assert job["metadata"]["name"] == f"migrate-{tag}", job["metadata"]["name"]
    stack = Stack(None, None, docs, env_for)
    cmd, env = stack.job_command(stack.container("Job", f"migrate-{tag}"))
    subprocess.run(cmd, env=env, check=True, cwd="/", stdout=subprocess.DEVNULL)

    cluster = Cluster(docs, bin_dir=BIN, root=ROOT, env_for=env_for, traefik="traefik",
                      helm_values=values, work=work, extra_trusted=[f"{CDN}/32"],
                      replicas=replicas or {})
    stack.cluster = cluster
    try:
        cluster.kube.store.put(tls_secret(tlsstore["spec"]["defaultCertificate"]["secretName"], cert_pem, key_pem))
        edge = Edge(host, cluster.traefik_ports["websecure"], ca_file)
        stack.edge = edge
        for p in list(cluster.pods):
            cluster.wait_ready(p)
        # Traefik has every function once one route of each is answered by
        # the function (not the edge's 503 for an endpoint it has not seen).
        first = {}
        for fn, method, path in template_routes():
            first.setdefault(fn, concrete(path))
        deadline = time.monotonic() + 30
        for fn, path in first.items():
            while True:
                try:
                    a = edge.request("GET", path)
                    if (a.json() or {}).get("error", {}).get("source") != "edge":
                        break
                except (OSError, http.client.HTTPException):
                    pass
                assert time.monotonic() < deadline, f"Traefik never routed {path}: see {work}/traefik.log"
                time.sleep(0.2)
    except BaseException:
        cluster.stop()
        raise
    return stack
