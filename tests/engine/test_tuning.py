"""The catalog's GPU knobs on the CPU, where they can run: the attention backend, compiling the
denoiser with a warm-up, an operator's edit-image limit; offload is refused off a GPU."""

from pathlib import Path

import pytest

from limner.engine.devices import DeviceUnavailable
from limner.engine.diffusers_backend import DiffusersBackend, Tuning
from limner.engine.types import RenderJob
from tests.engine.tiny_families import build_tiny_kontext


def job(**fields: object) -> RenderJob:
    values: dict[str, object] = {
        "backend": "tiny",
        "prompt": "a dot",
        "n": 1,
        "width": 32,
        "height": 32,
        "steps": 2,
        "seed": 5,
    }
    return RenderJob(**{**values, **fields})  # type: ignore[arg-type]


def pixels(backend: DiffusersBackend) -> bytes:
    return backend.render(job(), lambda _step: None)[0].tobytes()


def test_native_attention_backend_renders_the_same_picture(
    tiny_pipeline_path: Path, tiny_backend: DiffusersBackend
) -> None:
    chosen = DiffusersBackend(
        "tiny", tiny_pipeline_path, device="cpu", tuning=Tuning(attention_backend="native")
    )
    assert pixels(chosen) == pixels(tiny_backend)


def test_unknown_attention_backend_is_refused_at_start(tiny_pipeline_path: Path) -> None:
    with pytest.raises(DeviceUnavailable, match=r"Unknown attention_backend 'flashy'.*native"):
        DiffusersBackend(
            "tiny", tiny_pipeline_path, device="cpu", tuning=Tuning(attention_backend="flashy")
        )


@pytest.mark.parametrize("offload", ["model", "sequential"])
def test_offload_needs_a_gpu(tiny_pipeline_path: Path, offload: str) -> None:
    with pytest.raises(DeviceUnavailable, match="set device = 'cuda'"):
        DiffusersBackend(
            "tiny",
            tiny_pipeline_path,
            device="cpu",
            tuning=Tuning(offload=offload),  # type: ignore[arg-type]
        )


def test_compiled_denoiser_warms_up_and_renders(tiny_pipeline_path: Path) -> None:
    """torch.compile's "eager" backend: the same tracing and wiring as inductor, without its
    minutes of kernel generation on a CPU (bench/gpu.py measures inductor on a GPU)."""

    backend = DiffusersBackend(
        "tiny",
        tiny_pipeline_path,
        device="cpu",
        tuning=Tuning(compile=True, compile_backend="eager"),
    )
    denoiser = backend._base.unet
    assert denoiser._compiled_call_impl is not None  # nn.Module.compile, in place
    backend.warm_up([(32, 32)])
    assert len(backend.render(job(n=2), lambda _step: None)) == 2


def test_operator_sets_how_many_images_an_edit_takes(tmp_path: Path) -> None:
    path = build_tiny_kontext(tmp_path / "kontext")
    assert DiffusersBackend("k", path, device="cpu").info().max_edit_images == 1
    assert DiffusersBackend("k", path, device="cpu", max_edit_images=2).info().max_edit_images == 2
