# Image for the `worker` and `demo` services of docker-compose.yml: this repository,
# pip-installed, plus opentelemetry-distro so `opentelemetry-instrument` configures the SDK
# (OTLP exporters for traces, metrics and logs) from OTEL_* environment variables.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY . /src
RUN pip install /src "opentelemetry-distro>=0.60b0" "redis<8.2" \
    && useradd --system --uid 10001 --home-dir /app rq \
    && mkdir -p /app && chown rq /app

WORKDIR /app
USER rq
CMD ["opentelemetry-instrument", "rq", "worker", "--with-scheduler", "-u", "redis://redis:6379", "default", "slow"]
