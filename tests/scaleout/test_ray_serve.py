"""Limner on Ray Serve, end to end through the official SDK: concurrent requests billed once
each, partial images streamed through the proxy, a client that leaves cancelling the render on
its replica, a replica killed mid-request, signed URLs from either ingress replica."""

import re
import subprocess
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import openai
import pytest

from tests.api.conftest import new_organization, project_key
from tests.conftest import LiveServer

pytestmark = pytest.mark.ray


def customer(server: LiveServer, name: str) -> tuple[openai.OpenAI, openai.OpenAI]:
    """A fresh organization's SDK clients: its project key, and its admin key."""
    created = new_organization(server, name=name, verified=True, tier="5")
    key = project_key(server, created["id"], created["default_project_id"])
    sdk = openai.OpenAI(base_url=server.api_url, api_key=key, max_retries=0, timeout=120)
    admin = openai.OpenAI(
        base_url=server.api_url,
        admin_api_key=created["admin_api_key"]["value"],
        api_key="",
        max_retries=0,
    )
    return sdk, admin


def billed_images(admin: openai.OpenAI) -> int:
    usage = admin.admin.organization.usage.images(
        start_time=int(time.time()) - 3600, bucket_width="1d"
    )
    return sum(result.images for bucket in usage.data for result in bucket.results)


def engine_pids(backend: str) -> list[int]:
    found = subprocess.run(
        ["pgrep", "-f", f"ServeReplica:limner:engine-{backend}"], capture_output=True, text=True
    )
    return [int(pid) for pid in found.stdout.split()]


def wait_for(condition: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"not within {seconds} s: {what}")


def test_twenty_concurrent_requests_are_answered_and_each_billed_once(
    ray_server: LiveServer,
) -> None:
    sdk, admin = customer(ray_server, "ray-burst")

    def one(index: int) -> Any:
        return sdk.images.with_raw_response.generate(
            model="gpt-image-1", prompt=f"a dot {index}", quality="low"
        )

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(one, range(20)))
    assert all(answer.status_code == 200 for answer in answers)
    assert all(answer.parse().data[0].b64_json for answer in answers)
    # One request id per response: the proxy's, which the app logs and bills under.
    ids = [answer.headers.get_list("x-request-id") for answer in answers]
    assert all(len(found) == 1 for found in ids) and len({found[0] for found in ids}) == 20
    assert billed_images(admin) == 20


def test_a_request_id_the_client_reuses_is_billed_every_time(ray_server: LiveServer) -> None:
    """Serve's proxy keeps a client's x-request-id; billing is keyed on Limner's own ids."""
    sdk, admin = customer(ray_server, "ray-reused-id")
    for _ in range(2):
        answer = sdk.images.with_raw_response.generate(
            model="gpt-image-1",
            prompt="a dot",
            quality="low",
            extra_headers={"x-request-id": "req_chosen_by_the_client"},
        )
        assert answer.headers.get_list("x-request-id") == ["req_chosen_by_the_client"]
    assert billed_images(admin) == 2


def test_partial_images_stream_through_the_proxy(ray_server: LiveServer) -> None:
    sdk, admin = customer(ray_server, "ray-stream")
    arrivals: list[tuple[str, float]] = []
    started = time.monotonic()
    for event in sdk.images.generate(
        model="gpt-image-1", prompt="a cat", quality="high", stream=True, partial_images=2
    ):
        arrivals.append((event.type, time.monotonic() - started))
    kinds = [kind for kind, _ in arrivals]
    assert kinds == ["image_generation.partial_image"] * 2 + ["image_generation.completed"]
    assert billed_images(admin) == 1
    response = sdk.responses.create(
        model="gpt-4.1",
        input="a boat",
        stream=True,
        tools=[{"type": "image_generation", "quality": "high", "partial_images": 2}],
    )
    events = [event.type for event in response]
    assert events[0] == "response.created" and events[-1] == "response.completed"
    assert events.count("response.image_generation_call.partial_image") == 2


def test_a_client_that_leaves_cancels_the_render_on_its_replica(ray_server: LiveServer) -> None:
    sdk, admin = customer(ray_server, "ray-leave")
    request_id = f"req_leave_{uuid.uuid4().hex}"
    with httpx.stream(
        "POST",
        ray_server.api_url + "/images/generations",
        json={
            "model": "slow-model",
            "prompt": "a slow dot",
            "quality": "high",
            "stream": True,
            "partial_images": 3,
        },
        headers={"authorization": f"Bearer {sdk.api_key}", "x-request-id": request_id},
        timeout=60,
    ) as response:
        assert response.headers.get_list("x-request-id") == [request_id]
        for line in response.iter_lines():
            if line.startswith("data:"):
                break
    # The engine replica's own log line, forwarded by Ray to the server's output.
    wait_for(
        lambda: f"render {request_id} on slow cancelled" in ray_server.log.read_text(),
        30,
        "the replica cancelling the render",
    )
    assert billed_images(admin) == 0


def test_a_killed_replica_is_a_clean_error_and_the_cluster_serves_on(
    ray_server: LiveServer,
) -> None:
    sdk, admin = customer(ray_server, "ray-kill")
    body = {"model": "slow-model", "prompt": "x", "quality": "high", "stream": True}
    headers = {"authorization": f"Bearer {sdk.api_key}"}
    wait_for(lambda: len(engine_pids("slow")) == 2, 60, "two slow replicas")
    before = engine_pids("slow")

    def stream() -> list[str]:
        lines: list[str] = []
        with httpx.stream(
            "POST",
            ray_server.api_url + "/images/generations",
            json={**body, "partial_images": 3},
            headers=headers,
            timeout=60,
        ) as response:
            assert response.status_code == 200
            for line in response.iter_lines():
                if line.startswith("data:"):
                    lines.append(line)
                    if len(lines) == 1:
                        for pid in before:  # every slow replica, mid-render
                            subprocess.run(["kill", "-9", str(pid)], check=False)
        return lines

    lines = stream()
    assert '"error"' in lines[-1] and "server_error" in lines[-1]
    # Other backends serve on at once; the killed replicas are replaced.
    result = sdk.images.generate(model="gpt-image-1", prompt="a dot", quality="low")
    assert result.data and result.data[0].b64_json
    wait_for(
        lambda: len(engine_pids("slow")) == 2 and not set(engine_pids("slow")) & set(before),
        60,
        "two new slow replicas",
    )
    assert billed_images(admin) == 1  # the dot, not the killed render


def test_signed_urls_are_served_by_every_ingress_replica(ray_server: LiveServer) -> None:
    """Images kept in the database (LIMNER_IMAGE_STORAGE=database): any replica serves them."""
    sdk, _admin = customer(ray_server, "ray-urls")
    result = sdk.images.generate(model="dall-e-2", prompt="a dot", size="256x256")
    assert result.data and result.data[0].url
    url = result.data[0].url
    for _ in range(12):
        assert httpx.get(url, timeout=30).status_code == 200
    # The proxy spread the fetches over both ingress replicas (each logs its access lines).
    path = re.escape(httpx.URL(url).path)
    pids = set(
        re.findall(
            rf"ServeReplica:limner:ingress pid=(\d+).*GET {path} 200", ray_server.log.read_text()
        )
    )
    assert len(pids) == 2


def test_healthz_answers_from_cached_state(ray_server: LiveServer) -> None:
    health = httpx.get(ray_server.base_url + "/healthz", timeout=10).json()
    assert health["status"] == "ok"
    assert {backend["name"] for backend in health["backends"]} == {"tiny", "slow"}
    assert httpx.get(ray_server.base_url + "/healthz", timeout=10).elapsed.total_seconds() < 1


def test_an_engine_deployment_scales_with_its_load(ray_server: LiveServer) -> None:
    """The tiny backend autoscales (min 1, max 2, target 1 ongoing request, delays of
    seconds): under six clients it gets a second replica, idle it goes back to one."""
    sdk, _admin = customer(ray_server, "ray-scale")
    wait_for(lambda: len(engine_pids("tiny")) == 1, 60, "one tiny replica at rest")
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            sdk.images.generate(model="gpt-image-1", prompt="a dot", quality="high")

    workers = [threading.Thread(target=client) for _ in range(6)]
    for worker in workers:
        worker.start()
    try:
        wait_for(lambda: len(engine_pids("tiny")) == 2, 60, "a second tiny replica")
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=60)
    wait_for(lambda: len(engine_pids("tiny")) == 1, 60, "back to one tiny replica")


def test_a_request_whose_replica_dies_before_any_event_is_resubmitted(
    ray_server: LiveServer,
) -> None:
    """Both slow replicas busy with long renders, a request queued behind one of them has
    sent its client nothing when that replica is killed: it is resubmitted once, to the other,
    and answered. The streams on the killed replica end with an error event; only what was
    delivered is billed."""
    sdk, admin = customer(ray_server, "ray-resubmit")
    wait_for(lambda: len(engine_pids("slow")) == 2, 60, "two slow replicas")
    headers = {"authorization": f"Bearer {sdk.api_key}"}
    body = {"model": "slow-model", "prompt": "x", "quality": "high"}
    log = ray_server.log
    results: dict[str, Any] = {}

    def replica_of(request_id: str) -> str | None:
        found = re.search(rf"render {request_id} on slow in replica pid (\d+)", log.read_text())
        return found[1] if found else None

    def stream(request_id: str, size: str) -> None:
        try:
            with httpx.stream(
                "POST",
                ray_server.api_url + "/images/generations",
                json={**body, "size": size, "stream": True, "partial_images": 3},
                headers={**headers, "x-request-id": request_id},
                timeout=120,
            ) as response:
                results[request_id] = [line for line in response.iter_lines() if line]
        except httpx.HTTPError as exc:
            results[request_id] = [repr(exc)]

    def unary(request_id: str, size: str) -> None:
        try:
            results[request_id] = httpx.post(
                ray_server.api_url + "/images/generations",
                json={**body, "size": size},
                headers={**headers, "x-request-id": request_id},
                timeout=180,
            )
        except httpx.HTTPError as exc:
            results[request_id] = exc

    def start(target: Any, request_id: str, size: str) -> threading.Thread:
        thread = threading.Thread(target=target, args=(request_id, size))
        thread.start()
        wait_for(lambda: replica_of(request_id), 30, f"{request_id} reaching a replica")
        return thread

    # Each size is its own batch key, so the router spreads them by load.
    sizes = ["1024x1024", "1536x1024", "1024x1536"]
    threads, streams = [], []
    while len({replica_of(rid) for rid in streams}) < 2 and len(streams) < 6:
        streams.append(f"req_busy_{uuid.uuid4().hex}")
        threads.append(start(stream, streams[-1], sizes[len(streams) % 3]))
    assert len({replica_of(rid) for rid in streams}) == 2
    queued = f"req_queued_{uuid.uuid4().hex}"
    threads.append(start(unary, queued, "1024x1024"))
    killed = replica_of(queued)
    assert killed is not None
    subprocess.run(["kill", "-9", killed], check=False)
    for thread in threads:
        thread.join(timeout=180)

    assert results[queued].status_code == 200, results[queued].text
    assert f"resubmitting {queued}" in log.read_text()
    for rid in streams:
        if replica_of(rid) == killed:
            assert '"error"' in results[rid][-1]
    delivered = sum("image_generation.completed" in results[rid][-1] for rid in streams)
    assert billed_images(admin) == delivered + 1


def test_every_replicas_metrics_reach_rays_export(ray_server: LiveServer) -> None:
    """Engine replicas' own metrics (pipeline calls) and the ingress replicas' (images
    delivered) on the metrics export port, tagged by deployment and replica."""
    sdk, _admin = customer(ray_server, "ray-metrics")
    sdk.images.generate(model="gpt-image-1", prompt="a dot", quality="low")
    port = (ray_server.home.parent / "metrics-port").read_text()

    def exported() -> str:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        except httpx.HTTPError:
            return ""

    def has_both() -> bool:
        text = exported()
        return bool(
            re.search(r'ray_limner_generation_seconds_count\{[^}]*deployment="engine-tiny"', text)
            and re.search(r'ray_limner_images_generated_total\{[^}]*deployment="ingress"', text)
        )

    wait_for(has_both, 60, "engine and ingress series on Ray's metrics export")


def test_jobs_of_one_batch_key_meet_on_one_replica(ray_server: LiveServer) -> None:
    """The batch-key router (router = "batch_key" in the plan): one key's jobs follow each
    other to the replica it went to last. Each ingress replica's router remembers its own, so
    the claim is per ingress replica. Serve's default router picks one of two replicas at
    random for each: six in a row from one ingress would meet by chance 1 time in 32."""
    sdk, _admin = customer(ray_server, "ray-route")
    wait_for(lambda: len(engine_pids("slow")) == 2, 60, "two slow replicas")
    ids = []
    for _ in range(12):
        answer = sdk.images.with_raw_response.generate(
            model="slow-model", prompt="a dot", quality="low", size="1024x1024"
        )
        ids.append(answer.headers["x-request-id"])
    wait_for(
        lambda: f"limner.access [{ids[-1]}]" in ray_server.log.read_text(),
        30,
        "the ingress replicas' access lines",
    )
    text = ray_server.log.read_text()
    engines_by_ingress: dict[str, set[str]] = {}
    for request_id in ids:
        [ingress] = re.findall(
            rf"ServeReplica:limner:ingress pid=(\d+).*limner.access \[{request_id}\]", text
        )
        [engine] = re.findall(rf"render {request_id} on slow in replica pid (\d+)", text)
        engines_by_ingress.setdefault(ingress, set()).add(engine)
    assert engines_by_ingress and all(len(found) == 1 for found in engines_by_ingress.values())
