#!/usr/bin/env python3
"""Faults under load (`make chaos`; `make test` runs the short version).

The production edge of scripts/edge (the rendered overlay, the real Traefik,
every Deployment's pods as their manifests' `shim` processes, the CronJobs'
commands) in front of services this run owns, so it may break them: its own
Postgres cluster, Redis, an S3-compatible server (moto, behind a gate that
can refuse connections) and an SMTP sink (aiosmtpd). Virtual users keep a
steady, bounded load of real API traffic through Traefik (sign-ins, board
reads, task creation and completions with Idempotency-Keys, uploads,
sign-ups whose verification emails the outbox delivers), retrying as an
app does (the same key, after Retry-After), while faults are injected one
at a time. Then the database and the mail sink are checked against what
the clients were told.

For each fault, a row of the table (printed, and written to --out):
requests sent, answered 2xx, answered with a documented error (the JSON
error shape; Retry-After on 429 and 503), answered otherwise, connection
errors, the slowest answer and the slowest failure, the time from the fault's end until
the last failure, and, checked afterwards: writes acknowledged but
missing, duplicated writes or emails, emails and notifications never
delivered. The run fails if any of the last three is not 0, if an answer
is undocumented, if a request took longer than the function's timeout, or
if the load never recovers.

    python3 chaos.py [--short] [--out FILE]

Needs the debug build, traefik and kubectl (scripts/pytools.sh kubectl
edge), moto and aiosmtpd (HONEYDUE_PYTHON's venv), Postgres' and Redis'
binaries. Loopback only; everything it starts is stopped at the end.
"""

import argparse
import collections
import datetime
import glob
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "edge"))
from stack import CDN, ROOT, Answer, start  # noqa: E402

TAG = "0chaos0test0"
FUNCTION_TIMEOUT = 10  # template.yaml Globals: every HTTP function
BUCKET = "honeydue-uploads"


def log(msg):
    print(f"chaos: {msg}", flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, within=30):
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


# -- the services this run owns ---------------------------------------------------


class Postgres:
    """A cluster of its own (initdb), so it can be restarted and frozen."""

    def __init__(self, home):
        self.bindir = sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1]
        self.home = home
        self.data = os.path.join(home, "data")
        self.port = free_port()
        os.makedirs(home, exist_ok=True)
        if os.getuid() == 0:
            os.chmod(home, 0o755)
            subprocess.run(["chown", "postgres", home], check=True)
        self._as_owner([f"{self.bindir}/initdb", "-D", self.data, "-A", "trust", "-U", "postgres", "--no-sync"])
        self.start()
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/honeydue"
        self.psql("postgres", "CREATE DATABASE honeydue")

    def _as_owner(self, cmd, **kw):
        if os.getuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, **kw)

    def _ctl(self, *args):
        self._as_owner([f"{self.bindir}/pg_ctl", "-D", self.data, "-w", "-t", "60",
                        "-l", os.path.join(self.home, "postgres.log"), *args])

    def start(self):
        self._ctl("-o", f"-p {self.port} -k {self.home} -c listen_addresses=127.0.0.1 -c fsync=off "
                  "-c max_connections=300", "start")

    def restart_fast(self):
        self._ctl("-m", "fast", "stop")
        self.start()

    def pids(self):
        with open(os.path.join(self.data, "postmaster.pid")) as f:
            main = int(f.readline())
        out = subprocess.run(["ps", "--ppid", str(main), "-o", "pid="], capture_output=True, text=True).stdout
        return [main] + [int(p) for p in out.split()]

    def freeze(self):
        for p in self.pids():
            os.kill(p, signal.SIGSTOP)

    def thaw(self):
        for p in self.pids():
            os.kill(p, signal.SIGCONT)

    def psql(self, db, sql):
        return subprocess.run(["psql", f"postgres://postgres@127.0.0.1:{self.port}/{db}", "-AtqF", "\t", "-c", sql],
                              check=True, capture_output=True, text=True).stdout

    def query(self, sql):
        """Rows of `sql` (tab-separated columns)."""
        out = self.psql("honeydue", sql)
        return [line.split("\t") for line in out.splitlines() if line]

    def stop(self):
        try:
            self.thaw()
        except (OSError, ValueError):
            pass
        try:
            self._ctl("-m", "immediate", "stop")
        except subprocess.CalledProcessError:
            pass


class Redis:
    def __init__(self, home):
        self.home = home
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc = None
        self.start()

    def start(self):
        self.proc = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                                      "--save", "", "--appendonly", "no", "--dir", self.home],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port)

    def kill(self):
        self.proc.kill()
        self.proc.wait()

    def cli(self, *args):
        return subprocess.run(["redis-cli", "-p", str(self.port), *args], capture_output=True, text=True).stdout

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class Gate:
    """A TCP relay in front of a server that can be shut: while shut, new
    connections are refused (its port closed) and open ones are cut."""

    def __init__(self, target_port):
        self.target = target_port
        self.port = free_port()
        self.conns = set()
        self.lock = threading.Lock()
        self.listener = None
        self.open()

    def open(self):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        s.listen(128)
        self.listener = s
        threading.Thread(target=self._accept, args=(s,), daemon=True).start()

    def shut(self):
        s, self.listener = self.listener, None
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        s.close()
        with self.lock:
            conns, self.conns = self.conns, set()
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()

    def _accept(self, s):
        while True:
            try:
                client, _ = s.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target), timeout=5)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.conns.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, a, b):
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                b.sendall(data)
        except OSError:
            pass
        for x in (a, b):
            try:
                x.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class Process:
    """A server as a child process that can be killed and started again."""

    def __init__(self, cmd, port, log_path):
        self.cmd, self.port, self.log_path = cmd, port, log_path
        self.proc = None
        self.start()

    def start(self):
        self.proc = subprocess.Popen(self.cmd, stdout=open(self.log_path, "ab"), stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        wait_port(self.port)

    def kill(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    stop = kill


# -- what the clients did ---------------------------------------------------------


class Phases:
    """The current phase's name, and each phase's time window."""

    def __init__(self):
        self.name = "warm-up"
        self.windows = []  # (name, start, fault_start, fault_end, end)

    def at(self, t):
        for name, s, _, _, e in self.windows:
            if s <= t < e:
                return name
        return self.name


class Record:
    def __init__(self):
        self.lock = threading.Lock()
        self.requests = collections.defaultdict(lambda: collections.Counter())
        self.slowest_failure = collections.defaultdict(float)
        self.slowest = collections.defaultdict(float)
        self.failures = collections.defaultdict(list)  # phase -> [(t_end, detail)]
        self.undocumented = collections.defaultdict(list)
        # acknowledged writes: (phase, kind, value)
        self.acks = []

    def request(self, phase, outcome, started, ended, detail):
        with self.lock:
            c = self.requests[phase]
            c["sent"] += 1
            c[outcome] += 1
            self.slowest[phase] = max(self.slowest[phase], ended - started)
            if outcome != "ok":
                self.slowest_failure[phase] = max(self.slowest_failure[phase], ended - started)
                self.failures[phase].append((ended, detail))
            if outcome == "undocumented" and len(self.undocumented[phase]) < 5:
                self.undocumented[phase].append(detail)

    def ack(self, phase, kind, value):
        with self.lock:
            self.acks.append((phase, kind, value))


def classify(a):
    """ok, documented (the JSON error shape, Retry-After on 429/503) or
    undocumented."""
    if 200 <= a.status < 400:
        return "ok"
    doc = a.json()
    shaped = (isinstance(doc, dict) and isinstance(doc.get("error"), dict)
              and doc["error"].get("code") and doc["error"].get("message")
              and a.headers.get("content-type", "").startswith("application/json"))
    if shaped and (a.status not in (429, 503) or a.headers.get("retry-after", "").isdigit()):
        return "documented"
    return "undocumented"


def failure_kind(detail):
    """A failure's detail without its ids: the route, the status and the
    error code (or the connection error)."""
    d = re.sub(r"/\d+/", "/N/", detail)
    d = re.sub(r"[0-9a-f]{8}-[0-9a-f-]{27}", "U", d)
    m = re.search(r'"code":\s*"([a-z_]+)"', d)
    return d[:d.index(":") + 5] + (f" {m.group(1)}" if m else d[d.index(":") + 5:][:60])


class Client:
    """One app on one phone: its own connection to Traefik through the CDN,
    its own client address."""

    def __init__(self, run, addr):
        self.run, self.addr = run, addr
        self.conn = None

    def _connection(self):
        if self.conn is None:
            self.conn = self.run.stack.edge.connection(CDN)
            self.conn.timeout = 30
        return self.conn

    def call(self, method, path, body=None, token=None, headers=None):
        """One request; recorded; returns the Answer or None (connection
        error)."""
        h = {"Host": self.run.stack.edge.host, "X-Forwarded-For": self.addr}
        if body is not None:
            h["Content-Type"] = "application/json"
            body = json.dumps(body).encode()
        if token:
            h["Authorization"] = f"Token {token}"
        h.update(headers or {})
        phase = self.run.phases.name
        started = time.monotonic()
        try:
            c = self._connection()
            c.request(method, path, body=body, headers=h)
            r = c.getresponse()
            a = Answer(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
        except (OSError, http.client.HTTPException) as e:
            if self.conn:
                self.conn.close()
            self.conn = None
            self.run.record.request(phase, "connection_error", started, time.monotonic(),
                                    f"{method} {path}: {e!r}")
            return None
        outcome = classify(a)
        self.run.record.request(phase, outcome, started, time.monotonic(), f"{method} {path}: {a!r}")
        return a

    def until_acked(self, method, path, body=None, token=None, headers=None, ok=(200, 201), patience=90):
        """Retries as an app does (the same request, the same key) until an
        answer in `ok`, a refusal (a 4xx other than 429), or `patience`."""
        deadline = time.monotonic() + patience
        while not self.run.stopping:
            a = self.call(method, path, body, token, headers)
            if a is not None and a.status in ok:
                return a
            if a is not None and 400 <= a.status < 500 and a.status != 429:
                return a
            if time.monotonic() > deadline:
                return a
            wait = 0.5
            if a is not None and a.headers.get("retry-after", "").isdigit():
                wait = min(float(a.headers["retry-after"]), 5)
            time.sleep(wait + random.random() * 0.2)
        return None

    def close(self):
        if self.conn:
            self.conn.close()


class User:
    """A virtual user: an account, a residence, its tasks; loops over the
    mix until the run stops."""

    def __init__(self, run, n):
        self.run, self.n = run, n
        self.client = Client(run, f"198.19.{n // 200}.{n % 200 + 1}")
        self.email = f"vu{n}-{uuid.uuid4().hex[:6]}@chaos.example.com"
        self.password = "chaos-password-1"
        self.token = None
        self.home = None
        self.open_tasks = []  # created, not yet completed

    def set_up(self):
        a = self.client.until_acked("POST", "/api/auth/register/",
                                    {"email": self.email, "password": self.password,
                                     "first_name": "VU", "last_name": str(self.n), "timezone": "UTC"},
                                    ok=(201,))
        assert a is not None and a.status == 201, f"register: {a!r}"
        self.token = a.json()["token"]
        self.run.record.ack(self.run.phases.name, "account", self.email)
        # The admin's bypass: the load stays clear of the free tier's limits
        # (a refusal by the product's rules is not a fault's effect).
        self.run.pg.psql("honeydue", f"""
            INSERT INTO user_subscriptions (user_id, is_free) VALUES ({a.json()["user"]["id"]}, TRUE)
            ON CONFLICT (user_id) DO UPDATE SET is_free = TRUE""")
        a = self.client.until_acked("POST", "/api/residences/", {"name": f"Home {self.n}"}, self.token, ok=(201,))
        assert a is not None and a.status == 201, f"residence: {a!r}"
        self.home = a.json()["id"]

    def loop(self):
        ops = [(self.board, 40), (self.create_task, 20), (self.complete, 15), (self.upload, 8),
               (self.sign_in, 4), (self.sign_up, 1), (self.inbox, 8)]
        funcs, weights = zip(*ops)
        while not self.run.stopping:
            try:
                random.choices(funcs, weights)[0]()
            except Exception:  # noqa: BLE001 - a client bug must not end the run silently
                self.run.errors.append(traceback.format_exc())
                return
            time.sleep(self.run.think)
        self.client.close()

    def board(self):
        self.client.call("GET", f"/api/tasks/by-residence/{self.home}/", token=self.token)

    def inbox(self):
        self.client.call("GET", "/api/notifications/", token=self.token)

    def create_task(self):
        title = f"chaos {uuid.uuid4().hex}"
        due = (datetime.date.today() + datetime.timedelta(days=30)).isoformat()
        a = self.client.until_acked("POST", "/api/tasks/", {"residence_id": self.home, "title": title,
                                                            "due_date": due},
                                    self.token, headers={"Idempotency-Key": title})
        if a is not None and a.status in (200, 201):
            tid = a.json()["id"]
            self.run.record.ack(self.run.phases.name, "task", (tid, title))
            self.open_tasks.append(tid)

    def complete(self):
        if not self.open_tasks:
            return self.create_task()
        tid = self.open_tasks.pop(0)
        key = uuid.uuid4().hex
        a = self.client.until_acked("POST", "/api/task-completions/", {"task_id": tid, "notes": key},
                                    self.token, headers={"Idempotency-Key": key})
        if a is not None and a.status in (200, 201):
            self.run.record.ack(self.run.phases.name, "completion", (a.json()["completion"]["id"], tid, key))

    def sign_in(self):
        # Every sign-in and sign-up from a phone of its own: the per-address
        # limits stay those of one person.
        a = self.client.until_acked("POST", "/api/auth/login/", {"email": self.email, "password": self.password},
                                    headers={"X-Forwarded-For": self.run.address()})
        if a is not None and a.status == 200:
            self.token = a.json()["token"]

    def sign_up(self):
        email = f"new-{uuid.uuid4().hex[:10]}@chaos.example.com"
        a = self.client.until_acked("POST", "/api/auth/register/",
                                    {"email": email, "password": "chaos-password-2", "timezone": "UTC"},
                                    headers={"X-Forwarded-For": self.run.address()}, ok=(201,))
        # A retry whose first try was committed finds the address taken: the
        # account exists all the same.
        if a is not None and (a.status == 201 or (a.status == 409 and "email" in a.body.decode())):
            self.run.record.ack(self.run.phases.name, "account", email)

    def upload(self):
        doc = self.presign_and_put(self.client)
        if doc:
            self.confirm(doc, self.client)

    def presign_and_put(self, client):
        """An upload's first two steps; its presign answer once the bytes
        are in the bucket."""
        photo = os.urandom(2048)
        a = client.until_acked("POST", "/api/uploads/presign/",
                                    {"purpose": "residence_image", "filename": "chaos.jpg",
                                     "content_type": "image/jpeg", "size": len(photo),
                                     "residence_id": self.home}, self.token, ok=(201,))
        if a is None or a.status != 201:
            return None
        doc = a.json()
        return doc if self.put_object(doc, photo) else None

    def confirm(self, doc, client):
        a = client.until_acked("POST", f"/api/uploads/{doc['id']}/confirm/", token=self.token)
        if client is not self.client:
            client.close()
        if a is not None and a.status == 200:
            self.run.record.ack(self.run.phases.name, "upload", doc["id"])

    def put_object(self, doc, body):
        """The presigned PUT, straight to the bucket (not through Traefik),
        retried like the app's upload queue does."""
        u = urllib.parse.urlsplit(doc["upload_url"])
        deadline = time.monotonic() + 90
        while not self.run.stopping and time.monotonic() < deadline:
            phase = self.run.phases.name
            started = time.monotonic()
            try:
                c = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
                c.request("PUT", u.path + ("?" + u.query if u.query else ""), body=body,
                          headers=doc.get("headers", {}))
                r = c.getresponse()
                r.read()
                c.close()
                ok = 200 <= r.status < 300
                self.run.record.request(phase, "ok" if ok else "documented", started, time.monotonic(),
                                        f"PUT s3: {r.status}")
                if ok:
                    return True
            except (OSError, http.client.HTTPException) as e:
                self.run.record.request(phase, "connection_error", started, time.monotonic(),
                                        f"PUT s3: {e!r}")
            time.sleep(0.5)
        return False


# -- the run ------------------------------------------------------------------------


class Run:
    def __init__(self, args):
        self.short = args.short
        self.out = args.out
        self.doc = args.doc
        self.work = tempfile.mkdtemp(prefix="honeydue-chaos-", dir="/var/tmp")
        os.chmod(self.work, 0o755)
        self.phases = Phases()
        self.record = Record()
        self.errors = []
        self.stopping = False
        self.think = 0.1
        self.users = []
        self.threads = []
        self.dispatching = True
        self.dispatch_runs = collections.Counter()
        self.scheduled_expect = []  # (phase, kind, user_id, task_id)
        self.stack = None
        self.addresses = 0

    def address(self):
        """A client address no one else has used."""
        with self.record.lock:
            self.addresses += 1
            n = self.addresses
        return f"198.18.{n // 250 % 250}.{n % 250 + 1}"

    # services and stack

    def start(self):
        python = os.environ.get("HONEYDUE_PYTHON") or sys.executable
        venv_bin = os.path.dirname(python)
        self.pg = Postgres(os.path.join(self.work, "pg"))
        self.redis = Redis(self.work)
        moto_port = free_port()
        self.moto = Process([os.path.join(venv_bin, "moto_server"), "-H", "127.0.0.1", "-p", str(moto_port)],
                            moto_port, os.path.join(self.work, "moto.log"))
        self.s3 = Gate(moto_port)
        c = http.client.HTTPConnection("127.0.0.1", moto_port, timeout=10)
        c.request("PUT", f"/{BUCKET}")
        c.getresponse().read()
        self.mail_dir = os.path.join(self.work, "mail")
        smtp_port = free_port()
        self.smtp = Process([python, os.path.join(ROOT, "shared", "testkit", "smtp_server.py"), str(smtp_port),
                             self.mail_dir], smtp_port, os.path.join(self.work, "smtp.log"))
        secrets = {"DATABASE_URL": self.pg.url, "APP_SECRET": "chaos-test-secret-0123456789",
                   "S3_ACCESS_KEY_ID": "chaos", "S3_SECRET_ACCESS_KEY": "chaos-secret"}
        overrides = {"REDIS_URL": self.redis.url, "S3_ENDPOINT": f"http://127.0.0.1:{self.s3.port}",
                     "S3_FORCE_PATH_STYLE": "true", "S3_BUCKET": BUCKET,
                     "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(smtp_port), "SMTP_SECURITY": "none",
                     "SMTP_TIMEOUT_SECS": "5", "AWS_LAMBDA_LOG_LEVEL": "warn"}
        self.stack = start(self.work, tag=TAG, secrets=secrets, overrides=overrides,
                           replicas={"api-tasks": 2})
        log(f"{len(self.stack.cluster.pods)} pods, Traefik, Postgres, Redis, S3 and SMTP up; work in {self.work}")

    def stop(self):
        self.stopping = True
        for t in self.threads:
            t.join(timeout=40)
        if self.stack:
            self.stack.stop()
        for s in ("s3", "moto", "smtp", "redis", "pg"):
            x = getattr(self, s, None)
            if x is not None and hasattr(x, "stop"):
                x.stop()
            elif x is not None:
                x.shut()

    # the CronJobs

    def cronjob(self, name, time_=None, wait=True):
        cmd, env = self.stack.job_command(self.stack.container("CronJob", name),
                                          ["--time", time_] if time_ else [])
        p = subprocess.Popen(cmd, env=env, cwd="/", stdout=subprocess.PIPE, stderr=open(
            os.path.join(self.work, f"{name}.log"), "ab"), start_new_session=True)
        if not wait:
            return p
        out, _ = p.communicate(timeout=300)
        return p.returncode, out

    def dispatcher(self):
        """cron-email-dispatch every 2 s (a CronJob every minute on k3s)."""
        while not self.stopping:
            if self.dispatching:
                rc, _ = self.cronjob("cron-email-dispatch")
                self.dispatch_runs["ok" if rc == 0 else "failed"] += 1
            time.sleep(2)

    # load

    def load(self, users):
        for n in range(users):
            u = User(self, n)
            u.set_up()
            self.users.append(u)
        for u in self.users:
            t = threading.Thread(target=u.loop, daemon=True)
            t.start()
            self.threads.append(t)
        t = threading.Thread(target=self.dispatcher, daemon=True)
        t.start()
        self.threads.append(t)

    # phases

    def phase(self, name, inject, quiet=2.0, settle=3.0, max_recovery=45.0):
        """Runs one fault: a quiet baseline, the fault (`inject` returns once
        it has ended), then until `settle` seconds pass with no failure (or
        `max_recovery`)."""
        log(f"fault: {name}")
        started = time.monotonic()
        self.phases.name = name
        time.sleep(quiet)
        fault_start = time.monotonic()
        inject()
        fault_end = time.monotonic()
        deadline = fault_end + max_recovery
        while time.monotonic() < deadline:
            with self.record.lock:
                fails = [t for t, _ in self.record.failures[name] if t > fault_end - 0.001]
            last = max(fails, default=fault_end)
            if time.monotonic() - last >= settle:
                break
            time.sleep(0.25)
        end = time.monotonic()
        self.phases.windows.append((name, started, fault_start, fault_end, end))
        self.phases.name = "between"
        with self.record.lock:
            c = dict(self.record.requests[name])
        log(f"  {name}: {c} in {end - started:.1f}s")

    def faults(self):
        d = (lambda full, short: short if self.short else full)

        def pg_restart():
            self.pg.restart_fast()

        def pg_unreachable():
            self.pg.freeze()
            time.sleep(d(20, 8))
            self.pg.thaw()

        def redis_killed():
            self.redis.kill()
            time.sleep(d(5, 2))
            self.redis.start()

        def redis_full():
            self.redis.cli("CONFIG", "SET", "maxmemory-policy", "noeviction")
            self.redis.cli("CONFIG", "SET", "maxmemory", "1")
            time.sleep(d(20, 6))
            self.redis.cli("CONFIG", "SET", "maxmemory", "0")

        def s3_down():
            # Uploads in the app's queue, sent just before: their confirms
            # (the API's HEAD on the store) meet the outage and are retried
            # after Retry-After until the store is back.
            app = self.users[0]
            queue = Client(self, app.client.addr)  # not the one its loop uses
            sent = [app.presign_and_put(queue) for _ in range(4)]
            queue.close()
            self.s3.shut()
            confirms = [threading.Thread(target=app.confirm, args=(doc, Client(self, app.client.addr)),
                                         daemon=True) for doc in sent if doc]
            for t in confirms:
                t.start()
            time.sleep(d(20, 6))
            self.s3.open()
            for t in confirms:
                t.join(timeout=60)

        def smtp_down():
            self.smtp.kill()
            # Emails are due meanwhile: the clients' sign-ups write them.
            time.sleep(d(60, 12))
            self.smtp.start()

        def worker_killed():
            # Stopped first, so that the invocations it was given are still
            # in it when it dies: killed mid-invocation, every time.
            for _ in range(3):
                pids = self.workers("api-tasks")
                assert pids, "no api-tasks worker"
                victim = random.choice(pids)
                os.kill(victim, signal.SIGSTOP)
                time.sleep(0.5)
                os.kill(victim, signal.SIGKILL)
                time.sleep(1.5)

        def worker_wedged():
            pids = self.workers("api-tasks")
            assert pids, "no api-tasks worker"
            victim = random.choice(pids)
            os.kill(victim, signal.SIGSTOP)
            # Past the function's deadline: the shim answers for it and
            # replaces it.
            time.sleep(FUNCTION_TIMEOUT + 3)
            try:
                os.kill(victim, signal.SIGCONT)
            except ProcessLookupError:
                pass

        def pod_replaced():
            c = self.stack.cluster
            old = c.pods_of("api-tasks")[0]
            new = c.start_pod("api-tasks")
            c.wait_ready(new)
            time.sleep(3)  # the new endpoint reaches Traefik
            c.terminate(old, mark_terminating=True)
            old.proc.wait(timeout=old.grace)

        return [("Postgres restarted (fast stop, start)", pg_restart),
                (f"Postgres unreachable {d(20, 8)} s (frozen)", pg_unreachable),
                ("Redis killed and brought back", redis_killed),
                (f"Redis full (maxmemory) {d(20, 6)} s", redis_full),
                (f"S3 down {d(20, 6)} s", s3_down),
                (f"SMTP down {d(60, 12)} s", smtp_down),
                ("worker SIGKILLed mid-invocation (x3)", worker_killed),
                ("worker wedged (SIGSTOP) past its deadline", worker_wedged),
                ("pod replaced (SIGTERM) under load", pod_replaced)]

    def workers(self, deployment):
        pids = []
        for pod in self.stack.cluster.pods_of(deployment):
            out = subprocess.run(["ps", "--ppid", str(pod.proc.pid), "-o", "pid="],
                                 capture_output=True, text=True).stdout
            pids += [int(p) for p in out.split()]
        return pids

    # the scheduled functions

    def seed_reminders(self, users):
        """Verified users (UTC, default preferences: due-soon at 14:00,
        overdue at 15:00) with tasks due today and overdue by a day."""
        today = datetime.datetime.now(datetime.timezone.utc).date()
        self.pg.psql("honeydue", f"""
            WITH u AS (
              INSERT INTO users (email, password_hash, first_name, timezone, email_verified_at)
              SELECT 'remind' || g || '-{uuid.uuid4().hex[:6]}@chaos.example.com', 'x', 'R', 'UTC', now()
                FROM generate_series(1, {users}) g RETURNING id),
            r AS (
              INSERT INTO residences (owner_id, name) SELECT id, 'Reminded' FROM u RETURNING id, owner_id),
            m AS (
              INSERT INTO residence_members (residence_id, user_id, role)
              SELECT id, owner_id, 'owner' FROM r RETURNING residence_id)
            INSERT INTO tasks (residence_id, created_by, title, due_date, next_due_date)
            SELECT r.id, r.owner_id, 'due ' || k, d, d
              FROM r, generate_series(1, 2) k,
                   LATERAL (VALUES (DATE '{today}'), (DATE '{today}' - 1)) AS dd(d)""")
        rows = self.pg.query(f"""
            SELECT t.created_by, t.id, t.next_due_date = DATE '{today}'
              FROM tasks t WHERE t.title LIKE 'due %' AND t.next_due_date >= DATE '{today}' - 1""")
        return today, [(int(u), int(t), flag == "t") for u, t, flag in rows]

    def scheduled_phases(self):
        today, tasks = self.seed_reminders(40 if self.short else 400)
        at = (lambda h: f"{today}T{h:02d}:00:30Z")
        due = [(u, t) for u, t, today_ in tasks if today_]
        overdue = [(u, t) for u, t, today_ in tasks if not today_]

        def crash_then_twice():
            # A run killed mid-slot (its row says running; its transaction
            # and lock die with it), then two runs at once: one serves it.
            p = self.cronjob("cron-task-reminders", at(14), wait=False)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if self.pg.query("SELECT 1 FROM job_runs WHERE job = 'cron-task-reminders' AND status = 'running'"):
                    break
                time.sleep(0.005)
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
            runs = [self.cronjob("cron-task-reminders", at(14), wait=False) for _ in range(2)]
            for r in runs:
                r.communicate(timeout=300)
                assert r.returncode == 0, f"cron-task-reminders exited {r.returncode}"

        def clock_jumps():
            # The scheduler's clock: 14:00, then forward to 16:00 (15:00
            # skipped: the overdue hour), then back to 15:00 and 13:00.
            for h in (14, 16, 15, 13):
                for job in ("cron-overdue-reminders", "cron-task-reminders"):
                    rc, _ = self.cronjob(job, at(h))
                    assert rc == 0, f"{job} at {h}:00 exited {rc}"

        self.phase("scheduled: killed mid-slot, then run twice at once", crash_then_twice)
        self.scheduled_expect += [("scheduled: killed mid-slot, then run twice at once", "due_soon", u, t)
                                  for u, t in due]
        self.phase("scheduled: clock jumped forward and back an hour", clock_jumps)
        self.scheduled_expect += [("scheduled: clock jumped forward and back an hour", "overdue", u, t)
                                  for u, t in overdue]

    # the checks afterwards

    def drain(self):
        """The outbox after the faults: the dispatcher runs until nothing is
        pending (every fault has ended)."""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            pending = self.pg.query("SELECT count(*) FROM email_outbox WHERE status = 'pending'")[0][0]
            if pending == "0":
                return
            self.cronjob("cron-email-dispatch")
            time.sleep(1)

    def check(self):
        """Per phase: acknowledged but missing, duplicated, undelivered."""
        per = collections.defaultdict(collections.Counter)
        details = collections.defaultdict(list)

        def bad(phase, what, detail):
            per[phase][what] += 1
            if len(details[phase]) < 5:
                details[phase].append(f"{what}: {detail}")

        tasks = {int(i): (t, k) for i, t, k in self.pg.query("SELECT id, title, coalesce(idempotency_key, '') FROM tasks")}
        titles = collections.Counter(t for t, _ in tasks.values())
        completions = {int(i): k for i, k in self.pg.query(
            "SELECT id, coalesce(idempotency_key, '') FROM task_completions")}
        completion_keys = collections.Counter(completions.values())
        accounts = collections.Counter(e for (e,) in self.pg.query("SELECT email FROM users"))
        uploads = {i: s for i, s in self.pg.query("SELECT id::text, status FROM uploads")}
        for phase, kind, v in self.record.acks:
            if kind == "task":
                tid, title = v
                if tid not in tasks or tasks[tid][0] != title:
                    bad(phase, "missing", f"task {tid}")
                elif titles[title] > 1:
                    bad(phase, "duplicated", f"task {title} x{titles[title]}")
            elif kind == "completion":
                cid, tid, key = v
                if cid not in completions:
                    bad(phase, "missing", f"completion {cid}")
                elif completion_keys[key] > 1:
                    bad(phase, "duplicated", f"completion {key}")
            elif kind == "account":
                if accounts[v] != 1:
                    bad(phase, "missing", f"account {v}")
            elif kind == "upload":
                if uploads.get(v) != "confirmed":
                    bad(phase, "missing", f"upload {v}: {uploads.get(v)}")
        # Titles the clients never saw acknowledged must not appear twice
        # either (a retry of a create whose answer was lost).
        for title, n in titles.items():
            if title.startswith("chaos ") and n > 1:
                bad(self.phase_of_task(title), "duplicated", f"task {title} x{n}")
        # Emails: every outbox row sent, once, under its own Message-ID.
        rows = self.pg.query("SELECT id, status, extract(epoch FROM created_at), coalesce(last_error, '') "
                             "FROM email_outbox")
        delivered = collections.Counter()
        for path in glob.glob(os.path.join(self.mail_dir, "*.eml")):
            with open(path, "rb") as f:
                head = f.read(8192).decode("utf-8", "replace")
            m = re.search(r"^Message-ID: <outbox-(\d+)@", head, re.M | re.I)
            delivered[int(m.group(1)) if m else -1] += 1
        mono_minus_wall = time.monotonic() - time.time()
        for i, status, created, err in rows:
            phase = self.phases.at(float(created) + mono_minus_wall)
            n = delivered.pop(int(i), 0)
            if status != "sent" or n == 0:
                bad(phase, "undelivered", f"email {i}: {status} {err[:80]}")
            if n > 1:
                bad(phase, "duplicated", f"email {i} x{n}")
        for k, n in delivered.items():
            bad("between", "duplicated", f"{n} message(s) with no outbox row ({k})")
        # Scheduled reminders: every expected (user, task) in exactly one
        # notification of its kind.
        seen = collections.Counter()
        for user, kind, data in self.pg.query(
                "SELECT user_id, kind, data FROM notifications WHERE kind IN ('due_soon', 'overdue')"):
            for t in json.loads(data).get("task_ids", []):
                seen[(kind, int(user), int(t))] += 1
        for phase, kind, u, t in self.scheduled_expect:
            n = seen[(kind, u, t)]
            if n == 0:
                bad(phase, "undelivered", f"{kind} reminder of task {t} to user {u}")
            elif n > 1:
                bad(phase, "duplicated", f"{kind} reminder of task {t} x{n}")
        return per, details

    def phase_of_task(self, title):
        for phase, kind, v in self.record.acks:
            if kind == "task" and v[1] == title:
                return phase
        return "between"

    # the report

    def report(self, per, details):
        names = [w[0] for w in self.phases.windows]
        rows = []
        failed = []
        for name, started, fs, fe, end in self.phases.windows:
            c = self.record.requests[name]
            with self.record.lock:
                fails = [t for t, _ in self.record.failures[name]]
            recovery = max([t - fe for t in fails if t > fe] + [0.0])
            p = per.get(name, collections.Counter())
            slow = self.record.slowest_failure.get(name, 0.0)
            rows.append([name, c["sent"], c["ok"], c["documented"], c["undocumented"], c["connection_error"],
                         f"{self.record.slowest.get(name, 0.0):.1f}", f"{slow:.1f}", f"{recovery:.1f}",
                         p["missing"], p["duplicated"], p["undelivered"]])
            if c["undocumented"] or p["missing"] or p["duplicated"] or p["undelivered"]:
                failed.append(name)
            longest = self.record.slowest.get(name, 0.0)
            if longest > FUNCTION_TIMEOUT + 1:
                failed.append(f"{name}: a request took {longest:.1f} s")
            if end - fe > 0 and recovery >= 44:
                failed.append(f"{name}: never recovered")
        for extra in ("warm-up", "between"):
            p = per.get(extra, collections.Counter())
            if p["missing"] or p["duplicated"] or p["undelivered"] or self.record.requests[extra]["undocumented"]:
                failed.append(extra)
                names.append(extra)
        head = ["fault", "requests", "2xx", "documented error", "undocumented", "connection errors",
                "slowest answer (s)", "slowest failure (s)", "recovered after (s)", "acked but missing", "duplicated",
                "undelivered"]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(str(x) for x in r) + " |" for r in rows]
        table = "\n".join(lines)
        print(table, flush=True)
        kind_lines = []
        for name in names:
            with self.record.lock:
                kinds = collections.Counter(failure_kind(d) for _, d in self.record.failures[name])
            for k, n in kinds.most_common(4):
                log(f"  {name}: {n} x {k}")
            if kinds:
                kind_lines.append(f"* {name}: " + "; ".join(f"{n} x `{k}`" for k, n in kinds.most_common(4)))
            for d in details.get(name, []):
                log(f"  {name}: {d}")
            for d in self.record.undocumented.get(name, []):
                log(f"  {name}: undocumented answer {d}")
        if self.out:
            with open(self.out, "w") as f:
                f.write(table + "\n")
        if self.doc and not failed:
            self.update_doc(table + "\n\nThe failures, by route and answer:\n\n" + "\n".join(kind_lines))
        return failed

    def update_doc(self, table):
        """The table, the command and the machine, between the markers."""
        begin, end = "<!-- chaos:begin -->", "<!-- chaos:end -->"
        with open(self.doc) as f:
            text = f.read()
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        cpus = os.cpu_count()
        model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                      if line.startswith("model name")), "unknown CPU")
        block = (f"{begin}\n`make chaos` on {datetime.date.today()}, {cpus} cores ({model}), "
                 f"{len(self.users)} virtual users through Traefik:\n\n{table}\n{end}")
        with open(self.doc, "w") as f:
            f.write(head + block + tail)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--short", action="store_true", help="shorter faults and fewer users (make test)")
    ap.add_argument("--out", help="write the results table (Markdown) here")
    ap.add_argument("--doc", help="replace the results between the chaos markers of this Markdown file")
    ap.add_argument("--only", help="run only the faults whose names match this regular expression (debugging)")
    args = ap.parse_args()
    started = time.monotonic()
    run = Run(args)
    failed = ["did not finish"]
    try:
        run.start()
        run.load(4 if args.short else 8)
        time.sleep(2)
        for name, inject in run.faults():
            if not args.only or re.search(args.only, name):
                run.phase(name, inject)
        if not args.only or re.search(args.only, "scheduled"):
            run.scheduled_phases()
        run.stopping = True
        for t in run.threads:
            t.join(timeout=120)
        run.stopping = False
        run.phases.name = "drain"
        run.drain()
        per, details = run.check()
        failed = run.report(per, details)
        if run.errors:
            failed.append("client errors")
            for e in run.errors[:3]:
                log(e)
    except Exception:  # noqa: BLE001 - reported, then everything is stopped
        traceback.print_exc()
    finally:
        run.stop()
    log(f"{'FAILED: ' + '; '.join(failed) if failed else 'every fault: nothing lost, nothing twice'} "
        f"({time.monotonic() - started:.0f}s; logs in {run.work})")
    if not failed:
        shutil.rmtree(run.work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    sys.exit(main())
