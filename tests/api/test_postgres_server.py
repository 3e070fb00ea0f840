"""The same server on PostgreSQL (LIMNER_DATABASE_URL), as a production deployment runs it."""

import secrets
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from sqlalchemy import create_engine, text

from tests.conftest import ADMIN_KEY, LiveServer, start_server, stop_server

POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _admin_sql(statement: str) -> None:
    engine = create_engine(POSTGRES_URL)
    with engine.begin() as connection:
        connection.execute(text(statement))
    engine.dispose()


@pytest.fixture(scope="module")
def postgres_server(
    tmp_path_factory: pytest.TempPathFactory, catalog_file: Path
) -> Iterator[LiveServer]:
    schema = "limner_srv_" + secrets.token_hex(4)
    _admin_sql(f"CREATE SCHEMA {schema}")
    url = f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    server = start_server(
        tmp_path_factory.mktemp("pg-home"),
        ["--catalog", str(catalog_file)],
        env={"LIMNER_DATABASE_URL": url},
    )
    yield server
    stop_server(server)
    _admin_sql(f"DROP SCHEMA {schema} CASCADE")


@pytest.mark.postgres
def test_generation_and_auth_on_postgres(postgres_server: LiveServer) -> None:
    assert not (postgres_server.home / "limner.db").exists()
    with openai.OpenAI(base_url=postgres_server.api_url, api_key=ADMIN_KEY, max_retries=0) as sdk:
        result = sdk.images.generate(model="gpt-image-1", prompt="a kite", quality="low")
        assert result.data[0].b64_json
    with (
        openai.OpenAI(
            base_url=postgres_server.api_url, api_key="sk-limner-nope-000000", max_retries=0
        ) as sdk,
        pytest.raises(openai.AuthenticationError),
    ):
        sdk.models.list()
