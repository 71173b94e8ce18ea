"""A forked child renews its process-dependent resource as the SDK does, without the SDK's thread pool."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk import resources
from opentelemetry.sdk.resources import Resource, ResourceDetector
from opentelemetry.sdk.trace import TracerProvider

from opentelemetry_instrumentation_clues.runtime import fork_resources
from tests.processes import what_a_forked_child_reports

INSTANCE_ID = "service.instance.id"


@pytest.fixture
def installed() -> Iterator[None]:
    fork_resources.install()
    assert fork_resources._originals, "this SDK re-detects resources after a fork: clues must take it over"
    try:
        yield
    finally:
        fork_resources.uninstall()


def _instance_ids_across_a_fork(monkeypatch: pytest.MonkeyPatch) -> tuple[str, str, int]:
    """A provider's service.instance.id in this process and in a forked child, and how many
    detector pools the child started."""
    pools_started: list[int] = []
    real = resources.get_aggregated_resources

    def counting(*args: Any, **kwargs: Any) -> Resource:
        pools_started.append(1)
        return real(*args, **kwargs)

    provider = TracerProvider(resource=Resource.create({"service.name": "jobs"}))
    monkeypatch.setattr(resources, "get_aggregated_resources", counting)
    try:
        report = what_a_forked_child_reports(
            lambda: f"{provider.resource.attributes[INSTANCE_ID]}|{len(pools_started)}"
        )
    finally:
        provider.shutdown()
    assert provider.resource.attributes["service.name"] == "jobs"
    child_id, child_pools = report.split("|")
    return str(provider.resource.attributes[INSTANCE_ID]), child_id, int(child_pools)


def test_a_forked_child_gets_a_new_instance_id_without_a_thread_pool(installed, monkeypatch):
    parent_id, child_id, child_pools = _instance_ids_across_a_fork(monkeypatch)
    assert child_id != parent_id  # the SDK's promise: each process is an instance of its own
    assert child_pools == 0


def test_the_sdk_itself_renews_it_through_its_pool(monkeypatch):
    # The behaviour clues keeps, as the SDK has it when clues is not installed.
    parent_id, child_id, child_pools = _instance_ids_across_a_fork(monkeypatch)
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


def test_an_sdk_whose_function_detects_differently_keeps_its_own(monkeypatch):
    import opentelemetry.sdk.trace as sdk_trace

    def detects_differently() -> Resource:  # reads names the known function does not
        return resources.Resource.create({"other": "way"})

    monkeypatch.setattr(resources, "_get_process_dependent_resource", detects_differently)
    monkeypatch.setattr(sdk_trace, "_get_process_dependent_resource", detects_differently)
    fork_resources.install()
    try:
        assert sdk_trace._get_process_dependent_resource is detects_differently
        assert fork_resources._originals == {}
    finally:
        fork_resources.uninstall()
