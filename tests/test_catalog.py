from pathlib import Path

import pytest

from limner.catalog import Catalog, CatalogError
from limner.errors import ModelNotFound


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "catalog.toml"
    path.write_text(text)
    return path


def test_toml_catalog_maps_names_and_aliases(tmp_path: Path) -> None:
    catalog = Catalog.from_toml(
        write(
            tmp_path,
            """
[backends.turbo]
path = "models/turbo"
guidance_scale = 0.0
[backends.turbo.quality]
low = { steps = 1, resolution = 512 }

[models.sd-turbo]
backend = "turbo"
aliases = ["gpt-image-1", "dall-e-3"]
auto_quality = "medium"
""",
        )
    )
    entry = catalog.resolve("dall-e-3")
    assert entry.rules == "dall-e-3"
    assert catalog.resolve("sd-turbo").rules == "gpt-image-1"
    backend = entry.served.backend
    assert backend.path == (tmp_path / "models/turbo").resolve()
    assert backend.tiers["low"].steps == 1
    assert backend.tiers["high"].steps == 25  # default tier kept
    assert backend.guidance_scale == 0.0
    assert entry.served.auto_quality == "medium"
    with pytest.raises(ModelNotFound):
        catalog.resolve("dall-e-2")


@pytest.mark.parametrize(
    "text",
    [
        "[models.a]\nbackend = 'missing'\n[backends.b]\npath = 'x'",
        "[backends.b]\npath = 'x'",
        "[backends.b]\n[models.a]\nbackend = 'b'",
        "[backends.b]\npath = 'x'\n[backends.b.quality]\nultra = { steps = 1, resolution = 8 }\n"
        "[models.a]\nbackend = 'b'",
        "[backends.b]\npath = 'x'\n[models.a]\nbackend = 'b'\nrules = 'gpt-9'",
        "[backends.b]\npath = 'x'\n[models.a]\nbackend = 'b'\naliases = ['a']",
        "[backends.b]\npath = 'x'\n[models.a]\nbackend = 'b'\nedit_backend = 'kontext'",
        "[backends.b]\npath = 'x'\nmax_edit_images = 0\n[models.a]\nbackend = 'b'",
        "[backends.b]\npath = 'x'\noffload = 'gpu'\n[models.a]\nbackend = 'b'",
        "not toml [",
    ],
)
def test_malformed_catalogs_are_refused(tmp_path: Path, text: str) -> None:
    with pytest.raises(CatalogError):
        Catalog.from_toml(write(tmp_path, text))


def test_one_name_may_edit_on_another_backend(tmp_path: Path) -> None:
    catalog = Catalog.from_toml(
        write(
            tmp_path,
            """
[backends.flux-dev]
path = "flux-dev"
dtype = "bfloat16"
[backends.kontext]
path = "kontext"
max_edit_images = 2
offload = "model"
attention_backend = "flash"
compile = true

[models.gpt-image-1]
backend = "flux-dev"
edit_backend = "kontext"
""",
        )
    )
    served = catalog.resolve("gpt-image-1").served
    assert served.backend_for("generation").name == "flux-dev"
    assert served.backend_for("edit").name == served.backend_for("variation").name == "kontext"
    assert [spec.name for spec in catalog.backends()] == ["flux-dev", "kontext"]
    kontext = served.backend_for("edit")
    assert (kontext.max_edit_images, kontext.offload, kontext.attention_backend) == (
        2,
        "model",
        "flash",
    )
    assert kontext.compile and kontext.compile_backend == "inductor"


def test_working_size_keeps_aspect_and_area() -> None:
    backend = Catalog.single_backend(Path("/models/x")).resolve("gpt-image-1").served.backend
    assert backend.working_size("low", 1024, 1024) == (512, 512)
    width, height = backend.working_size("low", 1536, 1024)
    assert (width, height) == (624, 416)
    assert width % 8 == 0 and height % 8 == 0
    # never above the requested area
    assert backend.working_size("low", 256, 256) == (256, 256)


def test_single_backend_serves_every_openai_name() -> None:
    catalog = Catalog.single_backend(Path("/models/x"))
    assert {entry.id for entry in catalog.entries()} == {
        "gpt-image-1",
        "gpt-image-1-mini",
        "gpt-image-1.5",
        "dall-e-2",
        "dall-e-3",
    }
    assert {entry.owned_by for entry in catalog.entries()} == {"system"}
