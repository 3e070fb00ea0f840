"""`limner models check`: every backend loaded and smoke-rendered, a table of what each served
name supports, and a non-zero exit for a catalog that claims what it cannot do."""

from pathlib import Path

import pytest

from limner.app import load_backend
from limner.catalog import Catalog
from limner.check import check_catalog, format_table
from tests.engine.tiny_families import build_tiny_flux, build_tiny_kontext
from tests.engine.tiny_pipeline import build_tiny_pipeline
from tests.engine.tiny_sd_families import build_tiny_sana
from tests.test_cli import limner

FAST = """
[backends.{name}]
path = "{path}"
[backends.{name}.quality]
low = {{ steps = 1, resolution = 64 }}
"""


@pytest.fixture(scope="module")
def pipelines(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("check")
    return {
        "flux": build_tiny_flux(root / "flux"),
        "kontext": build_tiny_kontext(root / "kontext"),
        # Loads, but every render fails: its text features do not fit its UNet.
        "broken": build_tiny_pipeline(root / "broken", text_hidden_size=64),
        "sana": build_tiny_sana(root / "sana"),
    }


def catalog(tmp_path: Path, pipelines: dict[str, Path], models: str, *names: str) -> Path:
    text = "".join(FAST.format(name=name, path=pipelines[name]) for name in names) + models
    path = tmp_path / "catalog.toml"
    path.write_text(text)
    return path


def table(stdout: str) -> dict[str, dict[str, str]]:
    lines = stdout.splitlines()
    header = lines[0].split()
    rows = [line.split("  ") for line in lines[1:] if line and ":" not in line.split()[0]]
    cells = [[cell.strip() for cell in row if cell.strip()] for row in rows]
    return {row[0]: dict(zip(header, row, strict=True)) for row in cells}


def test_the_embedded_model_passes(tmp_path: Path) -> None:
    checked = limner(tmp_path, "models", "check")
    assert checked.returncode == 0, checked.stderr
    row = table(checked.stdout)[
        "limner-mini, gpt-image-1, gpt-image-1-mini, gpt-image-1.5, dall-e-2, dall-e-3"
    ]
    assert row["generate"] == "yes"
    assert row["edit"] == "img2img (grid)"
    assert row["mask"] == "inpaint"
    assert row["previews"] == "yes"
    assert "text2img ok" in checked.stdout and "inpaint ok" in checked.stdout


def test_one_name_on_two_backends(tmp_path: Path, pipelines: dict[str, Path]) -> None:
    """In-process, through the loader `limner serve` uses (the CLI is covered above)."""
    models = '[models.gpt-image-1]\nbackend = "flux"\nedit_backend = "kontext"\n'
    served = Catalog.from_toml(catalog(tmp_path, pipelines, models, "flux", "kontext"))
    report = check_catalog(served, load_backend)
    assert report.ok, report.problems
    row = table(format_table(report.rows))["gpt-image-1"]
    assert (row["generate"], row["edit"], row["mask"], row["previews"]) == (
        "yes",
        "instruct <=1",
        "inpaint",
        "yes",
    )
    assert row["backends"] == "flux (FluxPipeline) / kontext (FluxKontextPipeline)"
    assert set(report.backends["kontext"].checks) == {"text2img", "inpaint", "edit"}


def test_a_backend_whose_renders_fail_fails_the_check(
    tmp_path: Path, pipelines: dict[str, Path]
) -> None:
    models = '[models.gpt-image-1]\nbackend = "broken"\n'
    checked = limner(
        tmp_path,
        "models",
        "check",
        "--catalog",
        str(catalog(tmp_path, pipelines, models, "broken")),
    )
    assert checked.returncode == 1
    assert table(checked.stdout)["gpt-image-1"]["generate"] == "FAILED"
    assert "problem: backend 'broken': text2img failed: RuntimeError" in checked.stderr


def test_an_edit_backend_that_cannot_edit_fails_the_check(
    tmp_path: Path, pipelines: dict[str, Path]
) -> None:
    models = '[models.gpt-image-1]\nbackend = "flux"\nedit_backend = "sana"\n'
    text = catalog(tmp_path, pipelines, models, "flux", "sana").read_text()
    path = tmp_path / "claims.toml"
    path.write_text(
        text.replace("[backends.sana.quality]", "max_edit_images = 2\n[backends.sana.quality]")
    )
    report = check_catalog(Catalog.from_toml(path), load_backend)
    assert report.problems == [
        "backend 'sana': max_edit_images = 2, but SanaPipeline cannot edit",
        "model 'gpt-image-1': edit_backend 'sana' (SanaPipeline) cannot edit",
    ]
    row = table(format_table(report.rows))["gpt-image-1"]
    assert (row["generate"], row["edit"], row["mask"]) == ("yes", "-", "-")
