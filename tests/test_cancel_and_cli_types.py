"""``canceled`` (Job.cancel) ends a job's story; the ``clues`` command knows every event type clues writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import rq
from rq import Queue, SimpleWorker
from rq.job import Job, cancel_job

from opentelemetry_instrumentation_clues import LogPublisher, cli
from opentelemetry_instrumentation_clues.cli.event_log import parse_event
from opentelemetry_instrumentation_clues.cli.timeline import Timeline
from opentelemetry_instrumentation_clues.event_types import EVENT_TYPES, EventType
from tests import jobs
from tests.cli_support import event_line, write_lines
from tests.test_conventions import Pipeline

RQ3 = int(rq.__version__.split(".")[0]) >= 3


def legacy(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("how", ["job.cancel", "cancel_job"])
def test_cancel_publishes_canceled_as_the_last_event_of_the_job(redis_conn, tmp_path, how):
    path = tmp_path / "clues.log"
    with Pipeline(event_publisher=LogPublisher(path)) as p:
        queue = Queue("cancelable", connection=redis_conn)
        job = queue.enqueue(jobs.add, 1, 2)
        if how == "job.cancel":
            job.cancel()
        else:
            cancel_job(job.id, connection=redis_conn)
        SimpleWorker([queue], connection=redis_conn).work(burst=True)  # nothing left to run
    assert Job.fetch(job.id, connection=redis_conn).get_status() == "canceled"

    records = p.records()
    assert [a["clues.event_type"] for a in records] == ["enqueued", "canceled"]
    assert len({a["clues.event_hash"] for a in records}) == 1
    assert records[1]["messaging.message.id"] == job.id
    assert [r.log_record.event_name for r in p.logs.get_finished_logs()][-1] == "rq.job.canceled"
    spans = {s.name: s for s in p.finished_spans()}
    assert set(spans) == {"send cancelable", "cancel cancelable"}
    cancel, send = spans["cancel cancelable"], spans["send cancelable"]
    assert cancel.context.trace_id == send.context.trace_id and cancel.parent.span_id == send.context.span_id
    assert cancel.attributes["messaging.operation.type"] == "settle"
    assert [e.name for e in cancel.events] == ["canceled"]

    lines = legacy(path)
    assert [line["event_type"] for line in lines] == ["enqueued", "canceled"]
    assert lines[-1]["metadata"]["event_hash"] == lines[0]["metadata"]["event_hash"]


def test_cancel_that_rq_refuses_is_an_error_span_and_no_event(redis_conn):
    with Pipeline() as p:
        job = Queue("twice", connection=redis_conn).enqueue(jobs.add, 1, 2)
        job.cancel()
        with pytest.raises(Exception) as refused:
            job.cancel()  # rq: cannot cancel an already canceled job
    assert type(refused.value).__name__ == "InvalidJobOperation"
    assert p.event_types() == ["enqueued", "canceled"]
    cancels = [s for s in p.finished_spans() if s.name == "cancel twice"]
    assert [s.status.is_ok for s in cancels] == [True, False]
    assert cancels[1].attributes["error.type"] == "rq.exceptions.InvalidJobOperation"


def test_the_cli_accepts_every_event_type_clues_writes():
    assert tuple(e.value for e in EventType) == EVENT_TYPES
    assert {"deferred", "canceled", "scheduled"} <= set(EVENT_TYPES)
    parser = cli.build_parser()
    for event_type in EVENT_TYPES:  # "deferred" was refused ("invalid choice")
        args = parser.parse_args(["tail", "--event-type", event_type, "some.log"])
        assert args.event_type == [event_type]


def test_trace_orders_deferred_and_canceled_in_the_lifecycle_and_reports_canceled(tmp_path, capsys):
    h = "0695f49c5e70fc18da91961113e1769a"
    # One second, written out of order by different processes: the lifecycle decides.
    lines = [
        event_line("canceled", h, at=1, attempt=0),
        event_line("dequeued", h, at=0, attempt=1, time_in_queue=0.1),
        event_line("deferred", h, at=0, attempt=0),
        event_line("perform_started", h, at=0, attempt=1),
        event_line("enqueued", h, at=0, attempt=0),
    ]
    timeline = Timeline(h)
    for line in lines:
        event = parse_event(line, "x", 1)
        assert not isinstance(event, str), event
        timeline.add(event)
    assert [e.event_type for e in timeline.ordered()] == [
        "deferred",
        "enqueued",
        "dequeued",
        "perform_started",
        "canceled",
    ]
    path = write_lines(tmp_path / "log", [event_line("enqueued", h), event_line("canceled", h, at=2)])
    assert cli.main(["trace", h, str(path)]) == 0
    out = capsys.readouterr().out
    assert "outcome: canceled" in out
