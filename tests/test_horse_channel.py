"""The pipe a forked horse reports through: whole reports, in order, never blocking the horse."""

from __future__ import annotations

import math
import os
import threading

import pytest

from opentelemetry_instrumentation_clues.instrumentation import horse_channel
from opentelemetry_instrumentation_clues.instrumentation.horse_channel import HorseChannel, ReportNotSent


def collect(channel: HorseChannel) -> list:
    received: list = []
    channel.drain(received.append)
    return received


def test_reports_arrive_whole_and_in_order_across_partial_reads(monkeypatch):
    monkeypatch.setattr(horse_channel, "READ_CHUNK", 7)  # every report spans several reads
    channel = HorseChannel()
    try:
        reports = [{"t": "m", "n": i, "text": "é" * i} for i in range(50)]
        for report in reports:
            channel.send(report)
        assert collect(channel) == reports
    finally:
        channel.close()


def test_reports_carry_what_a_job_may_put_in_its_metadata():
    # Runtime metadata is a job's own: NaN, infinities, line separators and newlines ride along.
    channel = HorseChannel()
    try:
        channel.send({"t": "end", "meta": {"ratio": math.nan, "big": math.inf, "text": "a\u2028b\nc"}})
        [report] = collect(channel)
    finally:
        channel.close()
    meta = report["meta"]
    assert math.isnan(meta["ratio"]) and meta["big"] == math.inf and meta["text"] == "a\u2028b\nc"


def test_a_report_with_an_object_json_cannot_spell_is_refused_before_anything_is_written():
    channel = HorseChannel()
    try:
        with pytest.raises(TypeError):
            channel.send({"t": "end", "meta": {"x": object()}})
        channel.send({"t": "done"})
        assert collect(channel) == [{"t": "done"}]
    finally:
        channel.close()


def test_a_line_that_is_not_a_report_costs_that_line_only():
    channel = HorseChannel()
    try:
        os.write(channel.write_fd, b'{"t": "started"}\nnot json\n[1, 2]\n{"t": "done"}\n')
        received = collect(channel)
    finally:
        channel.close()
    assert received[0] == {"t": "started"} and received[3] == {"t": "done"}
    assert all(isinstance(item, ValueError) for item in received[1:3])


def test_reports_larger_than_the_pipe_reach_a_reader_that_reads_meanwhile():
    channel = HorseChannel()
    big = {"t": "log", "body": "x" * (3 << 20)}  # three times the enlarged pipe
    received: list = []

    def read_until_it_arrives() -> None:
        while not received:
            channel.drain(received.append)

    reader = threading.Thread(target=read_until_it_arrives)
    reader.start()
    try:
        channel.send(big)
        reader.join(10)
    finally:
        channel.close()
    assert not reader.is_alive()
    assert received == [big]


def test_a_horse_whose_worker_never_reads_gives_up_within_its_budget(monkeypatch):
    monkeypatch.setattr(horse_channel, "SEND_BUDGET_SECONDS", 0.2)
    channel = HorseChannel()
    try:
        with pytest.raises(ReportNotSent):
            channel.send({"body": "x" * (4 << 20)})
        assert channel.broken
        with pytest.raises(ReportNotSent):  # and it stays given up: the horse publishes for itself
            channel.send({"t": "done"})
    finally:
        channel.close()


def test_a_closed_worker_end_is_reported_not_raised_as_a_crash():
    channel = HorseChannel()
    os.close(channel.read_fd)
    channel.read_fd = -1
    try:
        with pytest.raises(ReportNotSent):
            channel.send({"t": "started"})
    finally:
        channel.close()


def test_the_channel_never_closes_a_reused_descriptor(tmp_path):
    channel = HorseChannel()
    closed_number = channel.write_fd
    channel.parent_side()
    reused = os.open(tmp_path / "log", os.O_CREAT | os.O_WRONLY)  # takes the lowest free number
    try:
        assert reused == closed_number
        channel.close()
        os.write(reused, b"still open\n")
    finally:
        os.close(reused)


def test_follow_returns_when_the_horse_exits_even_if_a_grandchild_holds_the_pipe():
    channel = HorseChannel()
    release_read, release_write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the "horse": a report, then a grandchild that keeps the pipe open, then exit
        channel.send({"t": "started"})
        if os.fork() == 0:
            os.close(release_write)
            os.read(release_read, 1)  # until the test lets it go
            os._exit(0)
        os._exit(0)
    channel.parent_side()
    os.close(release_read)
    received: list = []
    try:
        channel.follow(pid, received.append)
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(release_write)
        channel.close()
    assert received == [{"t": "started"}]
    assert os.waitstatus_to_exitcode(status) == 0
