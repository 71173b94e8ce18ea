"""Legacy (seed-compatible) event publishers: each takes one marshalled line per event.

See :mod:`.base` for the protocol; any object with ``publish(line)`` works.
"""

from opentelemetry_instrumentation_clues.legacy.publishers.base import EventPublisher
from opentelemetry_instrumentation_clues.legacy.publishers.composite import CompositePublisher
from opentelemetry_instrumentation_clues.legacy.publishers.log import LogPublisher
from opentelemetry_instrumentation_clues.legacy.publishers.stream import StandardOutPublisher, StreamPublisher
from opentelemetry_instrumentation_clues.legacy.publishers.tcp import TcpPublisher
from opentelemetry_instrumentation_clues.legacy.publishers.udp import UdpPublisher

__all__ = [
    "CompositePublisher",
    "EventPublisher",
    "LogPublisher",
    "StandardOutPublisher",
    "StreamPublisher",
    "TcpPublisher",
    "UdpPublisher",
]
