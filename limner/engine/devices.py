"""Device, dtype and CPU-thread choices for the engine, made in one place."""

import logging
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
    """The weight dtype: `"auto"` is bfloat16 on a CUDA device that has it (half the memory,
    tensor cores, and float32's range: FLUX, SD3 and Qwen-Image overflow float16's), float16
    on older GPUs, and float32 elsewhere (CPU kernels for half precision are slow or missing)."""
    if requested == "auto":
        if device.type != "cuda":
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
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
