"""One Ray cluster for the whole session: `limner serve --ray` (started as a user starts it) on
PostgreSQL and Redis, two ingress replicas, two CPU engine replicas per backend, loopback only,
no dashboard (shared/design/ray-serve.md §5)."""

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import (
    TINY_BACKEND,
    LiveServer,
    free_port,
    postgres_schema,
    start_server,
    stop_server,
)

RAY_CATALOG = (
    TINY_BACKEND
    + """
# Hundreds of steps at medium and high: a render that takes seconds, to leave or to kill
# mid-way; low is quick, for routing on its two fixed replicas.
[backends.slow]
path = "{tiny}"
[backends.slow.quality]
low = {{ steps = 2, resolution = 32 }}
medium = {{ steps = 500, resolution = 64 }}
high = {{ steps = 500, resolution = 64 }}

[models.gpt-image-1]
backend = "tiny"
aliases = ["dall-e-2"]

[models.slow-model]
backend = "slow"
"""
)

# Two ingress replicas; Limner's batch-key router on the engines; the slow backend on two
# fixed replicas (to kill); the tiny one autoscaled with short delays, so a test sees
# 1 -> 2 -> 1. 2.0 CPUs in all.
RAY_PLAN = """
ingress_replicas = 2
engine_cpus = 0.25
router = "batch_key"

[engines.slow]
replicas = 2

[engines.tiny.autoscaling]
min_replicas = 1
max_replicas = 2
target_ongoing_requests = 1
upscale_delay_s = 1
downscale_delay_s = 3
look_back_period_s = 2
"""

# Ray's own processes on 127.0.0.1 only, no usage reporting, no token auth (loopback tests).
RAY_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AUTH_MODE": "disabled",
    # Every replica's lines as they are (tests read which replica logged what).
    "RAY_DEDUP_LOGS": "0",
    "OMP_NUM_THREADS": "1",
}


@pytest.fixture(scope="session")
def ray_server(
    tmp_path_factory: pytest.TempPathFactory, tiny_pipeline_dir: Path
) -> Iterator[LiveServer]:
    pytest.importorskip("ray.serve", reason='Ray Serve is not installed: pip install -e ".[ray]"')
    root = tmp_path_factory.mktemp("ray")
    catalog = root / "catalog.toml"
    catalog.write_text(RAY_CATALOG.format(tiny=tiny_pipeline_dir))
    plan = root / "plan.toml"
    plan.write_text(RAY_PLAN)
    metrics_port = free_port()
    (root / "metrics-port").write_text(str(metrics_port))
    with postgres_schema("limner_ray") as url:
        server = start_server(
            root / "home",
            [
                *("--catalog", str(catalog), "--ray", "--ray-plan", str(plan)),
                *("--ray-metrics-port", str(metrics_port)),
            ],
            env={
                **RAY_ENV,
                "LIMNER_DATABASE_URL": url,
                "LIMNER_REDIS_URL": "redis://127.0.0.1:6379/3",
                # Signed-URL images where every ingress replica (on any node) reaches them.
                "LIMNER_IMAGE_STORAGE": "database",
            },
        )
        try:
            yield server
        finally:
            stop_server(server)
            # Nothing of this cluster may outlive the tests, whatever happened above; nothing
            # else on the machine (another Ray, say) is touched.
            subprocess.run(
                ["pkill", "-KILL", "-s", str(server.process.pid)], capture_output=True, check=False
            )
