"""A forked child renews its process-dependent resource as the SDK does, without the SDK's thread pool."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk import resources
from opentelemetry.sdk.resources import Resource, ResourceDetector
from opentelemetry.sdk.trace import TracerProvider

from opentelemetry_instrumentation_clues.runtime import fork_resources

INSTANCE_ID = "service.instance.id"


@pytest.fixture
def installed() -> Iterator[None]:
    fork_resources.install()
    assert fork_resources._originals, "this SDK re-detects resources after a fork: clues must take it over"
    try:
        yield
    finally:
        fork_resources.uninstall()


def _in_a_forked_child(provider: TracerProvider, pools_started: list[int]) -> tuple[str, int]:
    """Fork; the child reports its provider's service.instance.id and how many detector pools it started."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(write_end, f"{provider.resource.attributes[INSTANCE_ID]}|{len(pools_started)}".encode())
        os._exit(0)
    os.close(write_end)
    report = os.read(read_end, 200).decode()
    os.close(read_end)
    os.waitpid(pid, 0)
    instance_id, pools = report.split("|")
    return instance_id, int(pools)


def _counting_pools(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    started: list[int] = []
    real = resources.get_aggregated_resources

    def counting(*args: Any, **kwargs: Any) -> Resource:
        started.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(resources, "get_aggregated_resources", counting)
    return started


def test_a_forked_child_gets_a_new_instance_id_without_a_thread_pool(installed, monkeypatch):
    pools_started = _counting_pools(monkeypatch)
    provider = TracerProvider(resource=Resource.create({"service.name": "jobs"}))
    try:
        parent_id = provider.resource.attributes[INSTANCE_ID]
        pools_started.clear()
        child_id, child_pools = _in_a_forked_child(provider, pools_started)
    finally:
        provider.shutdown()
    assert child_id != parent_id  # the SDK's promise: each process is an instance of its own
    assert child_pools == 0
    assert provider.resource.attributes["service.name"] == "jobs"


def test_the_sdk_itself_renews_it_through_its_pool(monkeypatch):
    # The behaviour clues keeps, as the SDK has it when clues is not installed.
    pools_started = _counting_pools(monkeypatch)
    provider = TracerProvider(resource=Resource.create({"service.name": "jobs"}))
    try:
        parent_id = provider.resource.attributes[INSTANCE_ID]
        pools_started.clear()
        child_id, child_pools = _in_a_forked_child(provider, pools_started)
    finally:
        provider.shutdown()
    assert child_id != parent_id
    assert child_pools >= 1


class _Detector(ResourceDetector):
    def __init__(self, attributes: dict[str, str] | None, *, process_dependent: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.attributes, self.process_dependent = attributes, process_dependent

    def is_process_dependent(self) -> bool:
        return self.process_dependent

    def detect(self) -> Resource:
        if self.attributes is None:
            raise RuntimeError("detector broke")
        return Resource(self.attributes)


def test_detectors_run_in_order_and_one_that_raises_is_skipped_with_the_sdks_warning(monkeypatch, caplog):
    detectors = [
        _Detector({"a": "1", "b": "first"}),
        _Detector(None),
        _Detector({"b": "second"}),
        _Detector({"c": "not process dependent"}, process_dependent=False),
    ]
    monkeypatch.setattr(resources, "_build_resource_detectors", lambda: detectors)
    with caplog.at_level(logging.WARNING, logger="opentelemetry.sdk.resources"):
        detected = fork_resources.process_dependent_resource()
    assert dict(detected.attributes) == {"a": "1", "b": "second"}
    assert any("detector broke" in record.getMessage() for record in caplog.records)


def test_a_detector_that_must_not_fail_raises_as_in_the_sdk(monkeypatch):
    monkeypatch.setattr(resources, "_build_resource_detectors", lambda: [_Detector(None, raise_on_error=True)])
    with pytest.raises(RuntimeError, match="detector broke"):
        fork_resources.process_dependent_resource()


def test_instrument_installs_it_and_uninstrument_gives_the_sdk_its_own_back():
    import opentelemetry.sdk.trace as sdk_trace

    from opentelemetry_instrumentation_clues import CluesInstrumentor

    sdk_own = resources._get_process_dependent_resource
    instrumentor = CluesInstrumentor()
    instrumentor.instrument()
    try:
        assert sdk_trace._get_process_dependent_resource is fork_resources.process_dependent_resource
    finally:
        instrumentor.uninstrument()
    assert sdk_trace._get_process_dependent_resource is sdk_own


def test_a_provider_module_imported_after_instrument_is_taken_over_when_the_worker_starts(monkeypatch):
    import sys

    import opentelemetry.sdk.metrics._internal as sdk_metrics

    monkeypatch.delitem(sys.modules, sdk_metrics.__name__)  # as if not imported yet at instrument()
    fork_resources.install()
    try:
        assert sdk_metrics._get_process_dependent_resource is resources._get_process_dependent_resource
        monkeypatch.setitem(sys.modules, sdk_metrics.__name__, sdk_metrics)
        fork_resources.install()  # what WorkerHooks.work does
        assert sdk_metrics._get_process_dependent_resource is fork_resources.process_dependent_resource
    finally:
        fork_resources.uninstall()
    assert sdk_metrics._get_process_dependent_resource is resources._get_process_dependent_resource
