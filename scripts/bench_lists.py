#!/usr/bin/env python3
"""`make bench`, part 3: every list that grows with a household, at scale.

A large install (the scheduled-scan bench's 100,000 users and 1,000,000
tasks, scripts/bench_jobs.py) plus one large household: 2,000 tasks, 20,000
completions (2,000 of them on one daily task), 2,000 documents, 500
contractors, 10,000 notifications, and install-wide 100,000 queued emails
and 100,000 queued pushes for the admin's listings.

For each list route, through the release function behind `shim pod`:

* its p50 and throughput under wrk -t2 -c4 (the board bench's load shape);
* the plans of every statement the request runs, as Postgres executed them
  (auto_explain with ANALYZE, switched on for one probe request through the
  connection's startup options, read back from the server log); a
  sequential scan on a table that grows is reported as such;
* the peak RSS of the shim and of its worker(s) under that load.

Appends its section to BENCHMARKS.md. Environment: DATABASE_URL (a
superuser's connection, to load auto_explain), PG_LOG (the server's log
file; default .local/postgres.log, where scripts/services.sh starts it),
BENCH_SECONDS (default 8; each route gets half).
"""
import hashlib
import os
import re
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_jobs  # noqa: E402  (the large install's seed)
from bench import free_port, peak_rss_kib, psql_to  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REL = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release")
DB = os.environ["DATABASE_URL"]
PG_LOG = os.environ.get("PG_LOG", os.path.join(ROOT, ".local", "postgres.log"))
SECONDS = max(2, int(os.environ.get("BENCH_SECONDS", "8")) // 2)
TOKEN = "bench-lists-token-not-a-secret-0123456789"
ADMIN_TOKEN = "bench-lists-admin-token-not-a-secret-0123"
HOUSEHOLD = "Large household (bench)"
# Tables that stay small whatever the install's size: a sequential scan of
# them is the cheapest plan, not a missing index.
LOOKUPS = {"task_frequencies", "task_categories", "task_priorities", "residence_types",
           "contractor_specialties", "tier_limits", "app_settings", "lookup_version", "admin_users"}
EXPLAIN_OPTIONS = ("-c session_preload_libraries=auto_explain -c auto_explain.log_min_duration=0 "
                   "-c auto_explain.log_analyze=on -c auto_explain.log_timing=off "
                   "-c auto_explain.log_format=text")


psql = psql_to(DB)


def seed():
    """The large install (bench_jobs' seed) and the household, once."""
    if psql(f"SELECT count(*) FROM residences WHERE name = '{HOUSEHOLD}'").strip() == "1":
        return 0.0
    t0 = time.time()
    bench_jobs.seed(psql)
    # User 1 owns the household; users 2 and 3 are members.
    psql(f"INSERT INTO residences (owner_id, name) VALUES (1, '{HOUSEHOLD}')")
    home = psql(f"SELECT id FROM residences WHERE name = '{HOUSEHOLD}'").strip()
    psql(f"INSERT INTO residence_members (residence_id, user_id, role) VALUES ({home}, 1, 'owner'), "
         f"({home}, 2, 'member'), ({home}, 3, 'member')")
    psql("INSERT INTO tasks (residence_id, created_by, title, frequency_id, due_date, next_due_date, "
         "in_progress, is_cancelled, is_archived, assigned_to) "
         f"SELECT {home}, 1, 'Household task ' || g, 1 + g % 8, current_date + (g % 400 - 100), "
         "current_date + (g % 400 - 100), g % 41 = 0, g % 59 = 0, g % 97 = 0, 1 + g % 3 "
         "FROM generate_series(1, 2000) g")
    first = psql(f"SELECT min(id) FROM tasks WHERE residence_id = {home}").strip()
    # A daily task done every day for five and a half years, and 9 each
    # for the others.
    psql("INSERT INTO task_completions (task_id, completed_by, completed_at, occurrence_date, notes) "
         f"SELECT {first}, 1 + g % 3, now() - make_interval(days => g), current_date - g, 'done' "
         "FROM generate_series(1, 2000) g")
    psql("INSERT INTO task_completions (task_id, completed_by, completed_at, occurrence_date, notes) "
         "SELECT t.id, 1 + g % 3, now() - make_interval(days => g * 30), current_date - g * 30, '' "
         f"FROM tasks t, generate_series(1, 9) g WHERE t.residence_id = {home} AND t.id <> {first}")
    psql("INSERT INTO documents (residence_id, created_by, title, doc_type, expiry_date) "
         f"SELECT {home}, 1, 'Document ' || g, (ARRAY['warranty','manual','receipt','insurance','other'])[1 + g % 5], "
         "current_date + (g % 900 - 200) FROM generate_series(1, 2000) g")
    psql("INSERT INTO contractors (owner_id, residence_id, name, is_favorite) "
         f"SELECT 1, CASE WHEN g % 2 = 0 THEN {home} END, 'Contractor ' || g, g % 10 = 0 FROM generate_series(1, 500) g")
    psql("INSERT INTO notifications (user_id, kind, title, read_at, created_at) "
         "SELECT 1, (ARRAY['due_soon','overdue','completed','assigned'])[1 + g % 4], 'Notice ' || g, "
         "CASE WHEN g > 300 THEN now() END, now() - make_interval(mins => g * 7) FROM generate_series(1, 10000) g")
    # Install-wide queues for the admin's listings (kept apart from the
    # scheduled-scan bench, which empties its own database's outbox).
    psql("INSERT INTO email_outbox (user_id, kind, to_address, subject, body_text, status, created_at) "
         "SELECT 1 + g % 100000, 'task_reminder', 'user' || (1 + g % 100000) || '@example.com', 'Due soon', 'Hi', "
         "CASE WHEN g % 10 = 0 THEN 'pending' ELSE 'sent' END, now() - make_interval(secs => g) "
         "FROM generate_series(1, 100000) g")
    psql("INSERT INTO devices (user_id, platform, token) "
         "SELECT g, CASE WHEN g % 2 = 0 THEN 'ios' ELSE 'android' END, 'device-' || g FROM generate_series(1, 10000) g")
    psql("INSERT INTO push_outbox (user_id, device_id, kind, title, status, created_at) "
         "SELECT d.user_id, d.id, 'due_soon', 'Due soon', CASE WHEN g % 10 = 0 THEN 'pending' ELSE 'sent' END, "
         "now() - make_interval(secs => g) FROM devices d, generate_series(1, 10) g")
    # The rest of the install, so that every table has the size that makes
    # the planner choose as it would in production: a session per user,
    # install-wide notifications, contractors, subscriptions, and files on
    # completions and documents.
    psql("INSERT INTO auth_tokens (user_id, token_hash, expires_at) "
         "SELECT id, sha256(('session-' || id)::bytea), now() + interval '30 days' FROM users")
    psql("INSERT INTO notifications (user_id, kind, title, read_at, created_at) "
         "SELECT 1 + g % 100000, 'due_soon', 'Due soon', CASE WHEN g % 3 = 0 THEN NULL ELSE now() END, "
         "now() - make_interval(mins => g % 50000) FROM generate_series(1, 1000000) g")
    psql("INSERT INTO contractors (owner_id, residence_id, name) "
         "SELECT r.owner_id, r.id, 'Pro ' || r.id FROM residences r WHERE r.name <> '" + HOUSEHOLD + "'")
    psql("INSERT INTO contractor_specialty_links (contractor_id, specialty_id) "
         "SELECT c.id, s.id FROM contractors c JOIN contractor_specialties s ON s.id = 1 + c.id % 5")
    psql("INSERT INTO user_subscriptions (user_id, tier, source) SELECT id, 'pro', 'apple' FROM users WHERE id % 10 = 0")
    psql("INSERT INTO uploads (id, user_id, residence_id, purpose, object_key, filename, content_type, size_bytes, status) "
         "SELECT gen_random_uuid(), r.owner_id, r.id, 'document_file', 'bench/' || r.id || '/' || g, 'f.pdf', "
         "'application/pdf', 1000, 'confirmed' FROM residences r, generate_series(1, 2) g")
    psql("INSERT INTO document_files (document_id, upload_id) SELECT DISTINCT ON (d.id) d.id, u.id "
         "FROM documents d JOIN uploads u ON u.residence_id = d.residence_id ORDER BY d.id, u.id")
    psql("INSERT INTO completion_images (completion_id, upload_id) SELECT DISTINCT ON (c.id) c.id, u.id "
         "FROM task_completions c JOIN tasks t ON t.id = c.task_id JOIN uploads u ON u.residence_id = t.residence_id "
         "WHERE c.id % 4 = 0 ORDER BY c.id, u.id")
    psql("INSERT INTO admin_users (email, password_hash, name) SELECT 'admin' || g || '@example.com', 'x', 'Admin ' || g "
         "FROM generate_series(1, 20) g")
    psql("INSERT INTO admin_tokens (admin_id, token_hash, expires_at) "
         "SELECT a.id, sha256(('admin-session-' || a.id || '-' || g)::bytea), now() + interval '1 day' "
         "FROM admin_users a, generate_series(1, 50) g")
    psql("ANALYZE")
    return time.time() - t0


def tokens():
    user = hashlib.sha256(TOKEN.encode()).hexdigest()
    admin = hashlib.sha256(ADMIN_TOKEN.encode()).hexdigest()
    psql(f"DELETE FROM auth_tokens WHERE token_hash = '\\x{user}'")
    psql(f"INSERT INTO auth_tokens (user_id, token_hash, expires_at) VALUES (1, '\\x{user}', now() + interval '1 day')")
    psql("INSERT INTO admin_users (email, password_hash, name) VALUES ('bench@example.com', 'x', 'Bench') "
         "ON CONFLICT DO NOTHING")
    psql(f"DELETE FROM admin_tokens WHERE token_hash = '\\x{admin}'")
    psql("INSERT INTO admin_tokens (admin_id, token_hash, expires_at) SELECT id, "
         f"'\\x{admin}', now() + interval '1 day' FROM admin_users WHERE email = 'bench@example.com'")


def with_options(url, options):
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query) + [("options", options)]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query, quote_via=urllib.parse.quote)))


class Pod:
    """`shim pod --function F` on a free port (the function's binary from
    `bin_dir`), ready when constructed."""

    def __init__(self, function, db, bin_dir=REL):
        self.port = free_port()
        env = dict(os.environ, AWS_LAMBDA_LOG_LEVEL="error", DATABASE_URL=db,
                   APP_SECRET="bench-secret-0123456789")
        self.p = subprocess.Popen(
            [os.path.join(REL, "shim"), "pod", "--function", function, "--listen", f"127.0.0.1:{self.port}",
             "--admin-listen", f"127.0.0.2:{self.port}", "--bin-dir", bin_dir, "--concurrency", "16",
             "--drain-delay", "0"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                if urllib.request.urlopen(f"http://127.0.0.2:{self.port}/_shim/ready", timeout=1).status == 200:
                    return
            except Exception:
                time.sleep(0.05)
        self.stop()
        sys.exit(f"bench_lists: {function} never became ready")

    def get(self, path, token):
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", headers={"Authorization": f"Token {token}"})
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read()

    def peak_rss_kib(self):
        """VmHWM of the shim and of its largest worker."""
        return peak_rss_kib(self.p.pid)

    def stop(self):
        os.killpg(self.p.pid, signal.SIGTERM)
        self.p.wait()


def plans_of(pod, path, token):
    """The statements one request runs and their plans, from the server log."""
    with open(PG_LOG, "rb") as f:
        f.seek(0, 2)
        start = f.tell()
    status, _ = pod.get(path, token)
    time.sleep(0.2)
    with open(PG_LOG, "rb") as f:
        f.seek(start)
        log = f.read().decode(errors="replace")
    stmts = []
    for block in re.split(r"\n(?=\S)", log):
        m = re.search(r"duration: ([\d.]+) ms\s+plan:\n\tQuery Text: (.*)", block, re.S)
        if not m:
            continue
        # The query's text runs on until the plan's top node, the first
        # line indented by the log's tab alone.
        rest = m.group(2).splitlines()
        top = next((i for i, ln in enumerate(rest) if i > 0 and re.match(r"\t\S", ln)), len(rest))
        sql = " ".join(" ".join(rest[:top]).split())
        nodes = [re.sub(r"\s*\(cost=[^)]*\)", "", ln[1:].rstrip()) for ln in rest[top:] if ln.strip()]
        stmts.append({"ms": float(m.group(1)), "sql": sql[:100], "plan": nodes})
    return status, stmts


def scans(stmts):
    used, seq = set(), set()
    for s in stmts:
        for ln in s["plan"]:
            for ix in re.findall(r"(?:Index Scan|Index Only Scan|Index Scan Backward|Index Only Scan Backward) using (\w+)", ln):
                used.add(ix)
            for ix in re.findall(r"Bitmap Index Scan on (\w+)", ln):
                used.add(ix)
            m = re.search(r"Seq Scan on (\w+)(?: \w+)? .*?actual rows=(\d+)", ln)
            if m and m.group(1) not in LOOKUPS:
                seq.add(f"{m.group(1)} ({m.group(2)} rows)")
    return sorted(used), sorted(seq)


def wrk(port, path, token):
    out = subprocess.run(["wrk", "-t2", "-c4", f"-d{SECONDS}s", "--latency", "-H", f"Authorization: Token {token}",
                          f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in out:
        sys.exit(f"bench_lists: {path} answered errors under load:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    m = re.search(r"^\s+50%\s+([\d.]+)(us|ms|s)", out, re.M)
    v, unit = float(m.group(1)), m.group(2)
    return rps, v / 1000 if unit == "us" else v * 1000 if unit == "s" else v


def main():
    seed_s = seed()
    tokens()
    home = psql(f"SELECT id FROM residences WHERE name = '{HOUSEHOLD}'").strip()
    first = psql(f"SELECT min(id) FROM tasks WHERE residence_id = {home}").strip()
    counts = psql("SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM tasks), "
                  "(SELECT count(*) FROM task_completions), (SELECT count(*) FROM email_outbox), "
                  "(SELECT count(*) FROM push_outbox)").strip().split("|")
    routes = {
        "api-tasks": [f"/api/tasks/", f"/api/tasks/by-residence/{home}/",
                      f"/api/task-completions/?task={first}&page_size=100"],
        "api-documents": ["/api/documents/?page_size=100", "/api/documents/?expiring_within=30&page_size=100"],
        "api-contractors": ["/api/contractors/?page_size=100", f"/api/contractors/?residence={home}&page_size=100"],
        "api-notifications": ["/api/notifications/?page_size=100", "/api/notifications/unread-count/"],
        "api-residences": ["/api/residences/"],
        "api-admin": ["/api/admin/users/?page_size=100", "/api/admin/users/?search=user4242&page_size=100",
                      "/api/admin/residences/?page_size=100", f"/api/admin/tasks/?residence={home}&page_size=100",
                      "/api/admin/email-outbox/?page_size=100", "/api/admin/push-outbox/?page_size=100"],
    }
    rows, details, memory = [], [], []
    explain_db = with_options(DB, EXPLAIN_OPTIONS)
    for function, paths in routes.items():
        token = ADMIN_TOKEN if function == "api-admin" else TOKEN
        probe = Pod(function, explain_db)
        try:
            probed = [(path, *plans_of(probe, path, token)) for path in paths]
        finally:
            probe.stop()
        pod = Pod(function, DB)
        try:
            for path, status, stmts in probed:
                if status != 200 or not stmts:
                    sys.exit(f"bench_lists: {path}: status {status}, {len(stmts)} plans read from {PG_LOG}")
                rps, p50 = wrk(pod.port, path, token)
                _, body = pod.get(path, token)
                used, seq = scans(stmts)
                rows.append((path, rps, p50, len(body), len(stmts), sum(s["ms"] for s in stmts), used, seq))
                details.append((path, stmts))
                print(f"{path}: {rps:.0f}/s p50 {p50:.2f} ms, {len(stmts)} statements, seq {seq}", file=sys.stderr)
            shim_kib, worker_kib = pod.peak_rss_kib()
            memory.append((function, shim_kib, worker_kib))
        finally:
            pod.stop()

    out = ["", "## Lists at scale", "",
           f"Produced by `make bench` (scripts/bench_lists.py): {int(counts[0]):,} users, {int(counts[1]):,} tasks, "
           f"{int(counts[2]):,} completions, {int(counts[3]):,} queued emails, {int(counts[4]):,} queued pushes"
           + (f" (seeded in {seed_s:.0f} s)" if seed_s else "") + "; the caller's household has 2,000 tasks, "
           "20,000 completions (2,000 on the listed task), 2,000 documents, 500 contractors and 10,000 "
           "notifications. Each route through its release function behind `shim pod` (concurrency 16), "
           f"wrk -t2 -c4 -d{SECONDS}s; first page, page_size 100 where the list pages. Statements and plans "
           "are one probe request's, as executed (auto_explain, ANALYZE); DB ms is their summed execution "
           "time; a sequential scan of a table that grows would be listed (lookup tables excepted).", "",
           "| route | requests/s | p50 ms | answer bytes | statements | DB ms | indexes | sequential scans |",
           "|---|---:|---:|---:|---:|---:|---|---|"]
    for path, rps, p50, size, n, ms, used, seq in rows:
        out.append(f"| `{path}` | {rps:.0f} | {p50:.2f} | {size:,} | {n} | {ms:.2f} | {', '.join(used)} | "
                   f"{', '.join(seq) or 'none'} |")
    out += ["", "| function (under its lists' load) | shim peak RSS MiB | worker peak RSS MiB | pod (shim + worker) MiB |",
            "|---|---:|---:|---:|"]
    for function, shim_kib, worker_kib in memory:
        out.append(f"| {function} | {shim_kib / 1024:.1f} | {worker_kib / 1024:.1f} | {(shim_kib + worker_kib) / 1024:.1f} |")
    out += ["", "<details><summary>Plans (each statement of one request, as executed)</summary>", ""]
    for path, stmts in details:
        out.append(f"`{path}`")
        out.append("```")
        for s in stmts:
            out.append(f"-- {s['ms']:.3f} ms: {s['sql']}")
            out += ["   " + ln for ln in s["plan"]]
        out.append("```")
    out += ["", "</details>", ""]
    with open(os.path.join(ROOT, "BENCHMARKS.md"), "a") as fh:
        fh.write("\n".join(out))
    print("\n".join(out[:len(rows) + len(memory) + 14]))


if __name__ == "__main__":
    main()
