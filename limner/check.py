"""`limner models check`: load every backend of a catalog, smoke-render each task it offers, and
report what each served name supports; a catalog that claims what it cannot do fails."""

from collections.abc import Callable
from dataclasses import dataclass, field

from limner.catalog import BackendSpec, Catalog
from limner.engine.protocol import ImageBackend
from limner.engine.smoke import TaskCheck, smoke_test
from limner.engine.types import BackendInfo
from limner.images.capabilities import Capabilities, capabilities


@dataclass
class BackendReport:
    spec: BackendSpec
    info: BackendInfo
    checks: dict[str, TaskCheck]

    def works(self, task: str) -> bool:
        check = self.checks.get(task)
        return check is not None and check.ok


@dataclass
class Report:
    backends: dict[str, BackendReport]
    rows: list[dict[str, str]]
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_catalog(
    catalog: Catalog, load: Callable[[BackendSpec], ImageBackend], size: int = 64
) -> Report:
    backends: dict[str, BackendReport] = {}
    problems: list[str] = []
    for spec in catalog.backends():
        backend = load(spec)
        info = backend.info()
        checks: dict[str, TaskCheck] = {check.task: check for check in smoke_test(backend, size)}
        backends[spec.name] = BackendReport(spec, info, checks)
        for check in checks.values():
            if not check.ok:
                problems.append(f"backend {spec.name!r}: {check.task} failed: {check.problem}")
        if spec.max_edit_images is not None and info.edit_kind == "none":
            problems.append(
                f"backend {spec.name!r}: max_edit_images = {spec.max_edit_images}, but "
                f"{info.family} cannot edit"
            )
    infos = {name: report.info for name, report in backends.items()}
    rows = []
    names: dict[str, list[str]] = {}
    for entry in catalog.entries():
        names.setdefault(entry.served.name, []).append(entry.id)
    for entry in catalog.entries():
        if entry.id != entry.served.name:
            continue  # an alias: the same capabilities, listed on its served model's row
        found = capabilities(entry, infos)
        edit_spec = entry.served.edit_backend
        if edit_spec is not None and found.edit_backend is None:
            problems.append(
                f"model {entry.id!r}: edit_backend {edit_spec.name!r} "
                f"({infos[edit_spec.name].family}) cannot edit"
            )
        if found.generate_backend is None and found.edit_backend is None:
            problems.append(f"model {entry.id!r} can neither generate nor edit")
        rows.append(_row(", ".join(names[entry.id]), found, backends))
    return Report(backends, rows, problems)


def _row(name: str, found: Capabilities, backends: dict[str, BackendReport]) -> dict[str, str]:
    generator = backends.get(found.generate_backend or "")
    editor = backends.get(found.edit_backend or "")
    edit = "-"
    if editor is not None:
        limit = found.max_edit_images
        kind = f"{found.edit_kind} <={limit}" if limit else f"{found.edit_kind} (grid)"
        edit = kind if _edit_works(editor) else f"{kind} FAILED"
    generate = "-"
    if generator is not None:
        generate = "yes" if generator.works("text2img") else "FAILED"
    mask: str = found.mask or "-"
    if found.mask == "inpaint" and editor is not None and not editor.works("inpaint"):
        mask = "inpaint FAILED"
    shown = [report for report in (generator, editor) if report is not None]
    previews = "yes" if shown and all(_previews(report) for report in shown) else "no"
    routes = " / ".join(dict.fromkeys(f"{r.spec.name} ({r.info.family})" for r in shown))
    first = shown[0].info if shown else None
    return {
        "names": name,
        "generate": generate,
        "edit": edit,
        "mask": mask,
        "previews": previews,
        # Open models draw no alpha: a transparent background is cut out after rendering.
        "transparency": "cutout" if shown else "-",
        "device": first.device if first else "-",
        "dtype": first.dtype if first else "-",
        "backends": routes or "-",
    }


def _edit_works(report: BackendReport) -> bool:
    task = "edit" if report.info.edit_kind == "instruct" else "img2img"
    return report.works(task)


def _previews(report: BackendReport) -> bool:
    return any(check.previews for check in report.checks.values())


def format_table(rows: list[dict[str, str]]) -> str:
    if not rows:
        return ""
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(row[c]) for row in rows)) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns).rstrip()]
    lines += ["  ".join(row[c].ljust(widths[c]) for c in columns).rstrip() for row in rows]
    return "\n".join(lines)
