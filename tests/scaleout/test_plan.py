"""Cluster plans and the shared-state rules, without a cluster."""

from pathlib import Path

import pytest

pytest.importorskip("ray.serve", reason='Ray Serve is not installed: pip install -e ".[ray]"')

from limner.errors import ConfigurationError
from limner.scaleout.launch import ClusterPlan, check_shared_state
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
