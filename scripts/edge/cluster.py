"""A k3s cluster's edge on loopback, from the rendered manifests: the real
Traefik reading them through its Kubernetes providers (fed by FakeKube),
and each Deployment's pods as the exact `shim` processes the manifests
start, on their own loopback addresses, with a kubelet stand-in that runs
the readiness probe and keeps each Service's EndpointSlice as the endpoint
controller would.

What differs from a cluster, and why it does not matter here:
* pods listen on 127.0.1.N instead of pod IPs, with the manifest's ports;
* the image's /shim and /var/task are this build's target dir and
  template.yaml (the image's ENV, pointed here);
* in-cluster names (redis, the SMTP relay, S3) become loopback services or
  unreachable addresses, given as overrides;
* Traefik's static configuration is taken from the HelmChartConfig's values
  (entrypoints, redirect, TLS, trusted proxies, provider options) with the
  entrypoints on loopback ports and one extra trusted proxy standing in for
  Cloudflare.
"""

import base64
import copy
import json
import os
import signal
import subprocess
import threading
import time
import urllib.request

import yaml

from fake_kube import FakeKube

NS = "honeydue"


def load_docs(text):
    return [d for d in yaml.safe_load_all(text) if d]


class Pod:
    """One replica of a Deployment: the container's command as a process."""

    def __init__(self, deployment, ip, env, bin_dir, root, log_dir):
        spec = deployment["spec"]["template"]["spec"]
        (c,) = spec["containers"]
        self.deployment = deployment["metadata"]["name"]
        self.ip = ip
        self.ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
        self.readiness = c["readinessProbe"]
        self.grace = spec.get("terminationGracePeriodSeconds", 30)
        full_env = {"PATH": os.environ.get("PATH", "")}
        full_env.update(env)
        # The image's ENV (Dockerfile), pointed at this build.
        full_env["SHIM_TEMPLATE"] = os.path.join(root, "template.yaml")
        full_env["SHIM_BIN_DIR"] = bin_dir
        # The pod's address: the manifest's ports on this pod's own IP.
        full_env["SHIM_LISTEN"] = f"{ip}:{self.ports['http']}"
        full_env["SHIM_ADMIN_LISTEN"] = f"{ip}:{self.ports['admin']}"
        self.log = open(os.path.join(log_dir, f"{self.deployment}-{ip}.log"), "wb")
        self.proc = subprocess.Popen([os.path.join(bin_dir, "shim"), *c["args"]], env=full_env,
                                     stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
                                     cwd="/", start_new_session=True)
        self.ready = False
        self.terminating = False

    def admin_get(self, path, timeout=2):
        url = f"http://{self.ip}:{self.ports['admin']}{path}"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()
        except OSError:
            return None, ""

    def invocations(self):
        """Invocations the shim counted (every outcome)."""
        status, text = self.admin_get("/_shim/metrics")
        assert status == 200, f"{self.deployment}: metrics answered {status}"
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("shim_invocations_total{"))

    def alive(self):
        return self.proc.poll() is None

    def signal(self, sig):
        if self.alive():
            os.kill(self.proc.pid, sig)

    def stop(self):
        if self.alive():
            self.signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=self.grace)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


class Cluster:
    def __init__(self, docs, *, bin_dir, root, env_for, traefik, helm_values, work,
                 extra_trusted, replicas):
        self.docs = docs
        self.bin_dir = bin_dir
        self.root = root
        self.env_for = env_for
        self.work = work
        self.kube = FakeKube()
        self.pods = []
        self.all_pods = []
        self.lock = threading.Lock()
        self.next_ip = 10
        self.stopping = False
        self.deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"
                            and d["spec"]["template"]["spec"]["containers"][0].get("args", [""])[0]
                            in ("pod", "errors")}
        self.services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
        for d in docs:
            group = d["apiVersion"].split("/")[0] if "/" in d["apiVersion"] else ""
            if d["kind"] in ("Service", "Ingress", "Namespace") or group == "traefik.io":
                self.kube.store.put(copy.deepcopy(d))
        # k3s ships this class with its Traefik.
        self.kube.store.put({"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
                             "metadata": {"name": "traefik"},
                             "spec": {"controller": "traefik.io/ingress-controller"}})
        for name in self.services:
            self._publish(name)
        for name, d in self.deployments.items():
            for _ in range(replicas.get(name, 1)):
                self.start_pod(name)
        self.traefik_ports = {"web": free_port(), "websecure": free_port()}
        args = traefik_args(helm_values, self.traefik_ports, self.kube.url, extra_trusted)
        self.traefik_log = open(os.path.join(work, "traefik.log"), "wb")
        self.traefik = subprocess.Popen([traefik, *args], stdout=self.traefik_log,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        start_new_session=True)
        self.kubelet = threading.Thread(target=self._kubelet, daemon=True)
        self.kubelet.start()

    # -- pods and endpoints ---------------------------------------------------------

    def start_pod(self, deployment):
        d = self.deployments[deployment]
        with self.lock:
            ip = f"127.0.1.{self.next_ip}"
            self.next_ip += 1
        (c,) = d["spec"]["template"]["spec"]["containers"]
        pod = Pod(d, ip, self.env_for(c), self.bin_dir, self.root, self.work)
        pod.probe_due = 0.0
        pod.failures = 0
        with self.lock:
            self.pods.append(pod)
            self.all_pods.append(pod)
        return pod

    def pods_of(self, deployment):
        with self.lock:
            return [p for p in self.pods if p.deployment == deployment]

    def _service_of(self, deployment):
        sel = self.deployments[deployment]["spec"]["selector"]["matchLabels"]
        for name, s in self.services.items():
            if all(sel.get(k) == v for k, v in s["spec"]["selector"].items()):
                return name
        return None

    def _publish(self, service):
        """The Service's EndpointSlice from its pods' state."""
        with self.lock:
            pods = [p for p in self.pods if self._service_of(p.deployment) == service and p.alive()]
        endpoints = [{
            "addresses": [p.ip],
            "conditions": {"ready": p.ready and not p.terminating,
                           "serving": p.ready, "terminating": p.terminating},
        } for p in pods]
        s = self.services[service]
        ports = []
        for sp in s["spec"]["ports"]:
            target = sp.get("targetPort", sp["port"])
            number = next((p.ports.get(target) for p in pods if isinstance(target, str)), None)
            if isinstance(target, int):
                number = target
            ports.append({"name": sp.get("name", ""), "port": number or 8080, "protocol": "TCP"})
        self.kube.store.put({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{service}-pods", "namespace": NS,
                         "labels": {"kubernetes.io/service-name": service}},
            "addressType": "IPv4", "endpoints": endpoints, "ports": ports,
        })

    def _kubelet(self):
        """Readiness probes on each pod's schedule; endpoints follow them."""
        while not self.stopping:
            now = time.monotonic()
            with self.lock:
                pods = list(self.pods)
            for p in pods:
                if now < p.probe_due:
                    continue
                probe = p.readiness
                p.probe_due = now + probe.get("periodSeconds", 10)
                if not p.alive():
                    continue
                path = probe["httpGet"]["path"]
                port = probe["httpGet"]["port"]
                port = p.ports[port] if isinstance(port, str) else port
                try:
                    with urllib.request.urlopen(f"http://{p.ip}:{port}{path}",
                                                timeout=probe.get("timeoutSeconds", 1)) as r:
                        ok = 200 <= r.status < 400
                except Exception:
                    ok = False
                was = p.ready
                if ok:
                    p.failures = 0
                    p.ready = True
                else:
                    p.failures += 1
                    if p.failures >= probe.get("failureThreshold", 3):
                        p.ready = False
                if was != p.ready:
                    self._publish(self._service_of(p.deployment))
            # A pod whose process ended leaves its Service.
            for p in pods:
                if not p.alive() and not getattr(p, "gone", False):
                    p.gone = True
                    with self.lock:
                        self.pods.remove(p)
                    self._publish(self._service_of(p.deployment))
            time.sleep(0.05)

    def terminate(self, pod, mark_terminating):
        """Deletes a pod as Kubernetes does: with `mark_terminating`, the
        endpoint is marked terminating at once (the endpoint controller saw
        the deletion first); otherwise only failing readiness removes it."""
        if mark_terminating:
            pod.terminating = True
            self._publish(self._service_of(pod.deployment))
        pod.signal(signal.SIGTERM)

    def wait_ready(self, pod, within=30):
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if pod.ready:
                return
            assert pod.alive(), f"{pod.deployment} at {pod.ip} exited: see {pod.log.name}"
            time.sleep(0.05)
        raise AssertionError(f"{pod.deployment} at {pod.ip} never became ready: see {pod.log.name}")

    def stop(self):
        self.stopping = True
        with self.lock:
            pods = list(self.all_pods)
        for p in pods:
            p.signal(signal.SIGTERM)
        if self.traefik.poll() is None:
            self.traefik.terminate()
        for p in pods:
            p.stop()
        try:
            self.traefik.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.traefik.kill()
        self.traefik_log.close()
        self.kube.stop()


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def traefik_args(values, ports, kube_url, extra_trusted):
    """Traefik's static configuration from the HelmChartConfig's values, as
    the chart passes it (entrypoints on the given loopback ports)."""
    args = []
    for name in ("web", "websecure"):
        v = values["ports"][name]
        args.append(f"--entryPoints.{name}.address=127.0.0.1:{ports[name]}")
        trusted = list(v.get("forwardedHeaders", {}).get("trustedIPs", [])) + list(extra_trusted)
        if trusted:
            args.append(f"--entryPoints.{name}.forwardedHeaders.trustedIPs={','.join(trusted)}")
        redirect = v.get("redirections", {}).get("entryPoint")
        if redirect:
            args.append(f"--entryPoints.{name}.http.redirections.entryPoint.to={redirect['to']}")
            args.append(f"--entryPoints.{name}.http.redirections.entryPoint.scheme={redirect.get('scheme', 'https')}")
            args.append(f"--entryPoints.{name}.http.redirections.entryPoint.permanent={str(redirect.get('permanent', False)).lower()}")
        if v.get("tls", {}).get("enabled"):
            args.append(f"--entryPoints.{name}.http.tls=true")
    providers = values.get("providers", {})
    for provider, key in (("kubernetesingress", "kubernetesIngress"), ("kubernetescrd", "kubernetesCRD")):
        args.append(f"--providers.{provider}.endpoint={kube_url}")
        if providers.get(key, {}).get("allowEmptyServices"):
            args.append(f"--providers.{provider}.allowEmptyServices=true")
    g = values.get("global", {})
    args.append(f"--global.checkNewVersion={str(g.get('checkNewVersion', True)).lower()}")
    args.append(f"--global.sendAnonymousUsage={str(g.get('sendAnonymousUsage', False)).lower()}")
    args.append("--log.level=ERROR")
    return args


def tls_secret(name, cert_pem, key_pem):
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": name, "namespace": NS},
            "data": {"tls.crt": base64.b64encode(cert_pem).decode(),
                     "tls.key": base64.b64encode(key_pem).decode()}}


def env_from_manifest(container, config, secrets, overrides):
    """A container's environment: envFrom ConfigMap, then env (values and
    secretKeyRefs), then `overrides` (in-cluster names that do not resolve
    here)."""
    env = {}
    for ef in container.get("envFrom", []):
        ref = ef.get("configMapRef", {}).get("name")
        if ref:
            env.update(config[ref])
    for e in container.get("env", []):
        if "value" in e:
            env[e["name"]] = str(e["value"])
        else:
            r = e["valueFrom"]["secretKeyRef"]
            if r["key"] in secrets:
                env[e["name"]] = secrets[r["key"]]
            elif not r.get("optional"):
                raise AssertionError(f"{e['name']}: required secret key {r['key']} has no test value")
    env.update(overrides)
    return env


def json_dumps(x):
    return json.dumps(x, sort_keys=True)
