"""What an ingress replica is deployed with: no secret in Serve's state, the same secrets
from the replica's own environment, a clear refusal where a node's differ."""

import json
from pathlib import Path

import pytest

from limner.errors import ConfigurationError
from limner.scaleout.replica_settings import for_replicas, in_replica
from limner.settings import Settings

ADMIN_KEY = "sk-admin-" + "a" * 32
DATABASE_URL = "postgresql+psycopg://limner:s3cret-password@db:5432/limner"


def test_secrets_stay_out_of_the_deployment_and_come_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LIMNER_ADMIN_KEY", ADMIN_KEY)
    monkeypatch.setenv("LIMNER_DATABASE_URL", DATABASE_URL)
    driver = Settings(home=tmp_path, queue_size=3)
    shipped = for_replicas(driver)
    stored = json.dumps(shipped)
    assert ADMIN_KEY not in stored and "s3cret-password" not in stored
    replica = in_replica(json.loads(stored))
    assert (replica.admin_key, replica.database_url) == (ADMIN_KEY, DATABASE_URL)
    assert (replica.home, replica.queue_size) == (tmp_path, 3)


def test_a_node_with_other_secrets_is_refused_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LIMNER_DATABASE_URL", DATABASE_URL)
    shipped = for_replicas(Settings(home=tmp_path))
    monkeypatch.delenv("LIMNER_DATABASE_URL")  # this node was not given it: SQLite, alone
    with pytest.raises(ConfigurationError, match="LIMNER_DATABASE_URL") as refused:
        in_replica(shipped)
    assert "LIMNER_ADMIN_KEY" not in str(refused.value)
