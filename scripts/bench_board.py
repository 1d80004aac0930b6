#!/usr/bin/env python3
"""`make bench`, part 2: the task board at scale.

Seeds 1,000 users x 5 residences x 200 tasks (1,000,000 tasks) into the
bench database, then measures one residence's board through the real
api-tasks function behind `shim pod` (wrk), and shows the query plan.
Appends its section to BENCHMARKS.md.

With BENCH_BOARD_BASELINE=DIR (a directory holding another build's
api-tasks, e.g. an older commit's), the same load runs against both
binaries, alternated three times in this one session, and the section
reports the medians and their ratio.
"""
import hashlib
import os
import re
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import psql_to, with_cpu_breakdown  # noqa: E402
from bench_lists import Pod  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REL = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release")
DB = os.environ["DATABASE_URL"]
SECONDS = int(os.environ.get("BENCH_SECONDS", "8"))
TOKEN = "bench-board-token-not-a-secret-0123456789"


psql = psql_to(DB)


def measure(bin_dir, rid):
    """One wrk run of the board against api-tasks from `bin_dir` behind the
    shim: (answer, wrk output, shim and worker peak RSS in KiB, CPU per
    request by process and for the whole machine in µs)."""
    pod = Pod("api-tasks", DB, bin_dir)
    try:
        url = f"http://127.0.0.1:{pod.port}/api/tasks/by-residence/{rid}/"
        body = pod.get(f"/api/tasks/by-residence/{rid}/", TOKEN)[1]

        def load():
            out = subprocess.run(["wrk", "-t2", "-c4", f"-d{SECONDS}s", "--latency", "-H", f"Authorization: Token {TOKEN}",
                                  url], capture_output=True, text=True, check=True).stdout
            return {"out": out, "rps": rps(out)}
        res = with_cpu_breakdown(load, min_us=5)
        rss = pod.peak_rss_kib()
    finally:
        pod.stop()
    split = dict(res["split_us"], **{"whole machine": res["machine_cpu_us"]})
    return body, res["out"], rss, split


def rps(out):
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def pct(out, q):
    m = re.search(rf"^\s+{q}%\s+([\d.]+)(us|ms|s)", out, re.M)
    v, unit = float(m.group(1)), m.group(2)
    return v / 1000 if unit == "us" else v * 1000 if unit == "s" else v


def main():
    t0 = time.time()
    if psql("SELECT count(*) FROM tasks").strip() != "1000000":
        # Not TRUNCATE ... CASCADE: users reference uploads (avatars), which
        # reference residences, so a cascade would empty users too.
        psql("DELETE FROM tasks; DELETE FROM residence_members; DELETE FROM residences")
        psql("INSERT INTO residences (owner_id, name) SELECT u.id, 'Home ' || g FROM users u, generate_series(1, 5) g")
        psql("INSERT INTO residence_members (residence_id, user_id, role) SELECT id, owner_id, 'owner' FROM residences")
        psql("INSERT INTO tasks (residence_id, title, frequency_id, due_date, next_due_date, in_progress, is_cancelled) "
             "SELECT r.id, 'Task ' || g, 1 + g % 8, current_date + (g % 120 - 40), current_date + (g % 120 - 40), "
             "g % 37 = 0, g % 53 = 0 FROM residences r, generate_series(1, 200) g")
        psql("ANALYZE")
    seed_s = time.time() - t0
    user_id, rid = psql("SELECT owner_id, id FROM residences ORDER BY id LIMIT 1").strip().split("|")
    digest = hashlib.sha256(TOKEN.encode()).hexdigest()
    psql(f"DELETE FROM auth_tokens WHERE token_hash = '\\x{digest}'")
    psql(f"INSERT INTO auth_tokens (user_id, token_hash, expires_at) VALUES ({user_id}, '\\x{digest}', now() + interval '1 day')")

    plan = psql(
        "EXPLAIN (ANALYZE, BUFFERS OFF, TIMING ON) "
        "SELECT t.id, t.title, t.next_due_date, t.completion_count, t.last_completed_at, f.interval_days "
        "FROM tasks t JOIN residence_members m ON m.residence_id = t.residence_id AND m.user_id = " + user_id +
        " LEFT JOIN task_frequencies f ON f.id = t.frequency_id "
        "WHERE t.residence_id = " + rid + " AND NOT t.is_archived ORDER BY t.next_due_date NULLS LAST, t.id")
    exec_ms = float(re.search(r"Execution Time: ([\d.]+) ms", plan).group(1))
    indexes = sorted(set(re.findall(r"(?:using|Bitmap Index Scan on) (\w+)", plan)))

    body, out, (shim_kib, worker_kib), split = measure(REL, rid)
    counts = re.findall(rb'"count":(\d+)', body)
    baseline = os.environ.get("BENCH_BOARD_BASELINE")
    ab = []
    if baseline:
        old_body = None
        for _ in range(3):
            old_body, old_out, _, _ = measure(baseline, rid)
            _, new_out, _, _ = measure(REL, rid)
            ab.append((old_out, new_out))
        same = "same" if old_body == body else "different"
    section = [
        "", "## Task board at scale", "",
        "Produced by `make bench` (scripts/bench_board.py): 1,000 users x 5 residences x 200 tasks "
        f"(1,000,000 tasks; seeded in {seed_s:.0f} s when absent), one residence's board "
        "(`GET /api/tasks/by-residence/{id}/`, 200 tasks, all columns) through the release api-tasks "
        f"function behind `shim pod` (concurrency 16), wrk -t2 -c4 -d{SECONDS}s.", "",
        "| measure | value |", "|---|---:|",
        f"| board requests/s | {rps(out):.0f} |",
        f"| board p50 | {pct(out, 50):.2f} ms |",
        f"| board p99 | {pct(out, 99):.2f} ms |",
        f"| board query execution (EXPLAIN ANALYZE) | {exec_ms:.2f} ms |",
        f"| indexes the plan uses | {', '.join(indexes)} |",
        f"| tasks per column in the answer | {', '.join(c.decode() for c in counts)} |",
        f"| answer bytes | {len(body):,} |",
        f"| shim peak RSS under the board load | {shim_kib / 1024:.1f} MiB |",
        f"| api-tasks worker peak RSS under the board load | {worker_kib / 1024:.1f} MiB |",
        f"| pod (shim + worker) peak RSS | {(shim_kib + worker_kib) / 1024:.1f} MiB |", "",
        "| CPU per board request, by process (/proc, µs) | value |", "|---|---:|",
    ] + [f"| {k} | {v:.0f} |" for k, v in split.items()] + [""]
    if ab:
        old_rps = statistics.median(rps(o) for o, _ in ab)
        new_rps = statistics.median(rps(n) for _, n in ab)
        old_p50 = statistics.median(pct(o, 50) for o, _ in ab)
        new_p50 = statistics.median(pct(n, 50) for _, n in ab)
        section += [
            f"Against a baseline build (BENCH_BOARD_BASELINE={baseline}), alternated three times in this run "
            f"(medians; the answers are {same}):", "",
            "| binary | requests/s | p50 ms |", "|---|---:|---:|",
            f"| baseline api-tasks | {old_rps:.0f} | {old_p50:.2f} |",
            f"| this build's api-tasks | {new_rps:.0f} | {new_p50:.2f} |",
            f"| ratio (this / baseline) | {new_rps / old_rps:.2f}x | {new_p50 / old_p50:.2f}x |", "",
        ]
    with open(os.path.join(ROOT, "BENCHMARKS.md"), "a") as f:
        f.write("\n".join(section))
    print("\n".join(section))


if __name__ == "__main__":
    main()
