"""Prometheus metrics on the default registry: defined once here, updated where things happen.

The engine moves the queue, batch and timing metrics; the service and HTTP layers count images
and errors. Nothing here imports torch, so any layer may import it.
"""

from prometheus_client import Counter, Gauge, Histogram

# Seconds from a queue wait of a few milliseconds to a high-quality render on a CPU.
_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

QUEUE_DEPTH = Gauge(
    "limner_queue_depth",
    "Jobs admitted and waiting for a worker, not yet running.",
    ["model"],
)
BATCH_SIZE = Histogram(
    "limner_batch_size",
    "Images rendered by one pipeline call (all the jobs batched into it).",
    ["model"],
    buckets=(1, 2, 3, 4, 6, 8, 12, 16),
)
QUEUE_WAIT_SECONDS = Histogram(
    "limner_queue_wait_seconds",
    "Time a job waited between admission and the start of its pipeline call.",
    ["model"],
    buckets=_SECONDS_BUCKETS,
)
GENERATION_SECONDS = Histogram(
    "limner_generation_seconds",
    "Duration of one pipeline call, however many jobs it carried.",
    ["model"],
    buckets=_SECONDS_BUCKETS,
)
RENDERS_CANCELLED = Counter(
    "limner_renders_cancelled_total",
    "Jobs whose consumer left before their images (client gone, error, shutdown).",
    ["model"],
)
IMAGES_GENERATED = Counter(
    "limner_images_generated_total",
    "Images delivered to clients.",
    ["model"],
)
REQUEST_ERRORS = Counter(
    "limner_request_errors_total",
    "Requests answered with an error, by error code.",
    ["code"],
)
