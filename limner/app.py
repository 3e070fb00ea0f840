"""create_app(settings, engine=None): the composition root that assembles every part."""

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from limner import __version__
from limner.accounts.keys import KeyStore
from limner.accounts.orgs import AdminKeys, Organizations, Projects
from limner.api import (
    admin,
    errors,
    files,
    health,
    images,
    metrics,
    models,
    moderation,
    operator,
    playground,
    responses,
)
from limner.api.middleware import RequestIdMiddleware
from limner.catalog import QUALITIES, BackendSpec, Catalog
from limner.engine.protocol import ImageBackend, ImageEngine
from limner.errors import ConfigurationError, StartupError
from limner.images.service import ImageService
from limner.images.usage import count_text_tokens
from limner.metering.limits import build_rate_limiter
from limner.metering.meter import Meter
from limner.metering.tiers import TierBook, TierTable
from limner.moderation.moderator import PolicyModerator, build_moderator
from limner.moderation.policy import PolicyError
from limner.moderation.protocol import AllowAll, Moderator
from limner.moderation.terms import TermListError
from limner.responses.chat_mainline import ChatMainline
from limner.responses.mainline import Mainline, Orchestrator
from limner.responses.service import ResponsesService
from limner.responses.store import ResponseStore
from limner.settings import Settings
from limner.storage.blobs import BlobStore
from limner.storage.db import Database, check_revision, make_engine, upgrade

logger = logging.getLogger(__name__)


# limner-mini ships inside the package; it is what `limner serve` serves when told nothing else.
DEFAULT_CATALOG = Path(__file__).parent / "catalog.default.toml"
EMBEDDED_MODEL = Path(__file__).parent / "assets" / "limner-mini"


def load_catalog(settings: Settings) -> Catalog:
    if settings.catalog is not None:
        return Catalog.from_toml(settings.catalog)
    if settings.model_path is not None:
        return Catalog.single_backend(settings.model_path, settings.device, settings.dtype)
    if EMBEDDED_MODEL.joinpath("model_index.json").is_file():
        return Catalog.from_toml(DEFAULT_CATALOG)
    raise ConfigurationError(
        "No model to serve: pass --model PATH (a diffusers pipeline directory) or "
        "--catalog FILE (or set LIMNER_MODEL_PATH / LIMNER_CATALOG)."
    )


def build_engine(
    catalog: Catalog,
    torch_threads: int | None = None,
    *,
    queue_size: int = 16,
    max_batch_images: int = 8,
    batch_wait_ms: float = 10.0,
) -> ImageEngine:
    # Imported here so that building an app with an injected engine never imports torch.
    from limner.engine.devices import set_cpu_threads
    from limner.engine.local import LocalEngine

    set_cpu_threads(torch_threads)

    backends: dict[str, ImageBackend] = {}
    for spec in catalog.backends():
        if spec.kind != "diffusers":
            raise ConfigurationError(f"backend {spec.name!r}: unknown kind {spec.kind!r}")
        if not spec.path.is_dir():
            raise ConfigurationError(f"backend {spec.name!r}: {spec.path} is not a directory")
        logger.info("loading backend %s from %s", spec.name, spec.path)
        backends[spec.name] = load_backend(spec)
    return LocalEngine(
        backends,
        max_queue=queue_size,
        max_batch_images=max_batch_images,
        batch_wait_ms=batch_wait_ms,
    )


def load_backend(spec: BackendSpec) -> ImageBackend:
    """One catalog backend, loaded as `limner serve` loads it (and compiled, warmed up)."""
    # Weights come from local disk only; never let a library reach for a hub.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from limner.engine.diffusers_backend import DiffusersBackend, Tuning

    tuning = Tuning(
        offload=spec.offload,
        attention_backend=spec.attention_backend,
        compile=spec.compile,
        compile_backend=spec.compile_backend,
    )
    try:
        backend = DiffusersBackend(
            spec.name,
            spec.path,
            spec.device,
            spec.dtype,
            spec.cpu_threads,
            max_edit_images=spec.max_edit_images,
            tuning=tuning,
        )
    except StartupError as exc:
        raise ConfigurationError(f"backend {spec.name!r}: {exc}") from exc
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        # diffusers' own words for a directory that is not a loadable pipeline.
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigurationError(
            f"backend {spec.name!r}: cannot load a diffusers pipeline from {spec.path}: {reason}"
        ) from exc
    if spec.compile:
        # Compiling takes seconds to minutes per shape: pay it now, at each tier's square
        # working size, not in the first requests.
        sizes = sorted({spec.working_size(quality, 1024, 1024) for quality in QUALITIES})
        started = time.perf_counter()
        backend.warm_up(sizes)
        logger.info(
            "backend %s compiled and warmed up at %s in %.1f s",
            spec.name,
            ", ".join(f"{w}x{h}" for w, h in sizes),
            time.perf_counter() - started,
        )
    return backend


def build_mainline(settings: Settings) -> Mainline:
    """The Responses API's decider: a configured language model, else the rule-based one."""
    if settings.mainline_url is None:
        return Orchestrator()
    logger.info("responses: the mainline model is %s", settings.mainline_url)
    return ChatMainline(
        settings.mainline_url,
        model=settings.mainline_model,
        api_key=settings.mainline_api_key,
        timeout_seconds=settings.mainline_timeout_seconds,
    )


def build_moderation(settings: Settings, database: Database) -> Moderator:
    """The operator's moderator with its checks loaded now, or AllowAll when turned off."""
    if not settings.moderation:
        logger.warning("moderation is off (LIMNER_MODERATION=false): every request is allowed")
        return AllowAll()
    try:
        moderator = build_moderator(
            database,
            settings.moderation_policy,
            settings.moderation_checks,
            settings.moderation_terms,
        )
    except (PolicyError, TermListError) as exc:
        raise ConfigurationError(str(exc)) from exc
    moderator.warm()
    return moderator


async def _purge_expired_images(blobs: BlobStore, every_seconds: float = 600) -> None:
    """Image files are only reachable through URLs that expire; delete them once they have."""
    while True:
        await asyncio.sleep(every_seconds)
        try:
            await asyncio.to_thread(blobs.purge_expired)
        except OSError:
            logger.exception("could not purge expired images")


def create_app(settings: Settings, engine: ImageEngine | None = None) -> FastAPI:
    settings.prepare_home()
    catalog = load_catalog(settings)
    database = Database(make_engine(settings.resolved_database_url))
    if settings.migrate_on_start:
        upgrade(database.engine)
    else:
        check_revision(database.engine)
    organizations = Organizations(
        database, new_verified=settings.new_org_verified, new_tier=settings.new_org_tier
    )
    organizations.bootstrap(settings.admin_key, settings.api_key)
    tiers = TierBook(database, TierTable.load(settings.tiers))
    meter = Meter(database, tiers, build_rate_limiter(settings.redis_url))
    engine = engine or build_engine(
        catalog,
        settings.torch_threads,
        queue_size=settings.queue_size,
        max_batch_images=settings.max_batch_images,
        batch_wait_ms=settings.batch_wait_ms,
    )
    blobs = (
        BlobStore.in_database(database, settings.image_url_ttl_seconds)
        if settings.image_storage == "database"
        else BlobStore.open(settings.home, settings.image_url_ttl_seconds)
    )
    blobs.purge_expired()  # images whose URLs expired while the server was down
    count_text_tokens("warm the tokenizer")  # loads the o200k ranks once, not on a request
    moderator = build_moderation(settings, database)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        purger = asyncio.create_task(_purge_expired_images(blobs))
        yield
        purger.cancel()
        await engine.close()
        if isinstance(moderator, PolicyModerator):
            moderator.decisions.close()
        database.dispose()

    app = FastAPI(title="Limner", version=__version__, lifespan=lifespan)
    app.state.settings = settings
    app.state.catalog = catalog
    app.state.database = database
    app.state.keys = KeyStore(database)
    app.state.organizations = organizations
    app.state.projects = Projects(database)
    app.state.admin_keys = AdminKeys(database)
    app.state.tiers = tiers
    app.state.meter = meter
    app.state.engine = engine
    app.state.blobs = blobs
    app.state.moderator = moderator
    policed = moderator if isinstance(moderator, PolicyModerator) else None
    app.state.moderation_policies = policed.policies if policed else None
    app.state.moderation_decisions = policed.decisions if policed else None
    image_service = ImageService(catalog, engine, moderator, tiers, meter)
    app.state.image_service = image_service
    app.state.responses_service = ResponsesService(
        catalog,
        image_service,
        ResponseStore(database),
        settings.allowed_image_hosts,
        mainline=build_mainline(settings),
    )
    routers = [images.router, responses.router, models.router, files.router, health.router]
    routers += [admin.router, operator.router, moderation.router, metrics.router]
    routers += [playground.router]
    for router in routers:
        app.include_router(router)
    errors.install(app)
    app.add_middleware(RequestIdMiddleware, from_proxy=settings.behind_proxy)
    return app
