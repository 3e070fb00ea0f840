"""Limner's Prometheus metrics from inside Serve replicas, through Ray's metrics export.

A replica has no route of its own for /metrics (and an ingress replica's /metrics answers for
that one replica only). Every few seconds this copies each `limner_*` sample of the process's
registry into a Ray gauge of the same name, tagged with the Serve deployment and replica, so
the metrics export port of every node (`--ray-metrics-port`) shows them all, as
`ray_limner_…` series. Counters and histogram parts are copied as their running totals.
"""

import logging
import threading

from prometheus_client import REGISTRY
from ray.util.metrics import Gauge

logger = logging.getLogger(__name__)

PERIOD_SECONDS = 5.0


class MetricsBridge:
    def __init__(self, deployment: str, replica: str, period_s: float = PERIOD_SECONDS) -> None:
        self._tags = {"deployment": deployment, "replica": replica}
        self._period = period_s
        self._gauges: dict[tuple[str, tuple[str, ...]], Gauge] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="limner-metrics", daemon=True)

    def start(self) -> "MetricsBridge":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def copy_once(self) -> int:
        """Copy every limner_* sample now; returns how many were copied."""
        copied = 0
        for family in REGISTRY.collect():
            if not family.name.startswith("limner_"):
                continue
            for sample in family.samples:
                if sample.name.endswith("_created"):
                    continue  # prometheus_client's creation timestamps: not a measurement
                labels = tuple(sorted(sample.labels))
                gauge = self._gauge(sample.name, labels, family.documentation)
                gauge.set(sample.value, tags={**sample.labels, **self._tags})
                copied += 1
        return copied

    def _gauge(self, name: str, labels: tuple[str, ...], description: str) -> Gauge:
        key = (name, labels)
        if key not in self._gauges:
            self._gauges[key] = Gauge(
                name, description=description, tag_keys=(*labels, "deployment", "replica")
            )
        return self._gauges[key]

    def _run(self) -> None:
        while not self._stop.wait(self._period):
            try:
                self.copy_once()
            except Exception:  # a metrics hiccup must never take a replica down
                logger.exception("copying metrics to Ray's export failed")
