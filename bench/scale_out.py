"""Limner on Ray Serve on this machine: images/s with 1 vs 2 engine replicas of the embedded
model, and the latency Serve adds per request over plain `limner serve`.

Starts three servers side by side: a plain `limner serve` (defaults: limner-mini, moderation
on) and `limner serve --ray --engine-replicas N --engine-cpus 0.5` for N = 1 and 2 (one ingress
replica, SQLite, the in-memory limiter), each a subprocess on a free loopback port with a fresh
LIMNER_HOME, its own Ray temp directory and Ray kept on 127.0.0.1 (the environment of
tests/scaleout/conftest.py). Through the official `openai` SDK, quality=low:

- throughput: `--rounds` rounds; in each, every server in turn (the order rotating) gets
  `--requests` requests from `--clients` concurrent clients, after a warm-up of two requests per
  client. Images/s over all rounds, p50, and where the CPU went meanwhile: the measured server's
  engine replicas, ingress and Ray's own processes, the two idle servers, this client, and
  everything else on the machine;
- latency: `--sequential` requests one at a time, alternating between the plain server and the
  1-replica cluster: medians and their ratio.

Interleaving is for a shared machine: load from elsewhere hits all servers alike, and the
"everything else" column says how much there was.

When a server stops (SIGTERM, as a supervisor would), every process left in its session (the
Ray processes it started) is waited for and then killed by pid. `--ray-stop` also runs `ray stop
--force` at the end; that stops every Ray process on the machine, other users' clusters
included, so it is off unless asked for.

    python bench/scale_out.py [--clients 8] [--requests 24] [--rounds 3] [--sequential 30]
                              [--size 1024x1024] [--ray-stop]
"""

import argparse
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import httpx
import openai
from served import wait_healthy
from throughput import PROMPTS

# tests/scaleout/conftest.py: Ray on 127.0.0.1 only, no usage reporting, no token auth, every
# replica's log lines as they are, one OpenMP thread per process.
RAY_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AUTH_MODE": "disabled",
    "RAY_DEDUP_LOGS": "0",
    "OMP_NUM_THREADS": "1",
}
TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass
class Server:
    name: str
    api_url: str
    process: subprocess.Popen[bytes]
    log: Path
    ready_seconds: float


@dataclass(frozen=True)
class Load:
    rate: float
    p50: float
    cores: dict[str, float]
    rates: list[float]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients")
    parser.add_argument("--requests", type=int, default=24, help="timed requests per turn")
    parser.add_argument("--rounds", type=int, default=3, help="turns per server")
    parser.add_argument("--sequential", type=int, default=30, help="sequential requests each")
    parser.add_argument("--size", default="1024x1024")
    parser.add_argument("--ray-stop", action="store_true", help="`ray stop --force` at the end")
    args = parser.parse_args()
    key = "sk-proj-" + secrets.token_hex(20)
    work = Path(tempfile.mkdtemp(prefix="limner-scale-out-"))
    sessions: list[int] = []
    print(
        f"limner-mini, quality=low, size {args.size}, PNG, moderation on; {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.2f} at start"
    )
    failed = True
    try:
        run(args, key, work, sessions)
        failed = False
    finally:
        left = [pid for sid in sessions for pid in session_pids(sid)]
        print(f"\nprocesses of the servers still running at the end: {len(left)}")
        if args.ray_stop:
            subprocess.run(
                [sys.executable, "-m", "ray.scripts.scripts", "stop", "--force"],
                capture_output=True,
                check=False,
            )
            print("ran `ray stop --force`")
        if failed:
            print(f"failed: the servers' logs are kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace, key: str, work: Path, sessions: list[int]) -> None:
    ray_args = ["--ray", "--engine-cpus", "0.5", "--engine-replicas"]
    titles = {
        "plain": "plain `limner serve`",
        "ray-1": "`limner serve --ray`, 1 engine replica",
        "ray-2": "`limner serve --ray`, 2 engine replicas",
    }
    extra = {"plain": [], "ray-1": [*ray_args, "1"], "ray-2": [*ray_args, "2"]}
    with ExitStack() as stack:
        servers: dict[str, Server] = {}
        for name, title in titles.items():
            servers[name] = stack.enter_context(
                limner_serve(name, extra[name], key, work, sessions)
            )
            print(f"\n{title}: up in {servers[name].ready_seconds:.1f} s")
            report_memory(servers[name])
        clients = {name: client(server, key) for name, server in servers.items()}
        print(f"\nthroughput, {args.clients} clients, {args.rounds} rounds of {args.requests}:")
        loads = throughput(servers, clients, args)
        for name, load in loads.items():
            report_load(titles[name], load)
        print("\nlatency:")
        plain_seq, ray_seq = sequential(clients["plain"], clients["ray-1"], args)
    plain_load, ray1_load, ray2_load = loads["plain"], loads["ray-1"], loads["ray-2"]

    plain_median, ray_median = statistics.median(plain_seq), statistics.median(ray_seq)
    print("\nSummary")
    print(
        f"  throughput, {args.clients} clients: 1 engine replica {ray1_load.rate:.2f} images/s, "
        f"2 replicas {ray2_load.rate:.2f}: ratio 2/1 = {ray2_load.rate / ray1_load.rate:.2f}; "
        f"plain limner serve {plain_load.rate:.2f} (ray 1 replica / plain = "
        f"{ray1_load.rate / plain_load.rate:.2f})"
    )
    print(
        f"  latency, sequential ({args.sequential} each, alternating): plain "
        f"{plain_median * 1000:.0f} ms, Serve {ray_median * 1000:.0f} ms median: "
        f"+{(ray_median - plain_median) * 1000:.0f} ms, ratio {ray_median / plain_median:.2f}"
    )
    print(WHY)


WHY = """
What this is, and why the ratio is far from 2: two cores bound it. It is not what engine
replicas do on GPUs.
  - limner-mini renders on one torch thread per call (its catalog's cpu_threads = 1), so an
    engine replica uses at most one core. A second replica adds a second render thread, but on
    the same two cores as the first, the ingress (moderation of the prompt, upscaling to the
    requested size, PNG encoding, base64) and the client: with two replicas the cores above add
    up to about the whole machine. More replicas add compute only where there are idle cores
    (or GPUs) to put them on.
  - The plain server batches across requests in one process (jobs of the same size and steps
    share one pipeline call). Two replicas split the same clients between two queues, so each
    batches fewer jobs, and every image also crosses a handle (pickled, sent between processes).
  - Ray's own processes (GCS, raylet, Serve controller and proxy, the `limner serve` driver)
    use CPU and memory of their own: see the cores and RSS lines above.
  - The Serve path adds a hop per request (HTTP proxy -> ingress replica -> engine replica and
    back) that a plain server does in one process; that is the latency ratio, and on a GPU
    render of seconds it is a small share. What a cluster buys (one engine replica per GPU,
    several nodes, autoscaling) cannot show on one 2-core machine: docs/scale-out.md says how
    to check it on a real cluster."""


def client(server: Server, key: str) -> openai.OpenAI:
    # trust_env=False: no proxy from the environment; every byte stays on 127.0.0.1.
    return openai.OpenAI(
        base_url=server.api_url,
        api_key=key,
        max_retries=0,
        timeout=600,
        http_client=httpx.Client(trust_env=False, timeout=600),
    )


def generate(sdk: openai.OpenAI, index: int, size: str) -> float:
    started = time.perf_counter()
    result = sdk.images.generate(
        model="gpt-image-1",
        prompt=PROMPTS[index % len(PROMPTS)],
        quality="low",
        size=size,
    )
    elapsed = time.perf_counter() - started
    if not (result.data and result.data[0].b64_json):
        raise SystemExit("a generation returned no image")
    return elapsed


@dataclass
class Turns:
    images: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    rates: list[float] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds by group


def throughput(
    servers: dict[str, Server], clients: dict[str, openai.OpenAI], args: argparse.Namespace
) -> dict[str, Load]:
    names = list(servers)
    turns = {name: Turns() for name in names}
    with ThreadPoolExecutor(args.clients) as pool:
        for name in names:  # warm-up: two requests per client
            list(
                pool.map(partial(generate, clients[name], size=args.size), range(2 * args.clients))
            )
        for round_ in range(args.rounds):
            for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
                turn(servers, name, clients[name], pool, args, turns[name])
    loads = {}
    for name, done in turns.items():
        cores = {group: seconds / done.seconds for group, seconds in done.cpu.items()}
        loads[name] = Load(
            done.images / done.seconds, statistics.median(done.latencies), cores, done.rates
        )
    return loads


def turn(
    servers: dict[str, Server],
    name: str,
    sdk: openai.OpenAI,
    pool: ThreadPoolExecutor,
    args: argparse.Namespace,
    done: Turns,
) -> None:
    """One server's turn: `--requests` requests, and the CPU every process used meanwhile."""
    measured = servers[name].process.pid
    others = [server.process.pid for other, server in servers.items() if other != name]

    def snapshot() -> tuple[dict[int, tuple[str, int]], int, float]:
        ticks = cpu_ticks(measured)
        for pid in others:
            for child, (_group, spent) in cpu_ticks(pid).items():
                ticks[child] = ("the idle servers", spent)
        return ticks, machine_busy(), time.process_time()

    before, machine, own = snapshot()
    started = time.perf_counter()
    latencies = list(pool.map(lambda index: generate(sdk, index, args.size), range(args.requests)))
    elapsed = time.perf_counter() - started
    after, machine_after, own_after = snapshot()
    spent: dict[str, float] = {}
    for pid, (group, ticks) in after.items():
        used = ticks - before.get(pid, (group, 0))[1]
        spent[group] = spent.get(group, 0.0) + used / TICKS
    spent["this client"] = own_after - own
    spent["everything else"] = max(0.0, (machine_after - machine) / TICKS - sum(spent.values()))
    done.images += args.requests
    done.seconds += elapsed
    done.latencies += latencies
    done.rates.append(args.requests / elapsed)
    for group, seconds in spent.items():
        done.cpu[group] = done.cpu.get(group, 0.0) + seconds


def sequential(
    plain: openai.OpenAI, ray: openai.OpenAI, args: argparse.Namespace
) -> tuple[list[float], list[float]]:
    for index in range(3):
        generate(plain, index, args.size)
        generate(ray, index, args.size)
    plain_times: list[float] = []
    ray_times: list[float] = []
    for index in range(args.sequential):
        # Alternate which goes first, so neither always follows the other's request.
        pair: list[tuple[openai.OpenAI, list[float]]] = [(plain, plain_times), (ray, ray_times)]
        for sdk, times in pair if index % 2 == 0 else reversed(pair):
            times.append(generate(sdk, index, args.size))
    print(
        f"  {args.sequential} sequential requests each, alternating: plain "
        f"{ms(plain_times)}, Serve {ms(ray_times)}"
    )
    return plain_times, ray_times


def ms(times: list[float]) -> str:
    ordered = sorted(times)
    p90 = ordered[max(1, round(0.9 * len(ordered))) - 1]
    return f"{statistics.median(ordered) * 1000:.0f} ms median ({p90 * 1000:.0f} p90)"


def report_load(name: str, load: Load) -> None:
    rounds = " ".join(f"{rate:.2f}" for rate in load.rates)
    print(f"  {name}: {load.rate:.2f} images/s (rounds: {rounds}), p50 {load.p50 * 1000:.0f} ms")
    used = ", ".join(f"{group} {value:.2f}" for group, value in load.cores.items())
    print(f"    cores used meanwhile: {used}")


def report_memory(server: Server) -> None:
    groups: dict[str, list[int]] = {}
    for pid in session_pids(server.process.pid):
        rss = rss_bytes(pid)
        if rss is not None:
            groups.setdefault(process_group(pid, server.process.pid), []).append(rss)
    total = sum(sum(values) for values in groups.values())
    count = sum(len(values) for values in groups.values())
    parts = ", ".join(
        f"{group} {len(values)}x {sum(values) / len(values) / 2**20:.0f}"
        for group, values in groups.items()
    )
    print(f"  RSS after start: {count} processes, {total / 2**30:.2f} GiB ({parts} MiB each)")


@contextmanager
def limner_serve(
    name: str, extra: list[str], key: str, work: Path, sessions: list[int]
) -> Iterator[Server]:
    """`limner serve` in a session of its own (so every Ray process it starts can be found and
    stopped), with a fresh LIMNER_HOME and Ray temp directory."""
    home = work / name
    home.mkdir()
    # Short: Ray's Unix socket paths under it must fit in 107 bytes.
    ray_tmp = tempfile.mkdtemp(prefix="lsr-", dir="/tmp")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {
        **os.environ,
        **RAY_ENV,
        "RAY_TMPDIR": ray_tmp,
        "HF_HUB_OFFLINE": "1",
        "LIMNER_HOME": str(home),
        "LIMNER_API_KEY": key,
    }
    command = [sys.executable, "-m", "limner", "serve", "--host", "127.0.0.1", "--port", str(port)]
    log = home / "server.log"
    started = time.monotonic()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*command, *extra],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    sessions.append(process.pid)
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base_url, process, log, seconds=300)
        yield Server(name, base_url + "/v1", process, log, time.monotonic() - started)
    except Exception:
        print(f"  ({name} failed; the end of its log, {log}:)\n{log.read_text()[-3000:]}")
        raise
    finally:
        killed = stop(process)
        if killed:
            print(f"  ({name}: {killed} processes outlived the server's own shutdown; killed)")
        shutil.rmtree(ray_tmp, ignore_errors=True)


def stop(process: subprocess.Popen[bytes]) -> int:
    """SIGTERM (the server stops Serve and Ray itself), then what is left of its session, by
    pid. Returns how many processes had to be killed."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    deadline = time.monotonic() + 15
    while session_pids(process.pid) and time.monotonic() < deadline:
        time.sleep(0.5)
    left = session_pids(process.pid)
    for pid in left:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return len(left)


# /proc readers: a process's session, its CPU ticks, its memory.


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Fields after the command name (which may hold spaces): state is field 3.
    return text.rsplit(")", 1)[1].split()


def session_pids(sid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields is not None and fields[0] != "Z" and int(fields[3]) == sid:
                found.append(int(entry))
    return found


def process_group(pid: int, server_pid: int) -> str:
    if pid == server_pid:
        return "limner serve (driver)" if _is_ray(server_pid) else "limner serve (one process)"
    try:
        title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        title = ""
    if "ServeReplica:limner:engine" in title:
        return "engine replicas"
    if "ServeReplica:limner:ingress" in title:
        return "ingress"
    return "Ray's own"


def _is_ray(pid: int) -> bool:
    try:
        return b"--ray" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def cpu_ticks(server_pid: int) -> dict[int, tuple[str, int]]:
    ticks: dict[int, tuple[str, int]] = {}
    for pid in session_pids(server_pid):
        fields = _stat_fields(pid)
        if fields is not None:
            # utime and stime: fields 14 and 15.
            ticks[pid] = (process_group(pid, server_pid), int(fields[11]) + int(fields[12]))
    return ticks


def machine_busy() -> int:
    values = [int(value) for value in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = values[3] + values[4]  # idle, iowait
    return sum(values[:8]) - idle


def rss_bytes(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
    except (OSError, IndexError):
        return None


if __name__ == "__main__":
    main()
