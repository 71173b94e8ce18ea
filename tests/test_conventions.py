"""OpenTelemetry conventions (issue 18): names, suppression, start attributes, schema_url, sends."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator, Sequence
from datetime import timedelta
from typing import Any

import pytest
import redis
from opentelemetry.context import Context
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.semconv.schemas import Schemas
from opentelemetry.trace import Link, SpanKind, StatusCode
from opentelemetry.util.types import Attributes
from rq import Queue, SimpleWorker
from rq.job import Job

from opentelemetry_instrumentation_clues import CluesInstrumentor, LogPublisher
from tests import conventions_jobs, jobs
from tests.metric_points import from_sdk, totals

SENT = "messaging.client.sent.messages"
START_KEYS = (
    "messaging.system",
    "messaging.destination.name",
    "messaging.operation.type",
    "messaging.operation.name",
    "messaging.message.id",
)


class SpySampler(Sampler):
    """Records what each span start offered the sampler; keeps or drops every span."""

    def __init__(self, keep: bool) -> None:
        self.keep = keep
        self.seen: list[tuple[str, dict[str, Any]]] = []

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: Any = None,
    ) -> SamplingResult:
        self.seen.append((name, dict(attributes or {})))
        return SamplingResult(Decision.RECORD_AND_SAMPLE if self.keep else Decision.DROP, attributes)

    def get_description(self) -> str:
        return "SpySampler"


class Pipeline:
    """In-memory spans, log records and metrics, and clues instrumented onto them."""

    def __init__(self, sampler: Sampler | None = None, **instrument_kwargs: Any) -> None:
        self.spans = InMemorySpanExporter()
        self.tracer_provider = TracerProvider(sampler=sampler) if sampler else TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.logs = InMemoryLogRecordExporter()
        self.logger_provider = LoggerProvider()
        self.logger_provider.add_log_record_processor(SimpleLogRecordProcessor(self.logs))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        self.instrumentor = CluesInstrumentor()
        self.instrument_kwargs = instrument_kwargs

    def __enter__(self) -> Pipeline:
        self.instrumentor.instrument(
            tracer_provider=self.tracer_provider,
            logger_provider=self.logger_provider,
            meter_provider=self.meter_provider,
            **self.instrument_kwargs,
        )
        return self

    def __exit__(self, *exc: object) -> None:
        self.instrumentor.uninstrument()

    def finished_spans(self) -> list[Any]:
        return list(self.spans.get_finished_spans())

    def records(self) -> list[dict[str, Any]]:
        return [dict(r.log_record.attributes or {}) for r in self.logs.get_finished_logs()]

    def event_types(self) -> list[str]:
        return [str(a["clues.event_type"]) for a in self.records()]

    def totals(self, name: str, by: str) -> dict[Any, float]:
        return totals(from_sdk(self.reader.get_metrics_data()), name, by)


@pytest.fixture
def pipeline() -> Iterator[Pipeline]:
    with Pipeline() as p:
        yield p


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- names ---------------------------------------------------------------------------------------


def test_exception_type_is_module_and_qualname_as_the_sdk_writes_it(redis_conn, tmp_path):
    path = tmp_path / "clues.log"
    with Pipeline(event_publisher=LogPublisher(path)) as p:
        queue = Queue("conventions", connection=redis_conn)
        queue.enqueue(conventions_jobs.over_quota)
        queue.enqueue(jobs.fail, "builtin")
        SimpleWorker([queue], connection=redis_conn).work(burst=True)

    sdk_span = TracerProvider().get_tracer("t").start_span("reference")
    sdk_span.record_exception(conventions_jobs.Billing.QuotaExceeded("x"))
    sdk_type = sdk_span.events[0].attributes["exception.type"]  # type: ignore[attr-defined,index]
    assert sdk_type == "tests.conventions_jobs.Billing.QuotaExceeded"

    failed = [a for a in p.records() if a["clues.event_type"] == "failed"]
    assert [a["exception.type"] for a in failed] == [sdk_type, "ValueError"]  # builtins keep their bare name
    assert [a["error.type"] for a in failed] == [sdk_type, "ValueError"]  # the failed record's error.type too
    processes = [s for s in p.finished_spans() if s.name == "process conventions"]
    assert [s.attributes["error.type"] for s in processes] == [sdk_type, "ValueError"]
    legacy = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["metadata"]["exception"] for line in legacy if line["event_type"] == "failed"] == [
        sdk_type,
        "ValueError",
    ]


def test_tracer_logger_and_meter_carry_the_semconv_schema_url(redis_conn, pipeline: Pipeline):
    Queue("schema", connection=redis_conn).enqueue(jobs.add, 1, 2)
    expected = Schemas.V1_28_0.value
    (send,) = pipeline.finished_spans()
    assert send.instrumentation_scope is not None and send.instrumentation_scope.schema_url == expected
    (record,) = pipeline.logs.get_finished_logs()
    assert record.instrumentation_scope is not None and record.instrumentation_scope.schema_url == expected
    data = pipeline.reader.get_metrics_data()
    assert data is not None
    scopes = [sm.scope for rm in data.resource_metrics for sm in rm.scope_metrics]
    assert [s.schema_url for s in scopes if s.name == "opentelemetry_instrumentation_clues"] == [expected]


# --- suppression -----------------------------------------------------------------------------------


def test_nothing_is_published_for_jobs_enqueued_inside_suppress_instrumentation(redis_conn, pipeline: Pipeline):
    queue = Queue("quiet", connection=redis_conn)
    with suppress_instrumentation():
        plain = queue.enqueue(jobs.add, 1, 2)
        later = queue.enqueue_in(timedelta(hours=1), jobs.add, 3, 4)
        waiting = queue.enqueue(jobs.add, 5, 6, depends_on=later)
        queue.enqueue_many([Queue.prepare_data(jobs.add, (7, 8))])
        plain.cancel()
    assert pipeline.finished_spans() == []
    assert pipeline.records() == []
    assert pipeline.totals(SENT, "messaging.operation.name") == {}
    # the jobs themselves went through, without clues data
    assert [Job.fetch(j.id, connection=redis_conn).get_status() for j in (plain, later, waiting)] == [
        "canceled",
        "scheduled",
        "deferred",
    ]
    assert "clues" not in Job.fetch(plain.id, connection=redis_conn).meta
    queue.enqueue(jobs.add, 1, 2)  # and outside it, clues is on
    assert pipeline.event_types() == ["enqueued"]


def test_a_worker_running_inside_suppress_instrumentation_publishes_nothing(redis_conn, pipeline: Pipeline):
    queue = Queue("quiet-worker", connection=redis_conn)
    done, failed = queue.enqueue(jobs.add, 1, 2), queue.enqueue(jobs.fail, "boom")
    enqueued = pipeline.records()
    with suppress_instrumentation():
        SimpleWorker([queue], connection=redis_conn).work(burst=True)
        Queue("quiet-sync", connection=redis_conn, is_async=False).enqueue(jobs.add, 3, 4)
    assert [done.get_status(refresh=True), failed.get_status(refresh=True)] == ["finished", "failed"]
    assert pipeline.records() == enqueued  # only the two enqueues, from before
    assert [s.name for s in pipeline.finished_spans()] == ["send quiet-worker", "send quiet-worker"]
    assert pipeline.totals("messaging.client.consumed.messages", "clues.outcome") == {}
    again = queue.enqueue(jobs.add, 5, 6)  # and outside it, clues is on
    SimpleWorker([queue], connection=redis_conn).work(burst=True)
    stories = [a["clues.event_type"] for a in pipeline.records() if a["messaging.message.id"] == again.id]
    assert stories == ["enqueued", "dequeued", "perform_started", "perform_finished"]


# --- what samplers see -----------------------------------------------------------------------------


@pytest.mark.parametrize("keep", [True, False], ids=["sampled", "dropped"])
def test_samplers_see_the_messaging_attributes_when_a_send_span_starts(redis_conn, keep):
    sampler = SpySampler(keep)
    with Pipeline(sampler=sampler) as p:
        queue = Queue("sampled", connection=redis_conn)
        sent = queue.enqueue(jobs.add, 1, 2)
        scheduled = queue.enqueue_in(timedelta(hours=1), jobs.add, 3, 4)
        deferred = queue.enqueue(jobs.add, 5, 6, depends_on=scheduled)
    expected = {
        "send sampled": ("send", "send", sent.id),
        "schedule sampled": ("create", "schedule", scheduled.id),
        "defer sampled": ("create", "defer", deferred.id),
    }
    assert [name for name, _ in sampler.seen] == list(expected)
    for name, attributes in sampler.seen:
        operation_type, operation_name, job_id = expected[name]
        assert {key: attributes.get(key) for key in START_KEYS} == {
            "messaging.system": "rq",
            "messaging.destination.name": "sampled",
            "messaging.operation.type": operation_type,
            "messaging.operation.name": operation_name,  # == the span name's first word
            "messaging.message.id": job_id,
        }
    # The log records do not depend on trace sampling, nor does the context that travels with the job.
    assert p.event_types() == ["enqueued", "scheduled", "deferred"]
    for job in (sent, scheduled, deferred):
        traceparent = Job.fetch(job.id, connection=redis_conn).meta["clues"]["carrier"]["traceparent"]
        assert bool(int(traceparent.rsplit("-", 1)[1], 16) & 1) is keep  # the sampled flag
    spans = p.finished_spans()
    if keep:
        assert sorted(s.name for s in spans) == sorted(expected)
        assert all(s.attributes["rq.job.func_name"] == "tests.jobs.add" for s in spans)
    else:
        assert spans == []


@pytest.mark.parametrize("keep", [True, False], ids=["sampled", "dropped"])
def test_samplers_see_the_messaging_attributes_when_a_process_span_starts(redis_conn, keep):
    queue = Queue("consumed", connection=redis_conn)
    job = queue.enqueue(jobs.add, 1, 2)  # uninstrumented: the attempt starts a trace of its own
    sampler = SpySampler(keep)
    with Pipeline(sampler=sampler) as p:
        SimpleWorker([queue], connection=redis_conn).work(burst=True)
    assert job.get_status(refresh=True) == "finished"
    (started,) = sampler.seen
    assert started[0] == "process consumed"
    assert {key: started[1].get(key) for key in START_KEYS} == {
        "messaging.system": "rq",
        "messaging.destination.name": "consumed",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.message.id": job.id,
    }
    assert p.event_types() == ["dequeued", "perform_started", "perform_finished"]  # records whatever is sampled
    if keep:
        (span,) = p.finished_spans()
        assert span.attributes["rq.job.func_name"] == "tests.jobs.add"  # the rest, once it records
        assert [e.name for e in span.events] == ["dequeued", "perform_started", "perform_finished"]
    else:
        assert p.finished_spans() == []


# --- links ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("propagation", ["link", "child"])
def test_each_process_span_links_to_the_send_that_created_its_message(redis_conn, propagation):
    with Pipeline(propagation=propagation) as p:
        queue = Queue("linked", connection=redis_conn)
        queue.enqueue(jobs.retry_until_exhausted)  # two attempts, the second after a re-enqueue
        SimpleWorker([queue], connection=redis_conn).work(burst=True)
    spans = sorted(p.finished_spans(), key=lambda s: s.start_time)
    sends = [s for s in spans if s.kind is SpanKind.PRODUCER]
    processes = [s for s in spans if s.kind is SpanKind.CONSUMER]
    assert len(processes) == 2 and len(sends) == 2
    for process in processes:
        # the send that put this attempt's message on the queue: the latest one before it started
        (creation,) = [s for s in sends if s.start_time < process.start_time][-1:]
        assert [link.context.span_id for link in process.links] == [creation.context.span_id]
        assert process.parent is not None and process.parent.span_id == creation.context.span_id  # and its parent


# --- span events (OTEP 4430 deprecates them in favour of log-based events) ---------------------------


@pytest.mark.parametrize("switch", ["kwarg", "env"])
def test_span_events_false_writes_the_lifecycle_as_log_records_only(redis_conn, tmp_path, monkeypatch, switch):
    path = tmp_path / "clues.log"
    if switch == "env":
        monkeypatch.setenv("OTEL_PYTHON_CLUES_SPAN_EVENTS", "false")
    options = {"span_events": False} if switch == "kwarg" else {}
    with Pipeline(event_publisher=LogPublisher(path), **options) as p:
        queue = Queue("no-span-events", connection=redis_conn)
        queue.enqueue(jobs.add, 1, 2)
        queue.enqueue(jobs.fail, "boom")
        SimpleWorker([queue], connection=redis_conn).work(burst=True)
    story = ["enqueued", "dequeued", "perform_started"]
    assert p.event_types() == [*story[:1], *story[:1], *story[1:], "perform_finished", *story[1:], "failed"]
    spans = p.finished_spans()
    assert sorted(s.name for s in spans) == ["process no-span-events"] * 2 + ["send no-span-events"] * 2
    assert all(not s.events for s in spans)  # no span events, and everything else as before
    (failed,) = [s for s in spans if s.status.status_code is StatusCode.ERROR]
    assert failed.attributes["error.type"] == "ValueError"
    assert len(path.read_text().splitlines()) == 8  # the legacy lines come from the log records


# --- sent.messages ---------------------------------------------------------------------------------


def test_sent_messages_counts_sends_and_not_creates(redis_conn, pipeline: Pipeline):
    queue = Queue("counted", connection=redis_conn)
    first = queue.enqueue(jobs.add, 1, 2)
    queue.enqueue_in(timedelta(hours=1), jobs.add, 3, 4)
    queue.enqueue(jobs.add, 5, 6, depends_on=first)  # deferred until first finishes
    assert pipeline.totals(SENT, "messaging.operation.name") == {"send": 1}
    SimpleWorker([queue], connection=redis_conn).work(burst=True)  # first runs, its dependent is enqueued
    assert pipeline.totals(SENT, "messaging.operation.name") == {"send": 2}
    assert pipeline.totals(SENT, "error.type") == {None: 2}


def test_a_send_that_fails_in_rq_is_an_error_span_and_counted_and_rq_raises_as_usual(redis_url):
    dead = redis.Redis(host="127.0.0.1", port=closed_port(), socket_connect_timeout=2)

    def enqueue() -> BaseException:
        with pytest.raises(redis.exceptions.ConnectionError) as caught:
            Queue("down", connection=dead).enqueue(jobs.add, 1, 2)
        return caught.value

    plain = enqueue()
    with Pipeline() as p:
        instrumented = enqueue()
        with pytest.raises(redis.exceptions.ConnectionError):
            Queue("down", connection=dead).enqueue_in(timedelta(seconds=5), jobs.add, 1, 2)
    assert type(instrumented) is type(plain) and instrumented.args == plain.args  # rq's exception, unchanged
    error_type = "redis.exceptions.ConnectionError"
    spans = {s.name: s for s in p.finished_spans()}
    assert set(spans) == {"send down", "schedule down"}
    for span in spans.values():
        assert span.status.status_code is StatusCode.ERROR
        assert span.attributes["error.type"] == error_type
    assert spans["send down"].attributes["messaging.operation.type"] == "send"
    assert p.records() == []  # nothing was enqueued or scheduled
    assert p.totals(SENT, "error.type") == {error_type: 1}  # the failed send; a failed schedule is no send
    assert p.totals(SENT, "messaging.operation.name") == {"send": 1}


# --- rq 3: rate-limited enqueue (the feature does not exist on rq 2.x, so neither does the test) ---

if hasattr(Queue, "_enqueue_rate_limited_job"):

    def test_a_rate_limited_job_is_sent_in_its_own_trace_like_any_other(redis_conn, pipeline: Pipeline):
        from rq.rate_limit import RateLimit

        queue = Queue("limited", connection=redis_conn)
        limit = RateLimit("conventions", concurrency=1)
        first = queue.enqueue(jobs.add, 1, 2, rate_limit=limit)
        second = queue.enqueue(jobs.add, 3, 4, rate_limit=limit)  # waits for the first one's slot
        assert second.get_status(refresh=True) == "rate_limited"
        SimpleWorker([queue], connection=redis_conn).work(burst=True)
        assert [j.get_status(refresh=True) for j in (first, second)] == ["finished", "finished"]

        records = pipeline.records()
        by_job: dict[str, list[str]] = {}
        for a in records:
            by_job.setdefault(str(a["messaging.message.id"]), []).append(str(a["clues.event_type"]))
        success = ["enqueued", "dequeued", "perform_started", "perform_finished"]
        assert by_job == {first.id: success, second.id: success}
        spans = pipeline.finished_spans()
        for job in (first, second):
            (send,) = [s for s in spans if s.name == "send limited" and s.attributes["messaging.message.id"] == job.id]
            (process,) = [
                s for s in spans if s.name == "process limited" and s.attributes["messaging.message.id"] == job.id
            ]
            assert process.context.trace_id == send.context.trace_id  # not a trace of its own
            assert process.parent is not None and process.parent.span_id == send.context.span_id
        assert pipeline.totals(SENT, "messaging.operation.name") == {"send": 2}
