"""The `limner` command as a user runs it: keys are printed once, stored hashed, revocable."""

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import openai
from PIL import Image

from tests.conftest import API_KEY, LiveServer, free_port


def limner(home: Path, *args: str, **env_vars: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LIMNER_HOME": str(home), **env_vars}
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


def test_a_database_limner_does_not_run_on_is_refused_by_name(tmp_path: Path) -> None:
    url = "mysql+pymysql://limner:secret@127.0.0.1/limner"
    result = limner(tmp_path, "db", "upgrade", LIMNER_DATABASE_URL=url)
    assert result.returncode == 2
    assert "names a mysql database" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "limner.db").exists()


def test_a_refused_setting_says_which_and_why(tmp_path: Path) -> None:
    result = limner(tmp_path, "serve", "--port", "0", LIMNER_QUEUE_SIZE="0")
    assert result.returncode == 2
    assert "queue_size" in result.stderr and "at least 1" in result.stderr
    assert "Traceback" not in result.stderr


def test_db_upgrade(tmp_path: Path) -> None:
    result = limner(tmp_path, "db", "upgrade")
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(tmp_path / "limner.db") as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"api_keys", "alembic_version"} <= tables


def generate(*args: str, url: str, key: str) -> subprocess.CompletedProcess[str]:
    """`limner generate` as a user runs it, pointed at `url` with `key`."""
    return subprocess.run(
        [sys.executable, "-m", "limner", "generate", *args],
        env={**os.environ, "LIMNER_API_KEY": key, "LIMNER_URL": url},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_generate_streams_from_a_running_server(live_server: LiveServer, tmp_path: Path) -> None:
    out, url = tmp_path / "dot.png", live_server.api_url
    done = generate("a dot", "-o", str(out), "--quality", "high", url=url, key=API_KEY)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(out)
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size == (1024, 1024)
    # Two images, numbered, as JPEG because the file name says so.
    jpeg = tmp_path / "pair.jpg"
    pair = generate("two dots", "-o", str(jpeg), "--n", "2", url=url, key=API_KEY)
    assert pair.returncode == 0, pair.stderr
    paths = [Path(line) for line in pair.stdout.split()]
    assert paths == [tmp_path / "pair-0.jpg", tmp_path / "pair-1.jpg"]
    for path in paths:
        with Image.open(path) as image:
            assert image.format == "JPEG"


def test_generate_without_a_server_says_how_to_start_one(tmp_path: Path) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}/v1"
    done = generate("a dot", "-o", str(tmp_path / "x.png"), url=nowhere, key="sk-proj-whatever")
    assert done.returncode == 1
    assert "limner serve" in done.stderr and "no server answers" in done.stderr
    assert not (tmp_path / "x.png").exists()


def test_generate_reports_the_servers_refusal(live_server: LiveServer, tmp_path: Path) -> None:
    out = str(tmp_path / "x.png")
    done = generate("a dot", "-o", out, url=live_server.api_url, key="sk-proj-not-a-key-000000")
    assert done.returncode == 1
    assert "invalid_api_key" in done.stderr
