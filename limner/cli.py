"""The `limner` command: serve, keys, db, models. Thin: it assembles parts and prints."""

import logging
from pathlib import Path
from typing import Annotated

import typer

from limner.accounts.keys import KeyStore
from limner.settings import Settings
from limner.storage.db import Database, make_engine, upgrade

app = typer.Typer(help="Limner: a self-hosted OpenAI Images API.", no_args_is_help=True)
keys_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
models_app = typer.Typer(help="Served models.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(db_app, name="db")
app.add_typer(models_app, name="models")

HomeOption = Annotated[
    Path | None, typer.Option(help="Data directory (default $LIMNER_HOME or ~/.limner).")
]


def _settings(home: Path | None = None, **overrides: object) -> Settings:
    values = {key: value for key, value in overrides.items() if value is not None}
    if home is not None:
        values["home"] = home
    return Settings(**values)  # type: ignore[arg-type]


def _key_store(settings: Settings) -> KeyStore:
    database = Database(make_engine(settings.resolved_database_url))
    upgrade(database.engine)
    return KeyStore(database)


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
) -> None:
    """Start the HTTP server."""
    import uvicorn

    from limner.api.middleware import RequestIdLogFilter
    from limner.app import ConfigurationError, create_app

    _configure_logging(log_level, RequestIdLogFilter())
    settings = _settings(home, model_path=model, catalog=catalog)
    try:
        application = create_app(settings)
    except ConfigurationError as exc:
        typer.echo(f"limner: {exc}", err=True)
        raise typer.Exit(2) from exc
    # No keep-alive or request timeouts shorter than a slow CPU generation.
    uvicorn.run(application, host=host, port=port, log_level=log_level, timeout_keep_alive=30)


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="A label for the key.")] = "default",
    admin: Annotated[bool, typer.Option(help="Make an admin key.")] = False,
    home: HomeOption = None,
) -> None:
    """Create an API key and print it once; only its hash is stored."""
    store = _key_store(_settings(home))
    record, key = store.create(name, is_admin=admin)
    typer.echo(key)
    typer.echo(f"created {record.id} ({record.name}); this key is not shown again", err=True)


@keys_app.command("list")
def keys_list(home: HomeOption = None) -> None:
    """List keys, redacted."""
    store = _key_store(_settings(home))
    for record in store.list():
        state = "revoked" if record.revoked_at else "active"
        role = "admin" if record.is_admin else "user"
        typer.echo(f"{record.id}\t{record.redacted_value}\t{role}\t{state}\t{record.name}")


@keys_app.command("revoke")
def keys_revoke(key_id: str, home: HomeOption = None) -> None:
    """Revoke a key by id; it fails on its next request."""
    store = _key_store(_settings(home))
    if not store.revoke(key_id):
        typer.echo(f"no active key {key_id}", err=True)
        raise typer.Exit(1)
    typer.echo(f"revoked {key_id}")


@db_app.command("upgrade")
def db_upgrade(home: HomeOption = None) -> None:
    """Migrate the database to the newest schema."""
    settings = _settings(home)
    upgrade(make_engine(settings.resolved_database_url))
    typer.echo("database is at the newest schema")


@models_app.command("list")
def models_list(
    model: Annotated[Path | None, typer.Option()] = None,
    catalog: Annotated[Path | None, typer.Option()] = None,
) -> None:
    """Print each served name, its rules and backend."""
    from limner.app import ConfigurationError, load_catalog

    try:
        entries = load_catalog(_settings(model_path=model, catalog=catalog)).entries()
    except ConfigurationError as exc:
        typer.echo(f"limner: {exc}", err=True)
        raise typer.Exit(2) from exc
    for entry in entries:
        typer.echo(f"{entry.id}\trules={entry.rules}\tbackend={entry.served.backend.name}")


def _configure_logging(level: str, request_filter: logging.Filter) -> None:
    handler = logging.StreamHandler()
    handler.addFilter(request_filter)
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")
    )
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)


def main() -> None:
    app()
