"""Throughput, Redis commands and memory of RQ with and without instrumentation.

    python benchmarks/throughput.py            # the full run (targets: docs/performance.md)
    python benchmarks/throughput.py --quick    # small counts, < 2 minutes, for CI

Every variant (``benchmarks/variants.py``) runs in a fresh subprocess; rounds
interleave the variants (rotating their order) so drift on a shared machine
hits them alike. Each throughput cell is the median over rounds of the ratio to
plain RQ *in the same round*, with the min-max of those ratios. Redis commands
are counted with INFO commandstats on a private ``redis-server`` started for
the run (the shared server's counters are global and other clients move them);
RSS growth is that of a SimpleWorker process over ``--rss-jobs`` jobs.

Targets are printed PASS/MISS for information; the exit code is 0 unless the
benchmark itself breaks.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import redis

REPO_ROOT = Path(__file__).resolve().parent.parent
BASELINE = "plain-rq"
TARGET_VARIANT = "clues-drop"
VARIANTS = [
    # (name, what it is)
    (BASELINE, "plain RQ, no instrumentation"),
    ("sdk-only", "reference: SDK batch processors + dropping exporters, nothing instrumented"),
    ("sdk-floor", "reference: sdk-only plus exactly the SDK calls clues makes per enqueue and job, nothing of clues"),
    ("sdk-floor-otlp-http", "reference: as sdk-floor, OTLP/HTTP to the loopback sink (as clues-otlp-http)"),
    (TARGET_VARIANT, "clues, SDK batch processors, exporters that drop everything"),
    ("clues-otlp-http", "clues, SDK batch processors, OTLP/HTTP to a loopback sink"),
    ("clues-otlp-grpc", "clues, OTLP/gRPC to a loopback sink, gRPC's fork handlers on: the forking worker relays"),
    ("clues-otlp-grpc-in-process", "as clues-otlp-grpc with GRPC_ENABLE_FORK_SUPPORT=false: no relay"),
    ("clues-drop-no-span-events", "as clues-drop, with span_events=False (log records only)"),
    ("clues-legacy-log", "clues, instrument(event_publisher=LogPublisher(file)), no other OTel set-up"),
    ("otel-instrumentation-rq", "PyPI opentelemetry-instrumentation-rq, dropping exporters"),
    ("otel-instrumentation-rq-otlp-http", "PyPI opentelemetry-instrumentation-rq, OTLP/HTTP to the same sink"),
]
THROUGHPUT_METRICS = [("enqueue", "enqueue"), ("simple", "SimpleWorker"), ("fork", "Worker (fork)")]
OTLP_VARIANT, PEER, PEER_OTLP = "clues-otlp-http", "otel-instrumentation-rq", "otel-instrumentation-rq-otlp-http"
SDK_ONLY = "sdk-only"
# The targets (docs/performance.md): (metric, variant, floor ratio to plain rq,
# variant it must not fall behind, allowed gap to it)
TARGETS: list[tuple[str, str, float | None, str | None, float]] = [
    ("fork", OTLP_VARIANT, 0.85, PEER_OTLP, 0.0),
    ("fork", TARGET_VARIANT, None, SDK_ONLY, 0.05),
    ("simple", TARGET_VARIANT, 0.90, None, 0.0),
    ("simple", OTLP_VARIANT, 0.90, None, 0.0),
    ("enqueue", TARGET_VARIANT, 0.80, None, 0.0),
    ("enqueue", OTLP_VARIANT, None, PEER_OTLP, 0.0),
]
# Issue 18: clues' own CPU per job beyond the SDK calls it makes (sdk-floor), per metric, in µs.
SDK_FLOOR = "sdk-floor"
# What stands in the way of a missed ratio: the SDK calls alone, in the same export pipeline.
FLOOR_OF = {OTLP_VARIANT: "sdk-floor-otlp-http"}
CPU_TARGETS: list[tuple[str, str, float]] = [("enqueue", TARGET_VARIANT, 10.0), ("simple", TARGET_VARIANT, 40.0)]
RSS_TARGET_MB = 5.0


# --- a fast OTLP/HTTP sink: reads each request, answers 200, keeps counts ------------------
class _Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a collector does
    requests = 0
    body_bytes = 0
    lock = threading.Lock()

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        with _Sink.lock:
            _Sink.requests += 1
            _Sink.body_bytes += length
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def otlp_sink() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="otlp-sink", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def otlp_grpc_sink() -> Iterator[str]:
    """An OTLP/gRPC sink: every Export call is answered at once with an empty response."""
    from concurrent.futures import ThreadPoolExecutor

    import grpc

    def answer(request: bytes, context: Any) -> bytes:
        return b""  # an empty Export*ServiceResponse

    export = {"Export": grpc.unary_unary_rpc_method_handler(answer)}
    services = [
        grpc.method_handlers_generic_handler(f"opentelemetry.proto.collector.{signal_name}.v1.{service}", export)
        for signal_name, service in (("trace", "TraceService"), ("logs", "LogsService"), ("metrics", "MetricsService"))
    ]
    server = grpc.server(ThreadPoolExecutor(max_workers=4), handlers=services)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(None)


# --- a private redis-server for exact command counts --------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def counting_redis(shared_url: str, use_shared: bool) -> Iterator[tuple[str, str]]:
    """(url, where) of the server whose INFO commandstats the command counts come from."""
    binary = shutil.which("redis-server")
    if use_shared or binary is None:
        why = "--count-on-shared" if use_shared else "no redis-server binary"
        yield shared_url, f"shared server ({why}): counts include any other client's commands"
        return
    port = _free_port()
    with tempfile.TemporaryDirectory() as workdir:
        process = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", workdir],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            url = f"redis://127.0.0.1:{port}/0"
            deadline = time.monotonic() + 10
            while True:
                try:
                    redis.Redis.from_url(url).ping()
                    break
                except redis.ConnectionError:
                    if time.monotonic() > deadline or process.poll() is not None:
                        raise RuntimeError("the private redis-server for command counts did not start") from None
                    time.sleep(0.05)
            yield url, f"private redis-server {_redis_version(url)} on port {port} (started for this run)"
        finally:
            process.terminate()
            process.wait(10)


def _redis_version(url: str) -> str:
    return str(redis.Redis.from_url(url).info("server").get("redis_version", "?"))


def command_calls(conn: redis.Redis) -> dict[str, int]:
    return {name.removeprefix("cmdstat_"): int(stat["calls"]) for name, stat in conn.info("commandstats").items()}


# --- running one variant --------------------------------------------------------------------
def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env["OTEL_METRICS_EXPORTER"] = "none"
    return env


def run_variant(spec: dict[str, Any], timeout: float, module: str = "benchmarks.variants") -> dict[str, Any]:
    args = [sys.executable, "-m", module, json.dumps(spec)]
    try:
        done = subprocess.run(args, env=child_env(), cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"no result within {timeout:.0f}s", "stage": spec["phase"]}
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["(no stderr)"])[-1]
        return {"error": f"exit {done.returncode}: {tail}", "stage": spec["phase"]}
    result: dict[str, Any] = json.loads(lines[-1][len("RESULT ") :])
    return result


class ServedVariant:
    """A variant's process that runs timed steps on request (``throughput`` phase)."""

    def __init__(self, spec: dict[str, Any], timeout: float, module: str, stderr_path: Path) -> None:
        self.name = spec["variant"]
        self.timeout = timeout
        self.stderr = open(stderr_path, "w")  # noqa: SIM115  (closed in close())
        self.process = subprocess.Popen(
            [sys.executable, "-m", module, json.dumps(spec)],
            env=child_env(),
            cwd=REPO_ROOT,
            text=True,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            bufsize=1,
        )
        self.error: str | None = None

    def read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        deadline = time.monotonic() + self.timeout
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not selector.select(remaining):
                    return {"error": f"no result within {self.timeout:.0f}s"}
                line = self.process.stdout.readline()
                if not line:
                    return {"error": f"exited {self.process.wait()}: {self._stderr_tail()}"}
                if line.startswith("RESULT "):
                    result: dict[str, Any] = json.loads(line[len("RESULT ") :])
                    return result

    def step(self, op: str, n: int = 0) -> dict[str, Any]:
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(json.dumps({"op": op, "n": n}) + "\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            return {"error": f"exited {self.process.wait()}: {self._stderr_tail()}"}
        return self.read()

    def _stderr_tail(self) -> str:
        self.stderr.flush()
        lines = Path(self.stderr.name).read_text().strip().splitlines()
        return lines[-1] if lines else "(no stderr)"

    def close(self) -> dict[str, Any]:
        """Ask the process to end; its last result (the variant's own check) is returned."""
        final: dict[str, Any] = {}
        if self.process.poll() is None:
            try:
                final = self.step("quit")
                self.process.wait(30)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()
        self.stderr.close()
        return final


STEPS = [("enqueue", "jobs"), ("simple", "jobs"), ("fork", "fork_jobs")]


def interleaved_throughput(
    names: list[str], spec: Any, opts: argparse.Namespace, say: Any, module: str = "benchmarks.variants"
) -> dict[str, dict[str, Any]]:
    """All variants' processes side by side; each round runs each step on each variant in turn.

    Returns per variant: ``rates``/``ratios``/``cpu_us`` lists per metric (one entry
    per round; ratios are to the baseline in the same round) and ``error``.
    """
    out = {
        n: {
            "rates": {m: [] for m, _ in THROUGHPUT_METRICS},
            "ratios": {m: [] for m, _ in THROUGHPUT_METRICS},
            "cpu_us": {m: [] for m, _ in THROUGHPUT_METRICS},
            "error": None,
        }
        for n in names
    }
    served: dict[str, ServedVariant] = {}
    discarded: list[str] = []  # rounds in which jobs vanished: they cannot be compared, so none of it counts
    logs = Path(tempfile.mkdtemp(prefix="clues-bench-stderr-"))
    try:
        for name in names:
            served[name] = ServedVariant(
                spec(name, "throughput"), opts.timeout, module, logs / (name.replace("/", "_") + ".err")
            )
        for name, variant in served.items():
            ready = variant.read()
            if "error" in ready:
                out[name]["error"] = f"{ready['error']} (at {ready.get('stage', 'setup')})"
        for round_no in range(opts.rounds):
            live = [n for n in names if out[n]["error"] is None]
            order = live[round_no % len(live) :] + live[: round_no % len(live)] if live else []
            results: dict[str, dict[str, dict[str, float]]] = {n: {} for n in order}
            disturbed = ""
            for op, count in STEPS:
                for name in order:
                    if out[name]["error"]:
                        continue
                    result = served[name].step(op, getattr(opts, count))
                    if "error" in result:
                        out[name]["error"] = f"{result['error']} (at {result.get('stage', op)})"
                    elif "skipped" in result:
                        disturbed = f"{name} {op}: {result['skipped']}"
                    else:
                        results[name][op] = result
            flush_db(opts.redis_url)  # every queue is empty between rounds
            if disturbed:
                discarded.append(disturbed)
                say(f"round {round_no + 1}/{opts.rounds} discarded: {disturbed}")
                continue
            base = results.get(BASELINE, {})
            for name, by_op in results.items():
                if out[name]["error"] or len(by_op) < len(STEPS):
                    continue
                for metric, _ in THROUGHPUT_METRICS:
                    out[name]["rates"][metric].append(by_op[metric]["rate"])
                    out[name]["cpu_us"][metric].append(by_op[metric]["cpu_us"])
                    if metric in base:
                        out[name]["ratios"][metric].append(by_op[metric]["rate"] / base[metric]["rate"])
            say(f"round {round_no + 1}/{opts.rounds} done ({', '.join(order)})")
    finally:
        for name, variant in served.items():
            final = variant.close()
            if "error" in final and out[name]["error"] is None:
                out[name]["error"] = f"{final['error']} (at {final.get('stage')})"
        shutil.rmtree(logs, ignore_errors=True)
    out[BASELINE]["discarded"] = discarded
    return out


# --- measurements -------------------------------------------------------------------------
@dataclass
class Row:
    name: str
    rates: dict[str, list[float]] = field(default_factory=lambda: {m: [] for m, _ in THROUGHPUT_METRICS})
    ratios: dict[str, list[float]] = field(default_factory=lambda: {m: [] for m, _ in THROUGHPUT_METRICS})
    cpu_us: dict[str, list[float]] = field(default_factory=lambda: {m: [] for m, _ in THROUGHPUT_METRICS})
    rss_mb: list[float] = field(default_factory=list)
    commands: dict[str, int] | None = None
    command_jobs: int = 0
    error: str | None = None
    discarded: list[str] = field(default_factory=list)
    rss_discarded: list[str] = field(default_factory=list)


def flush_db(url: str) -> None:
    with redis.Redis.from_url(url) as conn:
        conn.flushdb()


def measure(opts: argparse.Namespace, say: Any) -> tuple[dict[str, Row], str]:
    rows = {name: Row(name) for name, _ in VARIANTS}
    names = [name for name, _ in VARIANTS]
    tmp = Path(tempfile.mkdtemp(prefix="clues-bench-"))
    timeout = opts.timeout

    def spec(name: str, phase: str, url: str, **extra: Any) -> dict[str, Any]:
        return {
            "variant": name,
            "phase": phase,
            "redis_url": url,
            "queue": f"bench-{phase}",
            "jobs": opts.jobs,
            "fork_jobs": opts.fork_jobs,
            "otlp_endpoint": endpoint,
            "otlp_grpc_endpoint": grpc_endpoint,
            "log_path": str(tmp / f"{name}-{phase}-{time.monotonic_ns()}.log"),
            **extra,
        }

    def note_error(name: str, result: dict[str, Any]) -> bool:
        if "error" in result:
            if rows[name].error is None:
                rows[name].error = f"{result['error']} (at {result.get('stage')})"
            return True
        return False

    try:
        with (
            otlp_sink() as endpoint,
            otlp_grpc_sink() as grpc_endpoint,
            counting_redis(opts.redis_url, opts.count_on_shared) as (count_url, count_where),
        ):
            if opts.private_redis:
                if count_url == opts.redis_url:
                    raise SystemExit("--private-redis needs a redis-server binary (and not --count-on-shared)")
                opts.redis_url = with_db(count_url, opts.db)
                say(f"everything runs on the {count_where}: {opts.redis_url}")
            flush_db(opts.redis_url)
            measured = interleaved_throughput(
                names, lambda name, phase: spec(name, phase, opts.redis_url, queue=f"bench-{name}"), opts, say
            )
            for name, m in measured.items():
                rows[name].rates, rows[name].ratios, rows[name].cpu_us = m["rates"], m["ratios"], m["cpu_us"]
                rows[name].error = rows[name].error or m["error"]
                rows[name].discarded = m.get("discarded", [])

            for name in names:
                if rows[name].error:
                    continue
                with redis.Redis.from_url(count_url) as conn:
                    conn.flushdb()
                    before = command_calls(conn)
                    result = run_variant(
                        spec(name, "commands", count_url, jobs=opts.command_jobs, fork_jobs=opts.command_fork_jobs),
                        timeout,
                    )
                    after = command_calls(conn)
                if not note_error(name, result):
                    rows[name].commands = {c: n - before.get(c, 0) for c, n in after.items() if n - before.get(c, 0)}
                    rows[name].command_jobs = result["jobs"]
            say("redis commands counted")

            for round_no in range(opts.rss_rounds):
                for name in names[round_no % len(names) :] + names[: round_no % len(names)]:
                    if rows[name].error:
                        continue
                    flush_db(opts.redis_url)
                    total = opts.rss_jobs + opts.rss_warm
                    result = run_variant(spec(name, "enqueue", opts.redis_url, jobs=total, queue="bench-rss"), timeout)
                    if note_error(name, result):
                        continue
                    result = run_variant(
                        spec(name, "rss", opts.redis_url, warm=opts.rss_warm, queue="bench-rss"), timeout
                    )
                    if note_error(name, result):
                        continue
                    if result["jobs"] != opts.rss_jobs:
                        rows[name].rss_discarded.append(f"{result['jobs']} of {opts.rss_jobs} jobs found")
                        say(f"rss {name}: {result['jobs']} of {opts.rss_jobs} jobs found; discarded")
                        continue
                    rows[name].rss_mb.append((result["rss_after"] - result["rss_before"]) / 2**20)
                say(f"rss round {round_no + 1}/{opts.rss_rounds} done")
            flush_db(opts.redis_url)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return rows, count_where


# --- the table ------------------------------------------------------------------------------
def spread(values: list[float], fmt: str) -> str:
    if not values:
        return "-"
    median = statistics.median(values)
    if len(values) == 1:
        return format(median, fmt)
    return f"{median:{fmt}} [{min(values):{fmt}}-{max(values):{fmt}}]"


def commands_cell(row: Row, base: Row) -> str:
    if row.commands is None or not row.command_jobs:
        return "-"
    per_job = sum(row.commands.values()) / row.command_jobs
    if row is base or base.commands is None:
        return f"{per_job:.2f}"
    if row.commands == base.commands:
        return f"{per_job:.2f} (equal)"
    keys = sorted(set(row.commands) | set(base.commands))
    diffs = [
        f"{k}{row.commands.get(k, 0) - base.commands.get(k, 0):+d}"
        for k in keys
        if row.commands.get(k, 0) != base.commands.get(k, 0)
    ]
    return f"{per_job:.2f} (differs: {', '.join(diffs)})"


def render(rows: dict[str, Row], opts: argparse.Namespace, count_where: str) -> str:
    base = rows[BASELINE]
    header = [
        "variant",
        *[f"{label} ratio" for _, label in THROUGHPUT_METRICS],
        "redis cmds/job",
        f"RSS growth MB/{opts.rss_jobs} jobs",
    ]
    table = [header]
    for name, _ in VARIANTS:
        row = rows[name]
        if row.error:
            table.append([name, f"not available: {row.error}"])
            continue
        cells = [name]
        for metric, _ in THROUGHPUT_METRICS:
            if row is base:
                cells.append("1 (" + spread(row.rates[metric], ".0f") + "/s)")
            else:
                cells.append(spread(row.ratios[metric], ".2f"))
        cells.append(commands_cell(row, base))
        cells.append(spread(row.rss_mb, ".2f") if row.rss_mb or not row.rss_discarded else "discarded (jobs vanished)")
        table.append(cells)

    widths = [max(len(r[i]) for r in table if len(r) > i and len(r) == len(header)) for i in range(len(header))]
    out = []
    for r in table:
        if len(r) == len(header):
            out.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
        else:
            out.append(f"{r[0].ljust(widths[0])}  {r[1]}")
    out.append("")
    out.append("cells: median over rounds [min-max]; throughput is the ratio to plain-rq in the same round")
    if base.discarded:
        out.append(f"{len(base.discarded)} of {opts.rounds} rounds discarded (jobs vanished: {base.discarded[0]})")
    out.append(f"redis commands: INFO commandstats on the {count_where}; {base.command_jobs} jobs per variant")
    out.append("")
    out.append("CPU per job (µs, median over rounds; the variant's process and its work horses, not Redis):")
    cpu_rows = [["variant", *[label for _, label in THROUGHPUT_METRICS]]]
    for name, _ in VARIANTS:
        row = rows[name]
        if row.error or not row.cpu_us["enqueue"]:
            continue
        cells = [name]
        for metric, _ in THROUGHPUT_METRICS:
            value = statistics.median(row.cpu_us[metric])
            if row is base or not base.cpu_us[metric]:
                cells.append(f"{value:.0f}")
            else:
                cells.append(f"{value:.0f} ({value - statistics.median(base.cpu_us[metric]):+.0f})")
        cpu_rows.append(cells)
    cpu_widths = [max(len(r[i]) for r in cpu_rows) for i in range(len(cpu_rows[0]))]
    out.extend("  " + "  ".join(c.ljust(w) for c, w in zip(r, cpu_widths, strict=True)).rstrip() for r in cpu_rows)
    out.append("")
    out.append("targets (docs/performance.md):")
    labels = dict(THROUGHPUT_METRICS)
    for metric, name, floor, rival, gap in TARGETS:
        out.append(target_line(rows, metric, labels[metric], name, floor, rival, gap))
    for metric, name, budget_us in CPU_TARGETS:
        out.append(cpu_target_line(rows, labels[metric], metric, name, budget_us))
    target = rows[TARGET_VARIANT]
    line = f"  {'redis commands/job equal':28}"
    if target.commands is None or base.commands is None:
        out.append(line + "n/a   not measured")
    else:
        same = target.commands == base.commands
        out.append(line + f"{'equal' if same else 'differ':<6}{'PASS' if same else 'MISS'}")
    line = f"  {'RSS growth < ' + format(RSS_TARGET_MB, '.0f') + ' MB':28}"
    if not target.rss_mb:
        out.append(line + "n/a   not measured")
    else:
        growth = statistics.median(target.rss_mb)
        verdict = "PASS" if growth < RSS_TARGET_MB else "MISS"
        note = "" if opts.rss_jobs >= 20000 else f"  (over {opts.rss_jobs} jobs, not 20000)"
        out.append(line + f"{growth:<6.2f}{verdict}{note}")
    return "\n".join(out)


def median_ratio(row: Row, metric: str) -> float | None:
    return None if row.error or not row.ratios[metric] else statistics.median(row.ratios[metric])


def target_line(
    rows: dict[str, Row], metric: str, label: str, name: str, floor: float | None, rival: str | None, gap: float
) -> str:
    """One target: ``name``'s ratio at least ``floor``, and at least ``rival``'s minus ``gap``."""
    wants = [f">= {floor:.2f}"] if floor is not None else []
    if rival is not None:
        wants.append(f">= {rival}" + (f" - {gap:.2f}" if gap else ""))
    line = f"  {label + ', ' + name + ' ' + ' and '.join(wants):74} "
    value = median_ratio(rows[name], metric)
    if value is None:
        return line + "n/a   not measured"
    verdicts = [] if floor is None else [value >= floor]
    rival_value = median_ratio(rows[rival], metric) if rival is not None else None
    if rival is not None and rival_value is None:
        return line + f"{value:<6.2f}n/a   ({rival} not measured)"
    if rival_value is not None:
        verdicts.append(value >= rival_value - gap)
        line += f"{value:.2f} vs {rival_value:.2f}  "
    else:
        line += f"{value:<6.2f}"
    if all(verdicts):
        return line + "PASS"
    return line + "MISS" + floor_note(rows, metric, name)


def floor_note(rows: dict[str, Row], metric: str, name: str) -> str:
    """What stands in the way of ``name``'s missed ratio, measured in the same run: how far the SDK
    calls clues makes get on their own, exported as ``name`` exports, with nothing of clues around them."""
    floor_name = FLOOR_OF.get(name, SDK_FLOOR)
    if floor_name != SDK_FLOOR and metric == "fork":
        return ""  # its horses make the SDK calls and exit without exporting them: no floor for an exporting worker
    floor = median_ratio(rows[floor_name], metric) if floor_name in rows else None
    return "" if floor is None else f"  ({floor_name}, the SDK calls alone: {floor:.2f})"


def cpu_target_line(rows: dict[str, Row], label: str, metric: str, name: str, budget_us: float) -> str:
    """``name``'s CPU per job beyond sdk-floor's (the SDK calls alone) at most ``budget_us``."""
    line = f"  {label + ', ' + name + ' CPU beyond ' + SDK_FLOOR + f' <= {budget_us:.0f} us':74} "
    row, floor = rows[name], rows[SDK_FLOOR]
    if row.error or floor.error or not row.cpu_us[metric] or not floor.cpu_us[metric]:
        return line + "n/a   not measured"
    beyond = statistics.median(row.cpu_us[metric]) - statistics.median(floor.cpu_us[metric])
    return line + f"{beyond:<6.0f}" + ("PASS" if beyond <= budget_us else "MISS")


def machine() -> str:
    from importlib.metadata import PackageNotFoundError, version

    def v(dist: str) -> str:
        try:
            return version(dist)
        except PackageNotFoundError:
            return "not installed"

    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"nproc {os.cpu_count()}, CPU {cpu}, Python {platform.python_version()}, rq {v('rq')}, "
        f"redis-py {v('redis')}, opentelemetry-sdk {v('opentelemetry-sdk')}, "
        f"opentelemetry-instrumentation {v('opentelemetry-instrumentation')}, "
        f"opentelemetry-instrumentation-rq {v('opentelemetry-instrumentation-rq')}"
    )


def with_db(url: str, db: int) -> str:
    """``url`` pointing at ``db`` (a db number already in the URL is replaced)."""
    if url.startswith("unix://"):
        return f"{url.split('?', 1)[0]}?db={db}"
    base = url.rstrip("/")
    if base.count("/") > 2:
        base = base.rsplit("/", 1)[0]
    return f"{base}/{db}"


@contextmanager
def given_or_leased_database(redis_url: str | None, db: int | None) -> Iterator[str]:
    """``redis_url`` (at ``db`` when given) as it is, or else a database leased as the tests lease
    theirs (flushed before and after, given back at the end)."""
    if redis_url:
        yield redis_url if db is None else with_db(redis_url, db)
        return
    from tests.conftest import _leased_database

    with _leased_database() as url:
        yield url


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small counts for CI (< 2 minutes)")
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379",
        help="server for the throughput and RSS runs (REDIS_URL, else 127.0.0.1:6379)",
    )
    parser.add_argument("--db", type=int, default=13, help="Redis db to use and flush (default 13)")
    parser.add_argument(
        "--private-redis",
        action="store_true",
        help="run everything on a private redis-server started for the run (when others share "
        "the server and may flush its dbs)",
    )
    parser.add_argument(
        "--count-on-shared",
        action="store_true",
        help="count Redis commands on --redis-url instead of a private redis-server",
    )
    parser.add_argument("--rounds", type=int, help="throughput rounds (default 7, quick 3)")
    parser.add_argument(
        "--jobs", type=int, help="jobs per round for enqueue and SimpleWorker (default 1000, quick 300)"
    )
    parser.add_argument("--fork-jobs", type=int, help="jobs per round for the forking Worker (default 150, quick 40)")
    parser.add_argument("--command-jobs", type=int, default=None, help="SimpleWorker jobs when counting commands")
    parser.add_argument("--command-fork-jobs", type=int, default=None, help="forking Worker jobs when counting")
    parser.add_argument("--rss-jobs", type=int, help="jobs measured for RSS growth (default 20000, quick 1000)")
    parser.add_argument("--rss-warm", type=int, help="jobs worked before the first RSS reading (default 1000)")
    parser.add_argument("--rss-rounds", type=int, help="RSS rounds (default 2, quick 1)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds one variant process may take")
    opts = parser.parse_args(argv)
    quick = opts.quick
    defaults = {
        "rounds": (3, 7),
        "jobs": (300, 1000),
        "fork_jobs": (40, 150),
        "rss_jobs": (1000, 20000),
        "rss_warm": (200, 1000),
        "rss_rounds": (1, 2),
    }
    for key, (small, full) in defaults.items():
        if getattr(opts, key) is None:
            setattr(opts, key, small if quick else full)
    if opts.command_jobs is None:
        opts.command_jobs = min(opts.jobs, 100)
    if opts.command_fork_jobs is None:
        opts.command_fork_jobs = min(opts.fork_jobs, 20)
    opts.redis_url = with_db(opts.redis_url, opts.db)
    return opts


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    opts = parse(argv)
    started = time.monotonic()
    signal.signal(signal.SIGTERM, _exit_on_sigterm)  # so the private redis-server and children are stopped

    def say(text: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {text}", file=sys.stderr, flush=True)

    say(
        f"redis {opts.redis_url}; {opts.rounds} rounds x {opts.jobs} jobs (+{opts.fork_jobs} forked); "
        f"RSS over {opts.rss_jobs} jobs"
    )
    rows, count_where = measure(opts, say)
    print(f"# {' '.join(['python', 'benchmarks/throughput.py', *(argv if argv is not None else sys.argv[1:])])}")
    print(f"# {machine()}")
    print(f"# redis: {opts.redis_url}")
    print(
        f"# {opts.rounds} rounds x {opts.jobs} jobs (SimpleWorker, enqueue), {opts.fork_jobs} jobs (forking Worker); "
        f"{time.monotonic() - started:.0f}s"
    )
    print()
    print(render(rows, opts, count_where))
    return 0


if __name__ == "__main__":
    sys.exit(main())
