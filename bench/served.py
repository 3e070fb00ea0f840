"""A `limner serve` subprocess for the benchmarks that go through HTTP: a free loopback port,
its output in `home/server.log`, healthy before use, stopped after."""

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx


@dataclass(frozen=True)
class Served:
    base_url: str
    pid: int


@contextlib.contextmanager
def limner_serve(home: Path, args: list[str], env: dict[str, str]) -> Iterator[Served]:
    """`limner serve *args` with `env` over this process's environment and LIMNER_HOME=home."""
    home.mkdir(parents=True, exist_ok=True)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = home / "server.log"
    command = [sys.executable, "-m", "limner", "serve", "--host", "127.0.0.1", "--port", str(port)]
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*command, *args],
            env={**os.environ, "LIMNER_HOME": str(home), **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base_url, process, log)
        yield Served(base_url, process.pid)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_healthy(
    base_url: str, process: subprocess.Popen[bytes], log: Path, seconds: float = 180
) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"limner serve exited early:\n{log.read_text()[-4000:]}")
        try:
            # trust_env=False: no proxy from the environment; every byte stays on 127.0.0.1.
            if httpx.get(base_url + "/healthz", timeout=2, trust_env=False).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise SystemExit(f"limner serve did not become healthy:\n{log.read_text()[-4000:]}")
