#!/usr/bin/env python3
"""`make bench`, part 3: the scheduled scans at scale.

Seeds 100,000 users (70% with no preferences, 30% in other time zones with
their own hours), 100,000 residences (+20,000 shared memberships),
1,000,000 tasks due from 60 days ago to a year ahead, 50,000 warranties and
50,000 completions in the last day into a bench database, then runs each
hourly scan through the release binaries the way a CronJob does
(`shim invoke --scheduled --time ...`) at the hour that serves the most
users (the product default hours). Reports wall seconds, peak RSS of the
function process, and what each run wrote. Appends its section to
BENCHMARKS.md.
"""
import json
import os
import resource
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import psql_to  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REL = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release")
DB = os.environ["DATABASE_URL"]
DAY = "2026-06-10"
ZONES = ["America/New_York", "America/Los_Angeles", "Europe/Berlin", "Asia/Kolkata", "Asia/Tokyo", "Australia/Sydney"]


psql = psql_to(DB)


def seed(psql=psql):
    """The install, once (into the database `psql` runs on)."""
    if psql("SELECT count(*) FROM tasks").strip() == "1000000":
        return 0.0
    t0 = time.time()
    zones = "ARRAY[" + ",".join(f"'{z}'" for z in ZONES) + "]"
    psql("TRUNCATE users, residences, tasks, documents RESTART IDENTITY CASCADE")
    psql("INSERT INTO users (email, password_hash, first_name, timezone, email_verified_at, created_at) "
         f"SELECT 'user' || g || '@example.com', 'x', 'User' || g, "
         f"CASE WHEN g % 10 < 7 THEN 'UTC' ELSE ({zones})[1 + g % {len(ZONES)}] END, "
         "now() - interval '100 days', now() - interval '100 days' FROM generate_series(1, 100000) g")
    psql("INSERT INTO notification_preferences (user_id, due_soon_hour, overdue_hour, digest_hour) "
         "SELECT id, 8, 9, 7 FROM users WHERE timezone <> 'UTC'")
    psql("INSERT INTO residences (owner_id, name) SELECT id, 'Home ' || id FROM users")
    psql("INSERT INTO residence_members (residence_id, user_id, role) SELECT id, owner_id, 'owner' FROM residences")
    psql("INSERT INTO residence_members (residence_id, user_id, role) "
         "SELECT r.id, 1 + (r.owner_id % 100000), 'member' FROM residences r WHERE r.id % 5 = 0")
    psql("INSERT INTO tasks (residence_id, title, frequency_id, due_date, next_due_date, in_progress, assigned_to) "
         f"SELECT r.id, 'Task ' || g, (1 + (r.id + g) % 8)::int, date '{DAY}' + ((r.id * 7 + g * 43) % 425 - 60)::int, "
         f"date '{DAY}' + ((r.id * 7 + g * 43) % 425 - 60)::int, g = 10 AND r.id % 7 = 0, "
         "CASE WHEN g = 1 THEN r.owner_id END FROM residences r, generate_series(1, 10) g")
    psql("INSERT INTO documents (residence_id, title, doc_type, expiry_date) "
         f"SELECT id, 'Warranty', 'warranty', date '{DAY}' + (id % 400)::int FROM residences WHERE id % 2 = 0")
    psql("INSERT INTO task_completions (task_id, completed_by, completed_at, occurrence_date) "
         f"SELECT t.id, r.owner_id, timestamptz '{DAY}T01:00:00Z' - (t.id % 20)::int * interval '1 hour', t.next_due_date - 400 "
         "FROM tasks t JOIN residences r ON r.id = t.residence_id WHERE t.id % 20 = 0")
    psql("ANALYZE")
    return time.time() - t0


def reset():
    psql("TRUNCATE job_runs, task_reminder_log, warranty_reminder_log, digest_log, notifications, email_outbox CASCADE")


def run(function, at):
    """Runs one scheduled invocation in a child Python that reports the peak
    RSS of its descendants (the shim and the function it runs)."""
    code = (
        "import resource, subprocess, sys, time, json\n"
        "t = time.time()\n"
        "p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "el = time.time() - t\n"
        "print(json.dumps({'rc': p.returncode, 's': el, 'rss_kib': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,"
        " 'out': p.stdout, 'err': p.stderr[-2000:]}))\n"
    )
    cmd = [sys.executable, "-c", code, os.path.join(REL, "shim"), "invoke", "--function", function,
           "--scheduled", "--time", at, "--bin-dir", REL, "--template", os.path.join(ROOT, "template.yaml")]
    env = dict(os.environ, APP_SECRET="bench-secret-0123456789", AWS_LAMBDA_LOG_LEVEL="warn",
               DATABASE_MAX_CONNECTIONS="4")
    r = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout)
    if r["rc"] != 0:
        sys.exit(f"{function} failed ({r['rc']}): {r['err']}")
    return r


def main():
    seed_s = seed()
    counts = psql("SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM tasks), "
                  "(SELECT count(*) FROM residence_members), (SELECT count(*) FROM documents)").strip().split("|")
    rows = []
    for function, at in [("cron-task-reminders", f"{DAY}T14:00:00Z"),
                         ("cron-overdue-reminders", f"{DAY}T15:00:00Z"),
                         ("cron-warranty-reminders", f"{DAY}T14:00:00Z"),
                         ("cron-daily-digest", f"{DAY}T03:00:00Z"),
                         ("cron-task-reminders", f"{DAY}T22:00:00Z")]:
        reset()
        r = run(function, at)
        report = json.loads(r["out"])
        stats = report["served"][0]["stats"] if report["served"] else {}
        emails = psql("SELECT count(*) FROM email_outbox").strip()
        rows.append((function, at[11:16] + " UTC", r["s"], r["rss_kib"] / 1024, stats, emails))
        print(f"{function} at {at}: {r['s']:.2f} s, peak RSS {r['rss_kib'] / 1024:.1f} MiB, {stats}", file=sys.stderr)
    # Idle hour: the same scan when nobody is served.
    out = ["", "## Scheduled scans at scale", "",
           f"Produced by `make bench` (scripts/bench_jobs.py): {int(counts[0]):,} users, {int(counts[1]):,} tasks, "
           f"{int(counts[2]):,} memberships, {int(counts[3]):,} warranties"
           + (f" (seeded in {seed_s:.0f} s)" if seed_s else "") + ". Each run is one release binary invoked the way "
           "a CronJob does (`shim invoke --scheduled --time ...`) on empty ledgers; 70% of users have no "
           "preferences, so the default hours (14:00, 15:00, 03:00 UTC) are the busiest. "
           "Target: each hourly scan under 30 s.", "",
           "| function | hour | seconds | peak RSS (largest process, MiB) | figures | outbox rows |", "|---|---|---:|---:|---|---:|"]
    for f, h, s, rss, stats, emails in rows:
        out.append(f"| {f} | {h} | {s:.2f} | {rss:.1f} | {json.dumps(stats)} | {emails} |")
    with open(os.path.join(ROOT, "BENCHMARKS.md"), "a") as fh:
        fh.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
