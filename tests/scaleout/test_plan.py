"""Cluster plans and the shared-state rules, without a cluster."""

from pathlib import Path

import pytest

pytest.importorskip("ray.serve", reason='Ray Serve is not installed: pip install -e ".[ray]"')

from limner.errors import ConfigurationError
from limner.scaleout.launch import ClusterPlan, EnginePlan, check_shared_state, engine_gpus
from limner.settings import Settings


def test_a_plan_file_is_checked_key_by_key(tmp_path: Path) -> None:
    plan = tmp_path / "plan.toml"
    plan.write_text("ingress_replicas = 2\n[engines.tiny.autoscaling]\nmax_replicas = 4\n")
    parsed = ClusterPlan.from_toml(plan, engine_cpus=0.5)
    assert parsed.ingress_replicas == 2 and parsed.engine_cpus == 0.5
    assert parsed.engines["tiny"].autoscaling is not None
    assert parsed.engines["tiny"].autoscaling.max_replicas == 4
    plan.write_text("ingress_replica = 2\n")
    with pytest.raises(ConfigurationError, match="ingress_replica"):
        ClusterPlan.from_toml(plan)
    with pytest.raises(ConfigurationError, match="router"):
        ClusterPlan.parse({"router": "round_robin"})


def test_several_ingress_replicas_need_shared_state(tmp_path: Path) -> None:
    sqlite = Settings(home=tmp_path, redis_url="redis://127.0.0.1:6379/0")
    with pytest.raises(ConfigurationError, match="PostgreSQL"):
        check_shared_state(sqlite, ingress_replicas=2)
    postgres = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    with pytest.raises(ConfigurationError, match="LIMNER_REDIS_URL"):
        check_shared_state(Settings(home=tmp_path, database_url=postgres), ingress_replicas=2)
    check_shared_state(sqlite, ingress_replicas=1)
    check_shared_state(
        Settings(home=tmp_path, database_url=postgres, redis_url="redis://127.0.0.1:6379/0"),
        ingress_replicas=2,
    )


def test_an_engine_replica_reserves_a_gpu_where_its_device_needs_one() -> None:
    plan, own = ClusterPlan(), EnginePlan()
    assert engine_gpus("cuda", own, plan, cluster_gpus=0) == 1
    assert engine_gpus("cuda:1", own, plan, cluster_gpus=8) == 1
    # Unreserved, "auto" replicas would all take the node's first GPU, unplaced by Ray.
    assert engine_gpus("auto", own, plan, cluster_gpus=8) == 1
    assert engine_gpus("auto", own, plan, cluster_gpus=0) == 0
    assert engine_gpus("cpu", own, plan, cluster_gpus=8) == 0
    # The plan's figure wins, and a backend's own over the plan's.
    assert engine_gpus("auto", own, ClusterPlan(engine_gpus=0.5), cluster_gpus=8) == 0.5
    assert engine_gpus("cuda", EnginePlan(gpus=2), ClusterPlan(engine_gpus=0), 8) == 2
