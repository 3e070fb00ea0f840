"""The `limner` command: serve, keys, db, models. Thin: it assembles parts and prints."""

import errno
import os
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from limner.accounts.keys import KeyStore
from limner.accounts.orgs import OPERATOR_ORGANIZATION_ID, AdminKeys, Organizations, Projects
from limner.errors import ConfigurationError, LimnerError, StartupError
from limner.logs import LogFormat
from limner.settings import Settings
from limner.storage.db import Database, make_engine, upgrade

# pretty_exceptions off: an error is one line (main), or with --debug a plain traceback to paste.
app = typer.Typer(
    help="Limner: a self-hosted OpenAI Images API.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
keys_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)
orgs_app = typer.Typer(help="Organizations: create, verify, set tiers.", no_args_is_help=True)
projects_app = typer.Typer(help="Projects of an organization.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
models_app = typer.Typer(help="Served models.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(orgs_app, name="orgs")
app.add_typer(projects_app, name="projects")
app.add_typer(db_app, name="db")
app.add_typer(models_app, name="models")

# Where `limner generate` finds a server when told none: `limner serve`'s defaults.
DEFAULT_SERVER = "http://127.0.0.1:8000/v1"
# Where `limner serve` saves the project key it creates on a fresh install, for `limner generate`.
FIRST_KEY_FILE = "api-key"


@dataclass
class _Run:
    debug: bool = False


_run = _Run()


@app.callback()
def _root(
    debug: Annotated[
        bool,
        typer.Option("--debug", envvar="LIMNER_DEBUG", help="Show the traceback of an error."),
    ] = False,
) -> None:
    _run.debug = debug


HomeOption = Annotated[
    Path | None, typer.Option(help="Data directory (default $LIMNER_HOME or ~/.limner).")
]


def _settings(home: Path | None = None, **overrides: object) -> Settings:
    """Settings from the environment and the options; a refused value ends the command with
    what to change, not a traceback."""
    values = {key: value for key, value in overrides.items() if value is not None}
    if home is not None:
        values["home"] = home
    try:
        return Settings(**values)  # type: ignore[arg-type]
    except ValidationError as exc:
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"])
            message = error["msg"].removeprefix("Value error, ")
            typer.echo(f"limner: {field}: {message}", err=True)
        raise typer.Exit(2) from exc


OrgOption = Annotated[
    str, typer.Option("--org", help="Organization id (default: the operator's own).")
]


def _database(settings: Settings) -> Database:
    settings.prepare_home()
    database = Database(make_engine(settings.resolved_database_url))
    upgrade(database.engine)
    Organizations(database).bootstrap(None, None)
    return database


def _fail(error: LimnerError) -> typer.Exit:
    typer.echo(f"limner: {error.message}", err=True)
    return typer.Exit(1)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    model: Annotated[
        Path | None, typer.Option(help="A diffusers pipeline directory served under every name.")
    ] = None,
    catalog: Annotated[Path | None, typer.Option(help="A TOML catalog of served models.")] = None,
    home: HomeOption = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error.")] = "info",
    log_format: Annotated[
        LogFormat,
        typer.Option(
            envvar="LIMNER_LOG_FORMAT",
            help="text lines, or json lines (one object per record) for a log pipeline.",
        ),
    ] = "text",
    ray: Annotated[
        bool, typer.Option("--ray", help="Run on Ray Serve (the `ray` extra): docs/scale-out.md.")
    ] = False,
    ray_address: Annotated[
        str | None,
        typer.Option(help="Join this Ray cluster (e.g. ray://head:10001); default: start one."),
    ] = None,
    ray_metrics_port: Annotated[
        int | None,
        typer.Option(help="With --ray: the port Ray exports every replica's metrics on."),
    ] = None,
    ray_plan: Annotated[
        Path | None,
        typer.Option(help="With --ray: a TOML cluster plan (replicas, CPUs, GPUs, autoscaling)."),
    ] = None,
    engine_replicas: Annotated[
        int | None, typer.Option(min=1, help="With --ray: engine replicas per catalog backend.")
    ] = None,
    ingress_replicas: Annotated[
        int | None, typer.Option(min=1, help="With --ray: replicas of the HTTP app.")
    ] = None,
    engine_cpus: Annotated[
        float | None, typer.Option(help="With --ray: CPUs each engine replica reserves.")
    ] = None,
    engine_gpus: Annotated[
        float | None,
        typer.Option(
            min=0,
            help="With --ray: GPUs each engine replica reserves (default: one where its "
            "device is CUDA, or auto on a cluster with GPUs).",
        ),
    ] = None,
) -> None:
    """Start the HTTP server."""
    import uvicorn

    from limner import logs
    from limner.api.middleware import RequestIdLogFilter
    from limner.app import create_app

    logs.configure(log_level, log_format, RequestIdLogFilter())
    logs.route_library_logs()
    settings = _settings(home, model_path=model, catalog=catalog)
    _check_port_free(host, port)  # before the model loads: a taken port is told in a second
    if ray:
        flags = {
            "engine_replicas": engine_replicas,
            "ingress_replicas": ingress_replicas,
            "engine_cpus": engine_cpus,
            "engine_gpus": engine_gpus,
        }
        _serve_on_ray(settings, host, port, ray_address, ray_plan, flags, ray_metrics_port)
        return
    application = create_app(settings)
    if settings.api_key is None:
        _announce_first_key(application.state.projects, settings.home, host, port)
    # No request timeout at all: a slow CPU generation is never cut. On SIGTERM uvicorn stops
    # accepting and lets in-flight requests finish for up to 30 s, then cancels them (a
    # cancelled render is released, never billed) before the engine shuts down.
    # log_config=None: uvicorn's records go through the handler above, in the same format;
    # its access log is off because Limner logs one line per request itself, with the id.
    uvicorn.run(
        application,
        host=host,
        port=port,
        log_level=log_level,
        log_config=None,
        access_log=False,
        timeout_keep_alive=30,
        timeout_graceful_shutdown=30,
    )


def _serve_on_ray(
    settings: Settings,
    host: str,
    port: int,
    address: str | None,
    plan_file: Path | None,
    flags: Mapping[str, object],
    metrics_port: int | None,
) -> None:
    try:
        from limner.scaleout import launch
    except ImportError as exc:
        raise ConfigurationError(
            f'--ray needs Ray Serve, which is not installed ({exc.name}): pip install -e ".[ray]"'
        ) from exc
    from limner.app import load_catalog
    from limner.storage.db import make_engine, upgrade

    given = {name: value for name, value in flags.items() if value is not None}
    plan = (
        launch.ClusterPlan.from_toml(plan_file, **given)
        if plan_file
        else launch.ClusterPlan.parse(given)
    )
    settings.prepare_home()
    # Migrated once, here; the replicas only check the revision.
    database = make_engine(settings.resolved_database_url)
    upgrade(database)
    database.dispose()
    launch.run(
        settings,
        load_catalog(settings),
        plan,
        host=host,
        port=port,
        address=address,
        metrics_port=metrics_port,
    )


def _check_port_free(host: str, port: int) -> None:
    """Bind as uvicorn will (SO_REUSEADDR), so a port in use is one line now, not a log
    record after the model has loaded."""
    try:
        family, kind, proto, _name, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise ConfigurationError(
            f"cannot listen on {host!r}: {exc.strerror}; check --host."
        ) from exc
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ConfigurationError(
                    f"port {port} on {host} is already in use (another `limner serve`?): stop "
                    "that process or pass --port N."
                ) from exc
            raise ConfigurationError(f"cannot listen on {host}:{port}: {exc.strerror}.") from exc


def _announce_first_key(projects: Projects, home: Path, host: str, port: int) -> None:
    """On a fresh install (no usable project key, none configured), make one for the Default
    project, show it once on the console, and save it (owner-only) for `limner generate`."""
    key = projects.create_first_key()
    if key is None:
        return
    saved = home / FIRST_KEY_FILE
    descriptor = os.open(saved, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)  # a file left from an earlier install keeps its mode otherwise
    with os.fdopen(descriptor, "w") as file:
        file.write(key + "\n")
    base_url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}/v1"
    server = "" if base_url == DEFAULT_SERVER else f" --server {base_url}"
    typer.echo(
        f"\nlimner: a project key for the Default project, shown once (saved to {saved}):\n\n"
        f"    {key}\n\n"
        f'  limner generate "a lighthouse at dusk"{server}   # uses the saved key\n'
        f"  export OPENAI_BASE_URL={base_url} OPENAI_API_KEY={key}   # for the openai SDK\n"
        "  More keys: limner keys create --name NAME; revoke: limner keys revoke ID\n",
        err=True,
    )


def _saved_key(home: Path) -> str | None:
    try:
        return (home / FIRST_KEY_FILE).read_text().strip() or None
    except OSError:
        return None


@app.command()
def generate(
    prompt: Annotated[str, typer.Argument(help="What to draw.")],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Image file; with --n 2+, numbered.")
    ] = Path("image.png"),
    model: Annotated[str, typer.Option(help="Served model name.")] = "gpt-image-1",
    size: Annotated[str, typer.Option(help="1024x1024, 1536x1024, 1024x1536 or auto.")] = "auto",
    quality: Annotated[str, typer.Option(help="low, medium, high or auto.")] = "auto",
    n: Annotated[int, typer.Option("--n", help="How many images.")] = 1,
    partial_images: Annotated[
        int, typer.Option(help="Partial images to stream (0-3); they drive the progress bar.")
    ] = 3,
    server: Annotated[
        str, typer.Option(envvar="LIMNER_URL", help="The server's API base URL.")
    ] = DEFAULT_SERVER,
    api_key: Annotated[
        str | None,
        typer.Option(
            envvar="LIMNER_API_KEY",
            help="A project key (default: the one `limner serve` saved, then OPENAI_API_KEY).",
        ),
    ] = None,
    home: HomeOption = None,
) -> None:
    """Generate an image on a running server, showing progress as partial images arrive."""
    import base64

    from limner.remote import RequestFailed, ServerUnavailable, stream_generation

    api_key = api_key or _saved_key(_settings(home).home) or os.environ.get("OPENAI_API_KEY")
    if not api_key:
        typer.echo(
            "limner: no API key: pass --api-key or set LIMNER_API_KEY (`limner keys create` "
            "makes one; `limner serve` saves one on its first start).",
            err=True,
        )
        raise typer.Exit(2)
    body = {
        "model": model,
        "prompt": prompt,
        "size": size,
        "quality": quality,
        "n": n,
        "partial_images": partial_images,
    }
    paths = [output] if n == 1 else [output.with_stem(f"{output.stem}-{i}") for i in range(n)]
    suffix = output.suffix.lower().lstrip(".")
    if suffix in ("png", "jpeg", "jpg", "webp") and model.startswith("gpt-image"):
        body["output_format"] = "jpeg" if suffix == "jpg" else suffix
    # One tick per partial image of each image and one per finished image.
    ticks = n * (partial_images + 1)
    saved: list[Path] = []
    try:
        # On stderr: stdout carries only the saved paths, for scripts.
        with typer.progressbar(length=ticks, label="generating", file=sys.stderr) as bar:
            for event in stream_generation(server, api_key, body):
                if event.get("type", "").endswith(".completed"):
                    path = paths[len(saved)]
                    path.write_bytes(base64.b64decode(event["b64_json"]))
                    saved.append(path)
                bar.update(1)
    except ServerUnavailable as exc:
        typer.echo(
            f"limner: no server answers at {server}. Start one with `limner serve` (it listens "
            "on http://127.0.0.1:8000), or point --server / LIMNER_URL at yours.",
            err=True,
        )
        raise typer.Exit(1) from exc
    except RequestFailed as exc:
        code = exc.error.get("code") or exc.error.get("type") or exc.status
        typer.echo(f"limner: the server refused the request ({code}): {exc}", err=True)
        raise typer.Exit(1) from exc
    for path in saved:
        typer.echo(str(path))


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="A label for the key.")] = "default",
    admin: Annotated[bool, typer.Option(help="An admin key (admin endpoints only).")] = False,
    organization: OrgOption = OPERATOR_ORGANIZATION_ID,
    project: Annotated[
        str | None, typer.Option(help="Project id (default: the organization's Default project).")
    ] = None,
    home: HomeOption = None,
) -> None:
    """Create an API key and print it once; only its hash is stored."""
    database = _database(_settings(home))
    try:
        if admin:
            record, key = AdminKeys(database).create(organization, name)
        else:
            projects = Projects(database)
            project = project or projects.default_project(organization).id
            record, key = projects.create_key(organization, project, name)
    except LimnerError as error:
        raise _fail(error) from error
    typer.echo(key)
    typer.echo(f"created {record.id} ({record.name}); this key is not shown again", err=True)


@keys_app.command("list")
def keys_list(
    organization: Annotated[
        str | None, typer.Option("--org", help="Only this organization's keys.")
    ] = None,
    home: HomeOption = None,
) -> None:
    """List keys, redacted: id, key, kind, organization, project, state, name."""
    for record in KeyStore(_database(_settings(home))).list_all(organization):
        state = "revoked" if record.revoked_at else "active"
        typer.echo(
            f"{record.id}\t{record.redacted_value}\t{record.kind}\t{record.organization_id}\t"
            f"{record.project_id or '-'}\t{state}\t{record.name}"
        )


@keys_app.command("revoke")
def keys_revoke(key_id: str, home: HomeOption = None) -> None:
    """Revoke a key by id; it fails on its next request."""
    if not KeyStore(_database(_settings(home))).revoke(key_id):
        typer.echo(f"no active key {key_id}", err=True)
        raise typer.Exit(1)
    typer.echo(f"revoked {key_id}")


@orgs_app.command("create")
def orgs_create(
    name: str,
    verified: Annotated[
        bool | None, typer.Option("--verified/--unverified", help="Default: the settings'.")
    ] = None,
    tier: Annotated[str | None, typer.Option(help="free or 1-5. Default: the settings'.")] = None,
    home: HomeOption = None,
) -> None:
    """Create an organization with its Default project; prints its first admin key once."""
    settings = _settings(home)
    database = _database(settings)
    organizations = Organizations(
        database, new_verified=settings.new_org_verified, new_tier=settings.new_org_tier
    )
    try:
        organization = organizations.create(name, verified=verified, tier=tier)
    except LimnerError as error:
        raise _fail(error) from error
    _record, key = AdminKeys(database).create(organization.id, "first admin key")
    typer.echo(key)
    typer.echo(
        f"created {organization.id} ({organization.name}, tier {organization.tier}, "
        f"{'verified' if organization.verified_at else 'unverified'}); the admin key above is "
        "not shown again",
        err=True,
    )


@orgs_app.command("list")
def orgs_list(home: HomeOption = None) -> None:
    """id, tier, verification, name."""
    for organization in Organizations(_database(_settings(home))).list():
        state = "verified" if organization.verified_at else "unverified"
        typer.echo(f"{organization.id}\ttier {organization.tier}\t{state}\t{organization.name}")


@orgs_app.command("verify")
def orgs_verify(
    organization: str,
    undo: Annotated[bool, typer.Option(help="Mark it unverified again.")] = False,
    home: HomeOption = None,
) -> None:
    """Verify an organization; running servers see it on the next request."""
    try:
        Organizations(_database(_settings(home))).set_verified(organization, not undo)
    except LimnerError as error:
        raise _fail(error) from error
    typer.echo(f"{organization} is {'unverified' if undo else 'verified'}")


@orgs_app.command("set-tier")
def orgs_set_tier(organization: str, tier: str, home: HomeOption = None) -> None:
    """Move an organization to another usage tier (free, 1-5)."""
    try:
        updated = Organizations(_database(_settings(home))).set_tier(organization, tier)
    except LimnerError as error:
        raise _fail(error) from error
    typer.echo(f"{organization} is at tier {updated.tier}")


@projects_app.command("create")
def projects_create(
    name: str, organization: OrgOption = OPERATOR_ORGANIZATION_ID, home: HomeOption = None
) -> None:
    """Create a project; prints its id."""
    try:
        project = Projects(_database(_settings(home))).create(organization, name)
    except LimnerError as error:
        raise _fail(error) from error
    typer.echo(project.id)


@projects_app.command("list")
def projects_list(
    organization: OrgOption = OPERATOR_ORGANIZATION_ID,
    archived: Annotated[bool, typer.Option(help="Include archived projects.")] = False,
    home: HomeOption = None,
) -> None:
    """id, status, name."""
    projects = Projects(_database(_settings(home)))
    after = None
    while True:
        try:
            page = projects.list(organization, after=after, limit=100, include_archived=archived)
        except LimnerError as error:
            raise _fail(error) from error
        for project in page.items:
            status = "archived" if project.archived_at else "active"
            typer.echo(f"{project.id}\t{status}\t{project.name}")
        if not page.has_more:
            break
        after = page.items[-1].id


@projects_app.command("archive")
def projects_archive(
    project: str, organization: OrgOption = OPERATOR_ORGANIZATION_ID, home: HomeOption = None
) -> None:
    """Archive a project: its keys stop working; it cannot be undone."""
    try:
        Projects(_database(_settings(home))).archive(organization, project)
    except LimnerError as error:
        raise _fail(error) from error
    typer.echo(f"archived {project}")


@db_app.command("upgrade")
def db_upgrade(home: HomeOption = None) -> None:
    """Migrate the database to the newest schema."""
    settings = _settings(home)
    settings.prepare_home()
    upgrade(make_engine(settings.resolved_database_url))
    typer.echo("database is at the newest schema")


@models_app.command("list")
def models_list(
    model: Annotated[Path | None, typer.Option()] = None,
    catalog: Annotated[Path | None, typer.Option()] = None,
) -> None:
    """Print each served name, its rules and backend."""
    from limner.app import load_catalog

    entries = load_catalog(_settings(model_path=model, catalog=catalog)).entries()
    for entry in entries:
        typer.echo(f"{entry.id}\trules={entry.rules}\tbackend={entry.served.backend.name}")


@models_app.command("check")
def models_check(
    model: Annotated[Path | None, typer.Option(help="A diffusers pipeline directory.")] = None,
    catalog: Annotated[Path | None, typer.Option(help="A catalog TOML file.")] = None,
    size: Annotated[int, typer.Option(help="Side of the smoke renders, in pixels.")] = 64,
) -> None:
    """Load each backend, smoke-render every task it offers, and print what each served name
    supports; exits 1 when a task fails or the catalog claims what a backend cannot do."""
    from limner import logs
    from limner.api.middleware import RequestIdLogFilter
    from limner.app import load_backend, load_catalog
    from limner.check import check_catalog, format_table

    logs.configure("warning", "text", RequestIdLogFilter())
    logs.route_library_logs()
    served = load_catalog(_settings(model_path=model, catalog=catalog))
    report = check_catalog(served, load_backend, size)
    typer.echo(format_table(report.rows))
    for name, backend in report.backends.items():
        checks = ", ".join(
            f"{check.task} {'ok' if check.ok else 'FAILED'} {check.seconds:.2f}s"
            for check in backend.checks.values()
        )
        typer.echo(f"{name}: {backend.info.family} on {backend.info.device}: {checks}")
    for problem in report.problems:
        typer.echo(f"problem: {problem}", err=True)
    if not report.ok:
        raise typer.Exit(1)


def main() -> None:
    """Run a command; an error ends it with what is wrong in a line or two (the traceback
    only with --debug or LIMNER_DEBUG=1)."""
    try:
        app()
    except Exception as exc:  # typer re-raises what a command raised, after its own handling
        if _run.debug:
            raise
        typer.echo(f"limner: {_describe(exc)}", err=True)
        if not isinstance(exc, StartupError | LimnerError):
            typer.echo("(an unexpected error: `limner --debug ...` shows where)", err=True)
        sys.exit(2 if isinstance(exc, StartupError) else 1)


def _describe(error: Exception) -> str:
    if isinstance(error, LimnerError):
        return error.message
    if isinstance(error, OSError) and error.strerror:
        where = f": {error.filename}" if error.filename else ""
        return f"{error.strerror}{where}"
    return str(error) or type(error).__name__
