"""The same server on PostgreSQL (LIMNER_DATABASE_URL), as a production deployment runs it."""

import openai
import pytest

from tests.conftest import API_KEY, LiveServer


@pytest.mark.postgres
def test_generation_and_auth_on_postgres(postgres_live_server: LiveServer) -> None:
    assert not (postgres_live_server.home / "limner.db").exists()
    with openai.OpenAI(
        base_url=postgres_live_server.api_url, api_key=API_KEY, max_retries=0
    ) as sdk:
        result = sdk.images.generate(model="gpt-image-1", prompt="a kite", quality="low")
        assert result.data[0].b64_json
    with (
        openai.OpenAI(
            base_url=postgres_live_server.api_url, api_key="sk-limner-nope-000000", max_retries=0
        ) as sdk,
        pytest.raises(openai.AuthenticationError),
    ):
        sdk.models.list()
