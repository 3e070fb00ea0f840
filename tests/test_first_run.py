"""A first run on a fresh machine: no data directory, no key, the README's commands in any
order; every failure a line or two that says what to change (the traceback only with --debug)."""

import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import openai
import pytest

from limner.cli import FIRST_KEY_FILE
from tests.conftest import POSTGRES_URL, LiveServer, free_port, start_server, stop_server

# Every variable a user may not have set yet: the run starts from the bare environment.
_LIMNER_VARIABLES = [name for name in os.environ if name.startswith("LIMNER_")]


def fresh_limner(home: Path, *args: str, **env_vars: str) -> subprocess.CompletedProcess[str]:
    """`limner ARGS` for a user whose HOME is `home` and who has set no LIMNER_ variable."""
    env = {name: value for name, value in os.environ.items() if name not in _LIMNER_VARIABLES}
    env.update(HOME=str(home), **env_vars)
    return subprocess.run(
        [sys.executable, "-m", "limner", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def short_error(result: subprocess.CompletedProcess[str]) -> str:
    """The error a user reads, after whatever the command logged before it: at most two
    lines, no traceback."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("limner: ")]
    assert starts, result.stderr
    error = lines[starts[0] :]
    assert len(error) <= 2, result.stderr
    return "\n".join(error)


@pytest.mark.parametrize(
    "command",
    [
        ["keys", "create", "--name", "me"],
        ["keys", "list"],
        ["orgs", "list"],
        ["projects", "list"],
        ["db", "upgrade"],
    ],
)
def test_any_command_first_creates_a_private_data_directory(
    tmp_path: Path, command: list[str]
) -> None:
    result = fresh_limner(tmp_path, *command)
    assert result.returncode == 0, result.stderr
    home = tmp_path / ".limner"
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert (home / "limner.db").is_file()


def test_a_data_directory_that_cannot_be_made_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = fresh_limner(tmp_path, "keys", "list", LIMNER_HOME=str(blocker / "home"))
    assert result.returncode == 2
    assert "cannot create the data directory" in short_error(result)


@pytest.fixture(scope="module")
def first_server(tmp_path_factory: pytest.TempPathFactory) -> LiveServer:
    """`limner serve` with nothing configured: the embedded model, no key anywhere."""
    home = tmp_path_factory.mktemp("first") / ".limner"
    server = start_server(home, [], env={"LIMNER_API_KEY": None, "LIMNER_ADMIN_KEY": None})
    yield server  # type: ignore[misc]
    stop_server(server)


def test_serve_on_a_fresh_machine_shows_a_working_key_once(first_server: LiveServer) -> None:
    log = first_server.log.read_text()
    saved = first_server.home / FIRST_KEY_FILE
    key = saved.read_text().strip()
    assert key.startswith("sk-proj-")
    assert log.count(key) == 2  # the key, and the SDK line that exports it
    assert f'limner generate "a lighthouse at dusk" --server {first_server.api_url}' in log
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    with openai.OpenAI(base_url=first_server.api_url, api_key=key, max_retries=0) as sdk:
        result = sdk.images.generate(model="gpt-image-1", prompt="a red circle", quality="low")
    assert result.data[0].b64_json


def test_the_start_is_quiet(first_server: LiveServer) -> None:
    """No warning a user cannot act on (torchvision fallbacks, deprecations, install hints)."""
    log = first_server.log.read_text()
    assert " WARNING " not in log and "Warning" not in log, log


def test_a_second_start_makes_no_new_key(first_server: LiveServer) -> None:
    again = start_server(
        first_server.home, [], env={"LIMNER_API_KEY": None, "LIMNER_ADMIN_KEY": None}
    )
    try:
        assert "shown once" not in again.log.read_text()
    finally:
        stop_server(again)


def test_generate_uses_the_key_serve_saved(first_server: LiveServer, tmp_path: Path) -> None:
    out = tmp_path / "first.png"
    done = fresh_limner(
        first_server.home.parent,
        "generate",
        "a lighthouse at dusk",
        "-o",
        str(out),
        LIMNER_URL=first_server.api_url,
    )
    assert done.returncode == 0, done.stderr
    assert out.stat().st_size > 0


def catalog(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "catalog.toml"
    path.write_text(text)
    return path


def test_a_misspelt_catalog_key_is_named(tmp_path: Path, tiny_pipeline_dir: Path) -> None:
    path = catalog(
        tmp_path,
        f'[backends.b]\npath = "{tiny_pipeline_dir}"\nguidence_scale = 0.0\n'
        '[models.m]\nbackend = "b"\n',
    )
    result = fresh_limner(tmp_path, "serve", "--port", "0", "--catalog", str(path))
    assert result.returncode == 2
    assert "backends.b.guidence_scale: unknown key" in short_error(result)


def test_a_misspelt_tier_key_is_named(tmp_path: Path) -> None:
    from limner.metering.tiers import DEFAULT_TIERS_FILE

    tiers = tmp_path / "tiers.toml"
    tiers.write_text(DEFAULT_TIERS_FILE.read_text().replace("usage_limit_usd", "usage_limt_usd", 1))
    result = fresh_limner(tmp_path, "serve", "--port", "0", LIMNER_TIERS=str(tiers))
    assert result.returncode == 2
    assert "tiers.free.usage_limt_usd: unknown key" in short_error(result)


def test_an_unreachable_database_is_one_line(tmp_path: Path) -> None:
    url = f"postgresql+psycopg://limner:secret@127.0.0.1:{free_port()}/limner"
    result = fresh_limner(tmp_path, "keys", "list", LIMNER_DATABASE_URL=url)
    assert result.returncode == 2
    error = short_error(result)
    assert "cannot open the database" in error and "LIMNER_DATABASE_URL" in error
    assert "secret" not in error


def test_a_missing_model_directory_is_one_line(tmp_path: Path) -> None:
    result = fresh_limner(tmp_path, "serve", "--port", "0", "--model", str(tmp_path / "none"))
    assert result.returncode == 2
    assert "is not a directory" in short_error(result)


def test_a_directory_that_is_no_pipeline_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = fresh_limner(tmp_path, "serve", "--port", "0", "--model", str(tmp_path / "empty"))
    assert result.returncode == 2
    assert "cannot load a diffusers pipeline" in short_error(result)


def test_a_cuda_device_without_cuda_is_one_line(tmp_path: Path, tiny_pipeline_dir: Path) -> None:
    path = catalog(
        tmp_path,
        f'[backends.b]\npath = "{tiny_pipeline_dir}"\ndevice = "cuda"\n[models.m]\nbackend = "b"\n',
    )
    result = fresh_limner(tmp_path, "serve", "--port", "0", "--catalog", str(path))
    assert result.returncode == 2
    assert "backend 'b'" in short_error(result) and "no CUDA device" in result.stderr


def test_a_port_in_use_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = fresh_limner(tmp_path, "serve", "--port", str(port))
    assert result.returncode == 2
    assert f"port {port} on 127.0.0.1 is already in use" in short_error(result)


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    url = f"postgresql+psycopg://limner@127.0.0.1:{free_port()}/limner"
    result = fresh_limner(tmp_path, "--debug", "keys", "list", LIMNER_DATABASE_URL=url)
    assert result.returncode != 0
    assert "Traceback" in result.stderr and "DatabaseUnavailable" in result.stderr


def test_postgres_url_is_used_as_given(tmp_path: Path) -> None:
    """The reachable server still works from a fresh home (only SQLite needs the directory)."""
    result = fresh_limner(tmp_path, "orgs", "list", LIMNER_DATABASE_URL=POSTGRES_URL)
    assert result.returncode == 0, result.stderr
