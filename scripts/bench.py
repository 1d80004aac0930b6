#!/usr/bin/env python3
"""`make bench`: the shim against its bounds, side by side in one run.

Same handlers (shared/bench), same machine, same load generator (wrk):

* direct   - the handler served by axum in-process: the limit
* shim     - the handler as a Lambda function behind `shim pod`
* watch    - the handler under `cargo lambda watch --release --concurrency N`

Writes BENCHMARKS.md (figures and ratios) and prints the table.
Environment: DATABASE_URL (set by the Makefile), BENCH_SECONDS (default 8).
"""
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REL = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release")
SECONDS = int(os.environ.get("BENCH_SECONDS", "8"))
CONC = 16
N = 2  # workers for the one-at-a-time comparison
procs = []


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def start(cmd, env=None, cwd=ROOT):
    e = dict(os.environ)
    e.update(env or {})
    p = subprocess.Popen(cmd, env=e, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
    procs.append(p)
    return p


def stop(p):
    if p.poll() is None:
        os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def wait_ok(url, within=120.0):
    deadline = time.time() + within
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except Exception:
            pass
        time.sleep(0.05)
    raise SystemExit(f"bench: {url} never answered")


def wrk(url, conns, threads=2):
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{conns}", f"-d{SECONDS}s", "--latency", url],
                         capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))

    def pct(p):
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)", out, re.M)
        v, unit = float(m.group(1)), m.group(2)
        return v / 1000 if unit == "us" else v * 1000 if unit == "s" else v

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "p50_ms": pct(50), "p99_ms": pct(99), "non2xx": int(errors.group(1)) if errors else 0}


def cpu_seconds(pid):
    """User + system CPU of a process so far (from /proc)."""
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def with_cpu(shim_pid, run):
    """Runs a load and returns its result with the CPU microseconds per
    request the shim and (summed) its workers spent: where the time goes."""
    workers = [int(x) for x in subprocess.run(["pgrep", "-P", str(shim_pid)], capture_output=True,
                                              text=True).stdout.split()]
    before = {x: cpu_seconds(x) for x in [shim_pid] + workers}
    res = run()
    after = {x: cpu_seconds(x) for x in before}
    n = res["rps"] * SECONDS
    res["shim_cpu_us"] = (after[shim_pid] - before[shim_pid]) * 1e6 / n
    res["workers_cpu_us"] = sum(after[w] - before[w] for w in workers) * 1e6 / n
    return res


def machine_busy_seconds():
    """CPU seconds all cores have spent busy so far (from /proc/stat)."""
    f = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    return (sum(f) - f[3] - f[4]) / os.sysconf("SC_CLK_TCK")


def psql_to(db):
    """A function that runs SQL on `db` with psql and returns its rows as
    text (unaligned, `|` between columns); any error stops the bench."""
    def psql(sql):
        return subprocess.run(["psql", db, "-qAt", "-v", "ON_ERROR_STOP=1", "-c", sql],
                              check=True, capture_output=True, text=True).stdout
    return psql


def cpu_by_command():
    """CPU seconds so far of every process on the machine, by command name."""
    tck = os.sysconf("SC_CLK_TCK")
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            text = open(f"/proc/{d}/stat").read()
        except OSError:
            continue
        comm = text[text.index("(") + 1:text.rindex(")")]
        f = text.rsplit(")", 1)[1].split()
        out[(d, comm)] = (int(f[11]) + int(f[12])) / tck
    return out


def with_cpu_breakdown(run, min_us=1):
    """Runs a load (`run` returns a dict with its "rps" over SECONDS) and
    returns its result with the machine's busy CPU per request and how it
    splits between processes (by command name, those of at least `min_us`;
    a process that started during the load counts from zero; kernel time
    outside any process, e.g. idle-time softirqs, is the remainder)."""
    before, busy = cpu_by_command(), machine_busy_seconds()
    res = run()
    after, busy2 = cpu_by_command(), machine_busy_seconds()
    n = res["rps"] * SECONDS
    split = {}
    for key, t in after.items():
        split[key[1]] = split.get(key[1], 0.0) + (t - before.get(key, 0.0)) * 1e6 / n
    res["machine_cpu_us"] = (busy2 - busy) * 1e6 / n
    res["split_us"] = {k: v for k, v in sorted(split.items(), key=lambda kv: -kv[1]) if v >= min_us}
    return res


def peak_rss_kib(pid):
    """VmHWM of a process and the largest of its children's (a pod's
    workers), in KiB."""
    def hwm(p):
        try:
            with open(f"/proc/{p}/status") as f:
                return int(re.search(r"VmHWM:\s+(\d+)", f.read()).group(1))
        except (OSError, AttributeError):
            return 0
    children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return hwm(pid), max((hwm(c) for c in children), default=0)


def shim_rss(port):
    text = urllib.request.urlopen(f"http://127.0.0.2:{port}/_shim/metrics").read().decode()
    m = re.search(r'shim_peak_resident_memory_bytes\{process="shim"\} (\d+)', text)
    f = re.findall(r'shim_peak_resident_memory_bytes\{process="bench-noop",pid="\d+"\} (\d+)', text)
    return int(m.group(1)), [int(x) for x in f]


def shim_pod(port, workers, concurrency, env=None):
    return start([os.path.join(REL, "shim"), "pod", "--function", "bench-noop", "--listen", f"127.0.0.1:{port}", "--admin-listen", f"127.0.0.2:{port}",
                  "--workers", str(workers), "--concurrency", str(concurrency), "--drain-delay", "0",
                  "--bin-dir", REL, "--timeout", "30", "--", os.path.join(REL, "bench-noop")],
                 env={"AWS_LAMBDA_LOG_LEVEL": "error", **(env or {})})


def ready_time_ms():
    """Process start to first served request, for a pod (median of 5)."""
    times = []
    for _ in range(5):
        port = free_port()
        t0 = time.perf_counter()
        p = shim_pod(port, 1, 8)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
                    s.sendall(b"GET /noop HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
                    if s.recv(12).startswith(b"HTTP/1.1 200"):
                        break
            except OSError:
                pass
            time.sleep(0.001)
        times.append((time.perf_counter() - t0) * 1000)
        stop(p)
    return statistics.median(times)


def main():
    db = os.environ.get("DATABASE_URL")
    results = {}
    try:
        # direct axum
        port = free_port()
        p = start([os.path.join(REL, "bench-direct"), f"127.0.0.1:{port}"], env={"DATABASE_URL": db or ""})
        wait_ok(f"http://127.0.0.1:{port}/noop")
        results["direct noop c16"] = wrk(f"http://127.0.0.1:{port}/noop", CONC)
        results["direct noop c1"] = wrk(f"http://127.0.0.1:{port}/noop", 1, 1)
        if db:
            results["direct db c16"] = with_cpu_breakdown(lambda: wrk(f"http://127.0.0.1:{port}/users", CONC))
        stop(p)

        # shim, N one-at-a-time workers (like N Lambda instances)
        port = free_port()
        p = shim_pod(port, N, 1)
        wait_ok(f"http://127.0.0.2:{port}/_shim/ready")
        results[f"shim noop c16 workers={N}"] = with_cpu(p.pid, lambda: wrk(f"http://127.0.0.1:{port}/noop", CONC))
        results["shim noop c1"] = with_cpu(p.pid, lambda: wrk(f"http://127.0.0.1:{port}/noop", 1, 1))
        stop(p)

        # shim, one concurrent worker (how our functions run)
        port = free_port()
        p = shim_pod(port, 1, CONC, env={"DATABASE_URL": db or ""})
        wait_ok(f"http://127.0.0.2:{port}/_shim/ready")
        results["shim noop c16 concurrency=16"] = with_cpu(p.pid, lambda: wrk(f"http://127.0.0.1:{port}/noop", CONC))
        if db:
            results["shim db c16 concurrency=16"] = with_cpu_breakdown(lambda: wrk(f"http://127.0.0.1:{port}/users", CONC))
        rss, worker_rss = shim_rss(port)
        stop(p)

        # cargo lambda watch, N instances
        port = free_port()
        env = {"PATH": os.path.join(ROOT, ".local", "venv", "bin") + ":" + os.environ["PATH"],
               "AWS_LAMBDA_LOG_LEVEL": "error"}
        p = start(["cargo", "lambda", "watch", "--release", "--concurrency", str(N), "--invoke-address", "127.0.0.1",
                   "--invoke-port", str(port), "--ignore-changes"], env=env)
        wait_ok(f"http://127.0.0.1:{port}/lambda-url/bench-noop/noop", within=900)
        results[f"cargo lambda watch noop c16 concurrency={N}"] = wrk(
            f"http://127.0.0.1:{port}/lambda-url/bench-noop/noop", CONC)
        stop(p)

        ready = ready_time_ms()
    finally:
        for p in procs:
            stop(p)

    d, s2, sc = results["direct noop c16"], results[f"shim noop c16 workers={N}"], results["shim noop c16 concurrency=16"]
    w = results[f"cargo lambda watch noop c16 concurrency={N}"]
    ratios = {
        f"shim (workers={N}) / direct, throughput": s2["rps"] / d["rps"],
        "shim (concurrency=16) / direct, throughput": sc["rps"] / d["rps"],
        f"shim (workers={N}) / cargo lambda watch (concurrency={N}), throughput": s2["rps"] / w["rps"],
        "p50 added latency at c1, µs": (results["shim noop c1"]["p50_ms"] - results["direct noop c1"]["p50_ms"]) * 1000,
    }
    if db:
        ratios["shim db / direct db, throughput"] = results["shim db c16 concurrency=16"]["rps"] / results["direct db c16"]["rps"]

    lines = ["# Benchmarks", "",
             "Produced by `make bench` (scripts/bench.py) in one run on this machine: 2 cores, "
             f"wrk -t2 -c{CONC} -d{SECONDS}s unless noted (c1 = wrk -t1 -c1); release builds; the handlers in "
             "shared/bench served directly by axum, as a Lambda function behind `shim pod`, and under "
             "`cargo lambda watch --release`. The load generator shares the 2 cores with the servers, "
             "so compare ratios, not absolute numbers.", "",
             f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", "",
             "| scenario | requests/s | p50 ms | p99 ms | non-2xx |", "|---|---:|---:|---:|---:|"]
    for k, r in results.items():
        lines.append(f"| {k} | {r['rps']:.0f} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} | {r['non2xx']} |")
    lines += ["", "| ratio | value | target |", "|---|---:|---|"]
    targets = {f"shim (workers={N}) / direct, throughput": ">= 0.40",
               f"shim (workers={N}) / cargo lambda watch (concurrency={N}), throughput": ">= 8",
               "p50 added latency at c1, µs": "< 150",
               "shim db / direct db, throughput": ">= 0.90"}
    for k, v in ratios.items():
        lines.append(f"| {k} | {v:.2f} | {targets.get(k, '')} |")
    lines += ["", "| resource | value | target |", "|---|---:|---|",
              f"| shim peak RSS under load | {rss / 1048576:.1f} MiB | < 8 MiB |",
              f"| function (bench-noop) peak RSS | {', '.join(f'{x / 1048576:.1f} MiB' for x in worker_rss)} | |",
              f"| pod ready (process start to first served request, median of 5) | {ready:.1f} ms | < 100 ms |", "",
              "| CPU per request (µs, from /proc) | shim | workers |", "|---|---:|---:|"]
    for k in (f"shim noop c16 workers={N}", "shim noop c1", "shim noop c16 concurrency=16"):
        r = results[k]
        lines.append(f"| {k} | {r['shim_cpu_us']:.0f} | {r['workers_cpu_us']:.0f} |")
    # What no shim could beat here: the function's own process (its Lambda
    # runtime client and handler) needs the workers' CPU per request even
    # if the shim cost nothing, on the same cores as everything else.
    cores = os.cpu_count()
    ceiling = cores * 1e6 / s2["workers_cpu_us"]
    lines += ["", "| ceiling if the shim cost nothing (cores / workers' CPU per request) | value | target |",
              "|---|---:|---|",
              f"| workers={N}: requests/s | {ceiling:.0f} | |",
              f"| workers={N}: / direct, throughput | {ceiling / d['rps']:.2f} | >= 0.40 |",
              f"| workers={N}: / cargo lambda watch, throughput | {ceiling / w['rps']:.2f} | >= 8 |"]
    if db:
        dd = results["direct db c16"]["machine_cpu_us"]
        lines.append(f"| db: / direct db, throughput (direct's whole-machine CPU {dd:.0f} µs + the runtime "
                     f"client's {sc['workers_cpu_us']:.0f} µs per request) | {dd / (dd + sc['workers_cpu_us']):.2f} | >= 0.90 |")
    if db:
        # Where the database path's CPU goes, process by process, in one run.
        dr, sr = results["direct db c16"], results["shim db c16 concurrency=16"]
        names = list(dict.fromkeys(list(dr["split_us"]) + list(sr["split_us"])))
        lines += ["", "| db path: CPU per request by process (µs, /proc) | direct db c16 | shim db c16 concurrency=16 |",
                  "|---|---:|---:|"]
        for k in names:
            lines.append(f"| {k} | {dr['split_us'].get(k, 0):.0f} | {sr['split_us'].get(k, 0):.0f} |")
        rest = lambda r: r["machine_cpu_us"] - sum(r["split_us"].values())
        lines.append(f"| kernel outside processes (softirq, idle wake-ups) | {rest(dr):.0f} | {rest(sr):.0f} |")
        lines.append(f"| whole machine | {dr['machine_cpu_us']:.0f} | {sr['machine_cpu_us']:.0f} |")
    lines.append("")
    text = "\n".join(lines)
    with open(os.path.join(ROOT, "BENCHMARKS.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
