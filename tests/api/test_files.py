"""response_format=url: signed URLs served by Limner itself, refused when forged or expired."""

from urllib.parse import parse_qs, urlsplit

import httpx
import openai

from limner.storage.blobs import BlobStore
from tests.conftest import LiveServer


def _url(client: openai.OpenAI) -> str:
    result = client.images.generate(model="dall-e-2", prompt="a bridge", size="256x256")
    url = result.data[0].url
    assert url is not None
    return url


def test_url_is_fetchable_without_a_key(client: openai.OpenAI) -> None:
    response = httpx.get(_url(client))
    assert response.status_code == 200
    assert response.content.startswith(b"\x89PNG")


def test_forged_signature_is_refused(client: openai.OpenAI) -> None:
    url = _url(client)
    forged = url[:-4] + ("0000" if not url.endswith("0000") else "1111")
    response = httpx.get(forged)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "invalid_signature"


def test_extended_expiry_is_refused(client: openai.OpenAI) -> None:
    url = _url(client)
    expires = parse_qs(urlsplit(url).query)["expires"][0]
    response = httpx.get(url.replace(f"expires={expires}", f"expires={int(expires) + 86400}"))
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "invalid_signature"


def test_expired_url_is_refused(live_server: LiveServer) -> None:
    # Sign with the server's own secret, but an hour and a second ago.
    store = BlobStore.open(live_server.home, ttl_seconds=3600)
    import time

    signed = store.save(b"\x89PNG fake", "png", now=time.time() - 3601)
    query = f"expires={signed.expires}&signature={signed.signature}"
    url = f"{live_server.api_url}/images/files/{signed.name}?{query}"
    response = httpx.get(url)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "url_expired"


def test_url_expires_in_sixty_minutes(client: openai.OpenAI) -> None:
    import time

    expires = int(parse_qs(urlsplit(_url(client)).query)["expires"][0])
    assert 3590 <= expires - time.time() <= 3600
