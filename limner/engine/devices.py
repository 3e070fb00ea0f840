"""Device, dtype and CPU-thread choices for the engine, made in one place."""

import logging
import statistics
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from limner.errors import StartupError

logger = logging.getLogger(__name__)

_DTYPES: dict[str, torch.dtype] = {
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float32": torch.float32,
}


class DeviceUnavailable(StartupError):
    """The configured device or dtype does not exist here; the server cannot start on it."""


def choose_device(requested: str = "auto") -> torch.device:
    """The device to run on: `"auto"` picks CUDA when present, else the CPU.

    An explicit `"cpu"`, `"cuda"`, `"cuda:1"`, ... is honoured, and refused if it names a GPU
    this machine does not have, so a misconfigured server fails at start, not on first request.
    """
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(requested)
    except RuntimeError as error:
        raise DeviceUnavailable(
            f"Unknown device {requested!r}: use 'auto', 'cpu', 'cuda' or 'cuda:N'."
        ) from error
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceUnavailable(
                f"Device {requested!r} requested, but this machine has no CUDA device "
                "(or this PyTorch build has no CUDA support): set device = 'cpu' or 'auto'."
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceUnavailable(
                f"Device {requested!r} requested, but this machine has "
                f"{torch.cuda.device_count()} GPU(s)."
            )
    return device


def choose_dtype(device: torch.device, requested: str = "auto") -> torch.dtype:
    """The weight dtype: `"auto"` is float16 on CUDA (half the memory, tensor cores) and float32
    elsewhere (CPU kernels for half precision are slow or missing)."""
    if requested == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    if requested not in _DTYPES:
        raise DeviceUnavailable(
            f"Unknown dtype {requested!r}: use 'auto', {', '.join(map(repr, _DTYPES))}."
        )
    return _DTYPES[requested]


def dtype_name(dtype: torch.dtype) -> str:
    """`torch.float16` → `"float16"`, the spelling `choose_dtype` accepts."""
    return str(dtype).removeprefix("torch.")


def set_cpu_threads(threads: int | None) -> None:
    """Set torch's intra-op CPU thread count, or leave torch's default when `threads` is None.

    torch already uses one thread per physical core; an explicit count is for sharing a machine
    (several servers, or a web process that needs a core of its own).
    """
    if threads is None:
        return
    if threads < 1:
        raise ValueError(f"CPU thread count must be at least 1, got {threads}.")
    torch.set_num_threads(threads)
    logger.info("torch CPU threads set to %d", threads)


# A pipeline call that took at least this long on every thread has operations big enough to
# share among threads; trying it on one would cost many seconds for nothing.
_SHARED_CALL_S = 1.0
# Calls timed at each thread count before a call size settles on the faster.
_TRIALS = 3


class CallThreads:
    """How many CPU threads each pipeline call of one backend runs on, learned per call size.

    torch runs every operation on all of its threads. A small model's operations are too small
    to pay for waking the others: on a 2-core host limner-mini renders one image in 80 ms on one
    thread and 126 ms on two, while a batch of 8 is faster on two. So each call size (images per
    call) first runs on all `most` threads; while such calls stay under a second, the size
    alternates between one thread and all of them for three calls each, then keeps the faster
    median for good.
    """

    def __init__(self, most: int) -> None:
        self.most = most
        self._samples: defaultdict[tuple[int, int], list[float]] = defaultdict(list)
        self._settled: dict[int, int] = {}

    def choose(self, images: int) -> int:
        if self.most == 1:
            return 1
        if images in self._settled:
            return self._settled[images]
        shared, single = self._samples[images, self.most], self._samples[images, 1]
        return self.most if len(shared) <= len(single) else 1

    def record(self, images: int, threads: int, seconds: float) -> None:
        """A completed call's duration (a cancelled one says nothing of the thread count)."""
        if self.most == 1 or images in self._settled:
            return
        self._samples[images, threads].append(seconds)
        if threads == self.most and seconds >= _SHARED_CALL_S:
            self._settle(images, self.most)
            return
        shared, single = self._samples[images, self.most], self._samples[images, 1]
        if len(shared) >= _TRIALS and len(single) >= _TRIALS:
            faster = 1 if statistics.median(single) < statistics.median(shared) else self.most
            self._settle(images, faster)

    def _settle(self, images: int, threads: int) -> None:
        self._settled[images] = threads
        logger.info("calls of %d image(s) run on %d CPU thread(s)", images, threads)


@contextmanager
def cpu_threads(threads: int) -> Iterator[None]:
    """Run the block's torch CPU operations on `threads` threads, then restore the count."""
    previous = torch.get_num_threads()
    if threads == previous:
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
