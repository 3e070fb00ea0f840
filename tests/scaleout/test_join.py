"""`limner serve --ray --ray-address`: Limner joins a cluster someone else runs, and leaves it
as it found it: stopping Limner deletes its application, never Serve or the cluster."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import ADMIN_KEY, API_KEY, LiveServer, free_port, start_server
from tests.scaleout.conftest import RAY_CATALOG, RAY_ENV

pytestmark = pytest.mark.ray


@contextmanager
def ray_head(node_env: dict[str, str]) -> Iterator[str]:
    """A Ray head started with `ray start`, in its own session and temp dir (short: Ray's
    sockets live there), so that nothing else on the machine sees or loses it; `node_env` is
    what its node's processes (Limner's replicas among them) have in their environment."""
    pytest.importorskip("ray.serve", reason='Ray Serve is not installed: pip install -e ".[ray]"')
    temp = tempfile.mkdtemp(prefix="rj", dir="/tmp")
    port = free_port()
    ray = [sys.executable, "-m", "ray.scripts.scripts"]
    head = subprocess.Popen(
        [
            *ray,
            *("start", "--head", "--block", "--port", str(port), "--num-cpus", "2"),
            *("--include-dashboard=false", "--node-ip-address", "127.0.0.1", "--temp-dir", temp),
        ],
        env={**os.environ, **RAY_ENV, "HF_HUB_OFFLINE": "1", **node_env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_listening(port, head)
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run(["pkill", "-KILL", "-s", str(head.pid)], check=False)
        head.wait(timeout=30)
        shutil.rmtree(temp, ignore_errors=True)


def join(address: str, tmp_path: Path, tiny_pipeline_dir: Path) -> LiveServer:
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(RAY_CATALOG.format(tiny=tiny_pipeline_dir))
    return start_server(
        tmp_path / "home",
        [
            *("--catalog", str(catalog), "--engine-cpus", "0.25"),
            *("--ray", "--ray-address", address),
        ],
        env=dict(RAY_ENV),
    )


def wait_listening(port: int, head: subprocess.Popen[bytes]) -> None:
    """Until the head's GCS takes connections (`ray start --block` returns only at its end)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and head.poll() is None:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError("the Ray head did not start")


def test_stopping_limner_leaves_a_joined_cluster_serving(
    tmp_path: Path, tiny_pipeline_dir: Path
) -> None:
    # The nodes hold the driver's LIMNER_* secrets, as docs/scale-out.md asks of an operator.
    secrets = {"LIMNER_ADMIN_KEY": ADMIN_KEY, "LIMNER_API_KEY": API_KEY}
    with ray_head(secrets) as address:
        server = join(address, tmp_path, tiny_pipeline_dir)
        served_and_stopped(server)


def test_a_node_without_the_secrets_is_refused_by_name(
    tmp_path: Path, tiny_pipeline_dir: Path
) -> None:
    with ray_head({}) as address, pytest.raises(RuntimeError, match="exited early") as failed:
        join(address, tmp_path, tiny_pipeline_dir)
    said = str(failed.value)
    assert (
        "Limner could not be deployed: ingress: LIMNER_ADMIN_KEY, LIMNER_API_KEY on this node"
        in said
    )


def served_and_stopped(server: LiveServer) -> None:
    with openai.OpenAI(base_url=server.api_url, api_key=API_KEY, max_retries=0) as sdk:
        result = sdk.images.generate(model="gpt-image-1", prompt="a dot", quality="low")
    assert result.data and result.data[0].b64_json
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=60) == 0
    # Serve (its proxy is a cluster actor) still answers on the port, though Limner's routes
    # are gone: Serve's own 404, not Limner's error envelope. Had Limner shut Serve down, the
    # connection would be refused.
    after = httpx.get(server.base_url + "/v1/models", timeout=10)
    assert after.status_code == 404 and "error" not in after.text
