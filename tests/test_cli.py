"""The `limner` command as a user runs it: keys are printed once, stored hashed, revocable."""

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import openai

from tests.conftest import LiveServer


def limner(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LIMNER_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "limner", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_keys_create_list_revoke(live_server: LiveServer) -> None:
    created = limner(live_server.home, "keys", "create", "--name", "cli-test")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert key.startswith("sk-proj-")
    assert "not shown again" in created.stderr

    # The running server sees the new key at once: both share $LIMNER_HOME's database.
    with openai.OpenAI(base_url=live_server.api_url, api_key=key, max_retries=0) as sdk:
        assert any(model.id == "gpt-image-1" for model in sdk.models.list())

    listed = limner(live_server.home, "keys", "list")
    line = next(row for row in listed.stdout.splitlines() if row.endswith("cli-test"))
    assert key not in listed.stdout
    key_id = line.split("\t")[0]
    with sqlite3.connect(live_server.home / "limner.db") as db:
        stored = [row[0] for row in db.execute("SELECT key_hash FROM api_keys")]
    assert key not in stored

    revoked = limner(live_server.home, "keys", "revoke", key_id)
    assert revoked.returncode == 0, revoked.stderr
    response = httpx.get(
        live_server.api_url + "/models", headers={"authorization": f"Bearer {key}"}
    )
    assert response.status_code == 401
    assert limner(live_server.home, "keys", "revoke", key_id).returncode == 1


def test_serve_with_a_missing_model_says_what_is_wrong(tmp_path: Path) -> None:
    result = limner(tmp_path, "serve", "--port", "0", "--model", str(tmp_path / "nothing"))
    assert result.returncode == 2
    assert "is not a directory" in result.stderr


def test_db_upgrade(tmp_path: Path) -> None:
    result = limner(tmp_path, "db", "upgrade")
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(tmp_path / "limner.db") as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"api_keys", "alembic_version"} <= tables
