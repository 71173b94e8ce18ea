"""Secrets in job arguments: capture_args=False, default redaction, the args sanitizer, their config."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from rq import Queue, SimpleWorker

from opentelemetry_instrumentation_clues.config import CluesConfig
from opentelemetry_instrumentation_clues.runtime.safety import Place, errors
from opentelemetry_instrumentation_clues.telemetry.attributes import ARGS, KWARGS
from opentelemetry_instrumentation_clues.telemetry.facts import JobFacts
from opentelemetry_instrumentation_clues.values.redaction import (
    DEFAULT_REDACT_KWARGS,
    REDACTED,
    SANITIZER_FAILED,
    Redactor,
)
from tests import hardening_jobs
from tests.hardening_jobs import clues_with_log_file

SENTINEL = "hunter2-sentinel"
SUCCESS = ["enqueued", "dequeued", "perform_started", "perform_finished"]


# -- what is a secret -------------------------------------------------------------------------------

SECRET_NAMES = [
    "password",
    "PASSWORD",
    "db_password",
    "userPassword",
    "passwd",
    "access_token",
    "refreshToken",
    "client_secret",
    "api_key",
    "apiKey",
    "X-Api-Key",
    "API_KEY",
    "authorization",
    "Authorization",
    "auth",
    "basicAuth",
    "auth_header",
    "AUTH_TOKEN",
    "credentials",
    "aws_credentials",
    "private_key",
    "privateKey",
    "ssh-private-key",
]
PLAIN_NAMES = ["author", "authority", "oauth_provider", "username", "user_id", "key", "monkey", "x"]


@pytest.mark.parametrize("name", SECRET_NAMES)
def test_secret_looking_names_are_redacted_by_default(name):
    assert Redactor(DEFAULT_REDACT_KWARGS).is_secret(name)


@pytest.mark.parametrize("name", PLAIN_NAMES)
def test_ordinary_names_are_kept(name):
    assert not Redactor(DEFAULT_REDACT_KWARGS).is_secret(name)


def test_a_configured_list_replaces_the_default():
    redactor = Redactor(["ssn", "card_number"])
    assert redactor.is_secret("SSN") and redactor.is_secret("customer_ssn")
    assert not redactor.is_secret("ssnumber")  # a short pattern must be a whole word
    assert redactor.is_secret("customer-ssn") and redactor.is_secret("cardNumber")
    assert not redactor.is_secret("password")
    assert not Redactor([]).is_secret("password")


# -- configuration ----------------------------------------------------------------------------------


def test_config_defaults():
    config = CluesConfig.from_kwargs()
    assert config.capture_args is True
    assert config.redact_kwargs == DEFAULT_REDACT_KWARGS
    assert config.args_sanitizer is None
    assert config.arguments.redactor.is_secret("password")


def test_config_from_keyword_arguments():
    config = CluesConfig.from_kwargs(
        capture_args=False, redact_kwargs=["ssn", " pin "], args_sanitizer=hardening_jobs.sanitize_drop_everything
    )
    assert config.capture_args is False
    assert config.redact_kwargs == ("ssn", "pin")
    assert config.arguments.sanitizer is hardening_jobs.sanitize_drop_everything
    assert CluesConfig.from_kwargs(redact_kwargs=[]).redact_kwargs == ()
    assert CluesConfig.from_kwargs(redact_kwargs="a,b").redact_kwargs == ("a", "b")


def test_config_from_the_environment(monkeypatch):
    monkeypatch.setenv("OTEL_PYTHON_CLUES_CAPTURE_ARGS", "false")
    monkeypatch.setenv("OTEL_PYTHON_CLUES_REDACT_KWARGS", "ssn, card_number ,")
    monkeypatch.setenv("OTEL_PYTHON_CLUES_ARGS_SANITIZER", "tests.hardening_jobs:sanitize_drop_everything")
    config = CluesConfig.from_kwargs()
    assert config.capture_args is False
    assert config.redact_kwargs == ("ssn", "card_number")
    assert config.args_sanitizer is hardening_jobs.sanitize_drop_everything
    monkeypatch.setenv("OTEL_PYTHON_CLUES_REDACT_KWARGS", "none")
    assert CluesConfig.from_kwargs().redact_kwargs == ()
    # a keyword argument wins over the environment
    assert CluesConfig.from_kwargs(redact_kwargs=["pin"], capture_args=True).redact_kwargs == ("pin",)


@pytest.mark.parametrize(
    ("spec", "complaint"),
    [
        ("no_colon_here", "must look like package.module:function"),
        ("tests.no_such_module:f", "cannot load"),
        ("tests.hardening_jobs:missing", "cannot load"),
        ("tests.hardening_jobs:not_callable", "is not callable"),
    ],
)
def test_a_bad_sanitizer_path_in_the_environment_is_a_clear_error(monkeypatch, spec, complaint):
    monkeypatch.setenv("OTEL_PYTHON_CLUES_ARGS_SANITIZER", spec)
    with pytest.raises(ValueError, match="OTEL_PYTHON_CLUES_ARGS_SANITIZER") as raised:
        CluesConfig.from_kwargs()
    assert complaint in str(raised.value)


@pytest.mark.parametrize(
    ("kwargs", "complaint"),
    [
        ({"args_sanitizer": 42}, "args_sanitizer must be callable"),
        ({"redact_kwargs": 42}, "redact_kwargs must be a comma-separated string or a list"),
        ({"redact_kwargs": ["ok", 1]}, "redact_kwargs entries must be strings"),
    ],
)
def test_bad_keyword_arguments_are_clear_errors(kwargs, complaint):
    with pytest.raises(ValueError, match=complaint):
        CluesConfig.from_kwargs(**kwargs)


# -- applied to a job's facts -------------------------------------------------------------------


class _FakeJob:
    id = "job-1"
    func_name = "tests.hardening_jobs.accept"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args
        self.kwargs = kwargs


def facts_for(job: Any, **config: Any) -> dict[str, Any]:
    settings = CluesConfig.from_kwargs(**config)
    facts = JobFacts.build(job, "q", "0" * 32, 1, {}, settings)
    return {
        "args": json.loads(str(facts.base_attributes[ARGS])),
        "kwargs": json.loads(str(facts.base_attributes[KWARGS])),
    }


def test_secret_kwargs_and_nested_secret_keys_are_redacted():
    job = _FakeJob(
        "user@example.com",
        {"headers": {"Authorization": f"Bearer {SENTINEL}"}, "author": "Ann"},
        password=SENTINEL,
        config={"db": {"passwd": SENTINEL, "host": "db1"}},
        token=[SENTINEL],
    )
    facts = facts_for(job)
    assert SENTINEL not in json.dumps(facts)
    assert facts["args"] == ["user@example.com", {"headers": {"Authorization": REDACTED}, "author": "Ann"}]
    assert facts["kwargs"] == {
        "password": REDACTED,
        "config": {"db": {"passwd": REDACTED, "host": "db1"}},
        "token": REDACTED,
    }


def test_the_sanitizer_runs_before_redaction_and_sees_the_function_name():
    seen: list[Any] = []

    def sanitizer(func_name: str, args: Any, kwargs: Any) -> tuple[Any, Any]:
        seen.append((func_name, list(args), dict(kwargs)))
        return [a for a in args if a != "drop-me"], {**kwargs, "api_key": "still redacted"}

    facts = facts_for(_FakeJob(1, "drop-me", mode="x"), args_sanitizer=sanitizer)
    assert seen == [("tests.hardening_jobs.accept", [1, "drop-me"], {"mode": "x"})]
    assert facts == {"args": [1], "kwargs": {"mode": "x", "api_key": REDACTED}}


@pytest.mark.parametrize(
    "sanitizer",
    [hardening_jobs.sanitizer_that_raises, lambda f, a, k: None, lambda f, a, k: ([1], {}, "extra")],
    ids=["raises", "returns None", "returns a triple"],
)
def test_a_failing_sanitizer_withholds_the_arguments_and_is_logged_once(sanitizer, caplog):
    for _ in range(3):
        facts = facts_for(_FakeJob(SENTINEL, password=SENTINEL, other=SENTINEL), args_sanitizer=sanitizer)
        assert facts == {"args": [SANITIZER_FAILED], "kwargs": SANITIZER_FAILED}
    logged = [r for r in caplog.records if f"clues: {Place.ARGS_SANITIZER.value} failed" in r.getMessage()]
    assert len(logged) == 1
    assert sum(n for key, n in errors.counts().items() if key.startswith(f"{Place.ARGS_SANITIZER.value}:")) == 3


def test_capture_args_false_puts_no_arguments_on_the_facts():
    settings = CluesConfig.from_kwargs(capture_args=False)
    facts = JobFacts.build(_FakeJob(SENTINEL, k=SENTINEL), "q", "0" * 32, 1, {}, settings)
    assert ARGS not in facts.base_attributes and KWARGS not in facts.base_attributes
    assert SENTINEL not in repr(facts)


# -- end to end ---------------------------------------------------------------------------------


def everything_published(captured, path: Path) -> str:
    """All text clues produced: span and span event attributes, log records, legacy lines."""
    parts = [path.read_text(encoding="utf-8")]
    for span in captured.finished_spans():
        parts.append(span.to_json())
    for item in captured.logs.get_finished_logs():
        parts.append(repr(dict(item.log_record.attributes or {})))
        parts.append(str(item.log_record.body))
    return "\n".join(parts)


def run_secret_job(redis_conn, captured, path: Path, **instrument_kwargs: Any) -> list[dict]:
    with clues_with_log_file(captured, path, **instrument_kwargs):
        queue = Queue("secrets", connection=redis_conn)
        job = queue.enqueue(
            hardening_jobs.accept,
            args=(SENTINEL, {"Authorization": SENTINEL, "note": "kept"}),
            kwargs={"password": SENTINEL, "api_key": SENTINEL, "ssn": SENTINEL, "user": "bob"},
            description="secret job",  # rq's own description would show the arguments in rq's logs
        )
        SimpleWorker([queue], connection=redis_conn).work(burst=True)
    assert job.get_status(refresh=True) == "finished"
    assert captured.event_types() == SUCCESS
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_capture_args_false_keeps_arguments_out_of_spans_logs_and_legacy_lines(redis_conn, captured, tmp_path):
    lines = run_secret_job(redis_conn, captured, tmp_path / "clues.log", capture_args=False)
    assert SENTINEL not in everything_published(captured, tmp_path / "clues.log")
    assert "bob" not in everything_published(captured, tmp_path / "clues.log")
    assert [line["event_type"] for line in lines] == SUCCESS
    assert all(line["args"] == [] and "kwargs" not in line["metadata"] for line in lines)


def test_capture_args_false_from_the_environment(redis_conn, captured, tmp_path, monkeypatch):
    monkeypatch.setenv("OTEL_PYTHON_CLUES_CAPTURE_ARGS", "0")
    run_secret_job(redis_conn, captured, tmp_path / "clues.log")
    assert SENTINEL not in everything_published(captured, tmp_path / "clues.log")
    assert all(ARGS not in a and KWARGS not in a for a in captured.log_attributes())


def test_default_redaction_end_to_end(redis_conn, captured, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    lines = run_secret_job(redis_conn, captured, tmp_path / "clues.log")
    published = everything_published(captured, tmp_path / "clues.log")
    # the positional SENTINEL is not under a secret-looking key: it stays; the keyed ones go
    assert published.count(SENTINEL) > 0
    for line in lines:
        assert line["args"] == [SENTINEL, {"Authorization": REDACTED, "note": "kept"}]
        assert line["metadata"]["kwargs"] == {"password": REDACTED, "api_key": REDACTED, "ssn": SENTINEL, "user": "bob"}
    for attributes in captured.log_attributes():
        assert json.loads(attributes[KWARGS])["password"] == REDACTED
