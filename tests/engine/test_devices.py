from collections.abc import Iterator

import pytest
import torch

from limner.engine.devices import (
    DeviceUnavailable,
    choose_device,
    choose_dtype,
    dtype_name,
    set_cpu_threads,
)

needs_no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")


def test_auto_device_is_cuda_when_present_else_cpu() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert choose_device("auto").type == expected


def test_cpu_is_honoured() -> None:
    assert choose_device("cpu") == torch.device("cpu")


@needs_no_cuda
@pytest.mark.parametrize("requested", ["cuda", "cuda:1"])
def test_cuda_without_a_gpu_is_refused_at_start(requested: str) -> None:
    with pytest.raises(DeviceUnavailable, match="no CUDA device"):
        choose_device(requested)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_index_beyond_the_machine_is_refused() -> None:
    with pytest.raises(DeviceUnavailable, match="GPU"):
        choose_device(f"cuda:{torch.cuda.device_count()}")


@pytest.mark.parametrize("requested", ["gpu", "cuda:x", ""])
def test_unknown_device_is_refused(requested: str) -> None:
    with pytest.raises(DeviceUnavailable, match="Unknown device"):
        choose_device(requested)


@pytest.mark.parametrize(
    ("device", "expected"),
    [("cpu", torch.float32), ("cuda", torch.float16), ("cuda:1", torch.float16)],
)
def test_auto_dtype_follows_the_device(device: str, expected: torch.dtype) -> None:
    # torch.device("cuda") is only a name: no GPU is needed to choose its dtype.
    assert choose_dtype(torch.device(device)) is expected


@pytest.mark.parametrize(
    ("requested", "expected"),
    [("float16", torch.float16), ("bfloat16", torch.bfloat16), ("float32", torch.float32)],
)
def test_explicit_dtype_is_honoured_on_any_device(requested: str, expected: torch.dtype) -> None:
    assert choose_dtype(torch.device("cpu"), requested) is expected
    assert choose_dtype(torch.device("cuda"), requested) is expected


@pytest.mark.parametrize("requested", ["fp16", "half", "float64", "int8"])
def test_unknown_dtype_is_refused(requested: str) -> None:
    with pytest.raises(DeviceUnavailable, match="Unknown dtype"):
        choose_dtype(torch.device("cpu"), requested)


@pytest.mark.parametrize("name", ["float16", "bfloat16", "float32"])
def test_dtype_name_round_trips(name: str) -> None:
    assert dtype_name(choose_dtype(torch.device("cpu"), name)) == name


@pytest.fixture
def restore_threads() -> Iterator[int]:
    before = torch.get_num_threads()
    yield before
    torch.set_num_threads(before)


def test_no_thread_count_leaves_torch_default(restore_threads: int) -> None:
    set_cpu_threads(None)
    assert torch.get_num_threads() == restore_threads


def test_explicit_thread_count_is_applied(restore_threads: int) -> None:
    set_cpu_threads(1)
    assert torch.get_num_threads() == 1


def test_thread_count_below_one_is_refused(restore_threads: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        set_cpu_threads(0)
    assert torch.get_num_threads() == restore_threads
