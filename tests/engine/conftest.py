"""Engine fixtures: the tiny Stable Diffusion pipeline (built once per session) and the shipped
limner-mini, each loaded as a backend."""

import os

# Before diffusers/transformers import huggingface_hub, which reads this once: a test that
# reached for the Hub would fail here instead of downloading.
os.environ["HF_HUB_OFFLINE"] = "1"

from pathlib import Path

import pytest

import limner
from limner.engine.diffusers_backend import DiffusersBackend
from tests.engine.tiny_pipeline import build_tiny_pipeline


@pytest.fixture(scope="session")
def tiny_pipeline_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_pipeline(tmp_path_factory.mktemp("tiny-sd") / "pipeline")


@pytest.fixture(scope="session")
def tiny_backend(tiny_pipeline_path: Path) -> DiffusersBackend:
    """Loaded once: backends are built to serve many renders, and loading costs more than one."""
    return DiffusersBackend("tiny-sd", tiny_pipeline_path, device="cpu")


# The limner-mini the package ships (trained weights): what `limner serve` serves by default.
SHIPPED_MINI = Path(limner.__file__).parent / "assets" / "limner-mini"


@pytest.fixture(scope="session")
def shipped_mini() -> DiffusersBackend:
    """Trained, unlike the tiny test pipelines, so its intermediate states differ visibly."""
    return DiffusersBackend("limner-mini", SHIPPED_MINI, device="cpu")
