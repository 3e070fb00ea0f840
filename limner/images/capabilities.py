"""What a served name can do, from its catalog routes and its backends' declared abilities.

One answer for the service (refusing what cannot run, before moderation and metering), for
`/v1/models` and `/healthz` (shown to clients and operators) and for `limner models check`.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from limner.catalog import ModelEntry
from limner.engine.types import BackendInfo, EditKind

# How an edit's mask is honoured: by the backend's inpainting twin, or by putting the input's
# pixels back outside the mask after an unmasked edit.
MaskSupport = Literal["inpaint", "composite"]


@dataclass(frozen=True)
class Capabilities:
    # The backend generations run on; None: the name only edits.
    generate_backend: str | None
    # The backend edits and variations run on; None: the name cannot edit.
    edit_backend: str | None
    edit_kind: EditKind
    # Input images one edit takes; None: any number (laid out in a grid).
    max_edit_images: int | None
    mask: MaskSupport | None

    def routes(self) -> dict[str, str | None]:
        """The backend behind each operation (for operators: /healthz)."""
        return {"generations": self.generate_backend, "edits": self.edit_backend}


def capabilities(entry: ModelEntry, backends: Mapping[str, BackendInfo]) -> Capabilities:
    served = entry.served
    generator = backends[served.backend_for("generation").name]
    editor = backends[served.backend_for("edit").name]
    edits = editor.edit_kind != "none"
    return Capabilities(
        generate_backend=generator.name if "text2img" in generator.tasks else None,
        edit_backend=editor.name if edits else None,
        edit_kind=editor.edit_kind,
        max_edit_images=editor.max_edit_images if edits else None,
        mask=("inpaint" if "inpaint" in editor.tasks else "composite") if edits else None,
    )
