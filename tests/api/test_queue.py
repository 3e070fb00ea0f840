"""The worker's bounds through a live server of its own: a full queue answers 503 with
retry-after at once, and SIGTERM lets an in-flight render finish and bills it exactly once."""

import signal
import sqlite3
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import API_KEY, LiveServer, start_server, stop_server

SLOW = {"model": "slow-model", "prompt": "a slow dot", "quality": "low"}


@pytest.fixture()
def small_server(tmp_path: Path, catalog_file: Path) -> Iterator[LiveServer]:
    """One waiting job at most, no batching: the third concurrent request finds the queue full."""
    server = start_server(
        tmp_path / "home",
        ["--catalog", str(catalog_file)],
        env={"LIMNER_QUEUE_SIZE": "1", "LIMNER_MAX_BATCH_IMAGES": "1"},
    )
    yield server
    stop_server(server)


def post(server: LiveServer, body: dict[str, object], timeout: float = 120) -> httpx.Response:
    return httpx.post(
        server.api_url + "/images/generations",
        json=body,
        headers={"authorization": f"Bearer {API_KEY}"},
        timeout=timeout,
    )


def test_a_full_queue_refuses_at_once_with_retry_after(small_server: LiveServer) -> None:
    with ThreadPoolExecutor(3) as pool:
        running = pool.submit(post, small_server, SLOW)
        time.sleep(0.5)  # the first is rendering, the second will wait
        waiting = pool.submit(post, small_server, SLOW)
        time.sleep(0.3)
        started = time.monotonic()
        refused = post(small_server, SLOW)
        refused_after = time.monotonic() - started
        assert refused.status_code == 503
        error = refused.json()["error"]
        assert error["type"] == "server_error" and error["code"] is None
        assert "busy" in error["message"]
        assert int(refused.headers["retry-after"]) >= 1
        assert int(refused.headers["retry-after-ms"]) >= 100
        assert refused.headers.get("x-should-retry") != "false"
        # Refused without waiting for the render in front of it.
        assert refused_after < 5
        assert running.result().status_code == 200
        assert waiting.result().status_code == 200
    # Streaming is refused the same way, as JSON, before any event.
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(post, small_server, SLOW)
        time.sleep(0.5)
        second = pool.submit(post, small_server, SLOW)
        time.sleep(0.3)
        with (
            openai.OpenAI(base_url=small_server.api_url, api_key=API_KEY, max_retries=0) as sdk,
            pytest.raises(openai.InternalServerError) as caught,
        ):
            sdk.images.generate(**SLOW, stream=True)  # type: ignore[call-overload]
        assert caught.value.status_code == 503
        assert first.result().status_code == 200 and second.result().status_code == 200


def test_sigterm_finishes_in_flight_work_and_bills_it_once(small_server: LiveServer) -> None:
    with ThreadPoolExecutor(1) as pool:
        in_flight = pool.submit(post, small_server, SLOW)
        time.sleep(0.5)
        small_server.process.send_signal(signal.SIGTERM)
        response = in_flight.result()
    assert response.status_code == 200 and response.json()["data"][0]["b64_json"]
    # uvicorn re-raises the signal it handled once it has shut down cleanly.
    assert small_server.process.wait(timeout=60) in (0, -signal.SIGTERM)
    log = small_server.log.read_text()
    assert log.index("Shutting down") < log.index("POST /v1/images/generations 200 ")
    assert "Application shutdown complete" in log
    with pytest.raises(httpx.ConnectError):
        post(small_server, SLOW, timeout=5)
    # The database the server left behind holds exactly one delivered request.
    with sqlite3.connect(small_server.home / "limner.db") as db:
        (count,) = db.execute(
            "SELECT count(*) FROM usage_records WHERE model = 'slow-model'"
        ).fetchone()
    assert count == 1
