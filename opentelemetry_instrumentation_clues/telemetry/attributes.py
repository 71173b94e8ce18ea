"""The attribute names of clues' spans, events, log records and metrics.

The same attributes go on the span event and on the log record of each lifecycle
event; the legacy exporter reads them back into the seed's format. docs/design.md
lists them with their meaning.
"""

from __future__ import annotations

from opentelemetry.semconv._incubating.attributes import host_attributes as _host
from opentelemetry.semconv._incubating.attributes import messaging_attributes as _messaging
from opentelemetry.semconv._incubating.attributes import process_attributes as _process
from opentelemetry.semconv.attributes import error_attributes as _error
from opentelemetry.semconv.attributes import exception_attributes as _exception
from opentelemetry.semconv.schemas import Schemas
from opentelemetry.util.types import AttributeValue

# Attribute names (docs/design.md lists them with their meaning). Where the semantic conventions
# define a name, it is taken from opentelemetry-semantic-conventions rather than retyped, so a
# typo cannot drift from the conventions; the rest are clues' and rq's own.
EVENT_TYPE = "clues.event_type"
EVENT_HASH = "clues.event_hash"
MESSAGING_SYSTEM = _messaging.MESSAGING_SYSTEM
QUEUE = _messaging.MESSAGING_DESTINATION_NAME
JOB_ID = _messaging.MESSAGING_MESSAGE_ID
OPERATION_TYPE = _messaging.MESSAGING_OPERATION_TYPE
OPERATION_NAME = _messaging.MESSAGING_OPERATION_NAME
WORKER_CLASS = "rq.job.func_name"
ARGS = "rq.job.args"
KWARGS = "rq.job.kwargs"
ATTEMPT = "rq.job.attempt"
WILL_RETRY = "rq.job.will_retry"  # on failed: rq will run the job again
HOSTNAME = _host.HOST_NAME
PROCESS = _process.PROCESS_PID
TIME_IN_QUEUE = "clues.time_in_queue"
TIME_TO_PERFORM = "clues.time_to_perform"
EXCEPTION_TYPE = _exception.EXCEPTION_TYPE
EXCEPTION_MESSAGE = _exception.EXCEPTION_MESSAGE
EXCEPTION_STACKTRACE = _exception.EXCEPTION_STACKTRACE
ERROR_TYPE = _error.ERROR_TYPE
METADATA_PREFIX = "clues.metadata."

# The semantic-conventions version whose names these are, for the tracer, logger and meter's
# schema_url. The messaging names used here (operation.type send/create/settle,
# messaging.client.sent.messages) are those of 1.28 and unchanged since.
SCHEMA_URL = Schemas.V1_28_0.value

MESSAGING_SYSTEM_VALUE = "rq"  # not a registered semconv value; documented in docs/design.md


def start_attributes(
    operation_type: str, operation_name: str, queue_name: str, job_id: str
) -> dict[str, AttributeValue]:
    """What a sampler sees when a span of a job starts: the messaging spec's sampling-relevant
    attributes. The rest of the job's attributes follow only on a recording span."""
    return {
        MESSAGING_SYSTEM: MESSAGING_SYSTEM_VALUE,
        QUEUE: queue_name,
        OPERATION_TYPE: operation_type,
        OPERATION_NAME: operation_name,
        JOB_ID: job_id,
    }
