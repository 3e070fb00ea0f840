"""Device, dtype and CPU-thread choices for the engine, made in one place."""

import logging

import torch

logger = logging.getLogger(__name__)

_DTYPES: dict[str, torch.dtype] = {
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float32": torch.float32,
}


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
        raise ValueError(
            f"Unknown device {requested!r}: use 'auto', 'cpu', 'cuda' or 'cuda:N'."
        ) from error
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"Device {requested!r} requested, but CUDA is not available.")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(
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
        raise ValueError(
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
