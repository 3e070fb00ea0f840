"""The same server on PostgreSQL (LIMNER_DATABASE_URL), as a production deployment runs it."""

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.conftest import API_KEY, LiveServer, postgres_schema, start_server, stop_server


@pytest.fixture(scope="module")
def postgres_server(
    tmp_path_factory: pytest.TempPathFactory, catalog_file: Path
) -> Iterator[LiveServer]:
    with postgres_schema("limner_srv") as url:
        server = start_server(
            tmp_path_factory.mktemp("pg-home"),
            ["--catalog", str(catalog_file)],
            env={"LIMNER_DATABASE_URL": url},
        )
        yield server
        stop_server(server)


@pytest.mark.postgres
def test_generation_and_auth_on_postgres(postgres_server: LiveServer) -> None:
    assert not (postgres_server.home / "limner.db").exists()
    with openai.OpenAI(base_url=postgres_server.api_url, api_key=API_KEY, max_retries=0) as sdk:
        result = sdk.images.generate(model="gpt-image-1", prompt="a kite", quality="low")
        assert result.data[0].b64_json
    with (
        openai.OpenAI(
            base_url=postgres_server.api_url, api_key="sk-limner-nope-000000", max_retries=0
        ) as sdk,
        pytest.raises(openai.AuthenticationError),
    ):
        sdk.models.list()
