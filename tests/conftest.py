"""Shared fixtures: a tiny real pipeline on disk, a catalog, a live `limner serve`, SDK clients."""

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from limner.storage.db import Database, make_engine, upgrade
from tests.engine.tiny_pipeline import build_tiny_pipeline

os.environ["HF_HUB_OFFLINE"] = "1"
ADMIN_KEY = "sk-admin-test-admin-key-0123456789"
# A project key of the operator's Default project, registered through LIMNER_API_KEY.
API_KEY = "sk-proj-test-project-key-0123456789"

# The tiny pipeline at a few steps per quality (a catalog template: `{tiny}` is its path).
TINY_BACKEND = """
[backends.tiny]
path = "{tiny}"
[backends.tiny.quality]
low = {{ steps = 2, resolution = 32 }}
medium = {{ steps = 3, resolution = 48 }}
high = {{ steps = 4, resolution = 64 }}
"""

CATALOG = (
    TINY_BACKEND
    + """
[backends.broken]
path = "{broken}"

# The tiny pipeline with hundreds of steps: a render that takes seconds, to cancel mid-way.
[backends.slow]
path = "{tiny}"
[backends.slow.quality]
low = {{ steps = 300, resolution = 64 }}
medium = {{ steps = 300, resolution = 64 }}
high = {{ steps = 300, resolution = 64 }}

[models.gpt-image-1]
backend = "tiny"
aliases = ["gpt-image-1-mini", "gpt-image-1.5", "dall-e-2", "dall-e-3", "tiny-custom"]

[models.broken-model]
backend = "broken"

[models.slow-model]
backend = "slow"
"""
)


@pytest.fixture()
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def tiny_pipeline_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_pipeline(tmp_path_factory.mktemp("tiny") / "pipeline")


@pytest.fixture(scope="session")
def broken_pipeline_dir(tmp_path_factory: pytest.TempPathFactory, tiny_pipeline_dir: Path) -> Path:
    """A pipeline that loads but fails on every render: its text encoder's width does not match
    the UNet's cross-attention, so the failure happens inside the engine, mid-run."""
    broken = tmp_path_factory.mktemp("broken") / "pipeline"
    shutil.copytree(tiny_pipeline_dir, broken)
    wide = build_tiny_pipeline(tmp_path_factory.mktemp("wide") / "pipeline", text_hidden_size=48)
    shutil.rmtree(broken / "text_encoder")
    shutil.copytree(wide / "text_encoder", broken / "text_encoder")
    return broken


@pytest.fixture(scope="session")
def catalog_file(
    tmp_path_factory: pytest.TempPathFactory, tiny_pipeline_dir: Path, broken_pipeline_dir: Path
) -> Path:
    path = tmp_path_factory.mktemp("catalog") / "catalog.toml"
    path.write_text(CATALOG.format(tiny=tiny_pipeline_dir, broken=broken_pipeline_dir))
    return path


POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@contextmanager
def postgres_schema(prefix: str) -> Iterator[str]:
    """A fresh schema on the shared `test` database; yields a URL whose search_path is it."""
    schema = f"{prefix}_{secrets.token_hex(4)}"
    _postgres_sql(f"CREATE SCHEMA {schema}")
    try:
        yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    finally:
        _postgres_sql(f"DROP SCHEMA {schema} CASCADE")


@contextmanager
def migrated_database(kind: str, sqlite_path: Path) -> Iterator[Database]:
    """A database at the newest schema: a SQLite file, or a fresh PostgreSQL schema."""
    with ExitStack() as stack:
        url = (
            f"sqlite:///{sqlite_path}"
            if kind == "sqlite"
            else stack.enter_context(postgres_schema("limner_test"))
        )
        engine = make_engine(url)
        upgrade(engine)
        try:
            yield Database(engine)
        finally:
            engine.dispose()


DATABASE_KINDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=DATABASE_KINDS)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    with migrated_database(request.param, tmp_path / "test.db") as opened:
        yield opened


def _postgres_sql(statement: str) -> None:
    engine = create_engine(POSTGRES_URL)
    with engine.begin() as connection:
        connection.execute(text(statement))
    engine.dispose()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LiveServer:
    base_url: str
    home: Path
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def api_url(self) -> str:
        return self.base_url + "/v1"


def start_server(
    home: Path, args: list[str], env: dict[str, str | None] | None = None
) -> LiveServer:
    """`limner serve` on a free port with `home` as LIMNER_HOME; `env` adds variables, and a
    None value removes one (a server started with no key configured)."""
    port = free_port()
    log = home / "server.log"
    home.mkdir(parents=True, exist_ok=True)
    merged: dict[str, str | None] = {
        **os.environ,
        "LIMNER_HOME": str(home),
        "LIMNER_ADMIN_KEY": ADMIN_KEY,
        "LIMNER_API_KEY": API_KEY,
        "HF_HUB_OFFLINE": "1",
        **(env or {}),
    }
    process_env = {name: value for name, value in merged.items() if value is not None}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "limner", "serve", "--port", str(port), *args],
            env=process_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            # Its own session: whatever it starts (a Ray cluster's processes) can be found by
            # session id and stopped without touching anything else on the machine.
            start_new_session=True,
        )
    server = LiveServer(f"http://127.0.0.1:{port}", home, process, log)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{log.read_text()}")
        try:
            if httpx.get(server.base_url + "/healthz", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"server did not become healthy:\n{log.read_text()}")


def stop_server(server: LiveServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.process.kill()


@pytest.fixture(scope="session")
def postgres_live_server(
    tmp_path_factory: pytest.TempPathFactory, catalog_file: Path
) -> Iterator[LiveServer]:
    """The same server on PostgreSQL (LIMNER_DATABASE_URL), as a production deployment runs."""
    with postgres_schema("limner_srv") as url:
        server = start_server(
            tmp_path_factory.mktemp("pg-home"),
            ["--catalog", str(catalog_file)],
            env={"LIMNER_DATABASE_URL": url},
        )
        yield server
        stop_server(server)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def platform_server(request: pytest.FixtureRequest) -> LiveServer:
    """The platform suite runs against the server on SQLite and on PostgreSQL."""
    name = "live_server" if request.param == "sqlite" else "postgres_live_server"
    server: LiveServer = request.getfixturevalue(name)
    return server


@pytest.fixture(scope="session")
def mini_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The embedded model (limner-mini), as `limner serve` with no arguments serves it."""
    server = start_server(tmp_path_factory.mktemp("mini-home"), [])
    yield server
    stop_server(server)


@pytest.fixture(scope="session")
def live_server(
    tmp_path_factory: pytest.TempPathFactory, catalog_file: Path
) -> Iterator[LiveServer]:
    server = start_server(tmp_path_factory.mktemp("home"), ["--catalog", str(catalog_file)])
    yield server
    stop_server(server)
