import openai
import pytest

from limner.catalog import OPENAI_MODEL_NAMES


def test_list_models_has_every_served_name(client: openai.OpenAI) -> None:
    ids = {model.id for model in client.models.list()}
    assert set(OPENAI_MODEL_NAMES) <= ids
    assert {"tiny-custom", "broken-model"} <= ids


def test_retrieve_model(client: openai.OpenAI) -> None:
    model = client.models.retrieve("gpt-image-1")
    assert model.id == "gpt-image-1"
    assert model.object == "model"
    assert model.created == 1745517030
    assert model.owned_by == "system"
    assert client.models.retrieve("tiny-custom").owned_by == "limner"


def test_retrieve_unknown_model_is_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("gpt-4o")
    assert caught.value.code == "model_not_found"


def test_custom_name_uses_gpt_image_rules(client: openai.OpenAI) -> None:
    result = client.images.generate(model="tiny-custom", prompt="a kite", quality="low")
    assert result.usage is not None and result.data[0].b64_json
