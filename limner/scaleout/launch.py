"""`limner serve --ray`: a Serve application from the settings and catalog, on a local Ray
cluster started here or on one joined by address. `build_application` is also the import path
a Serve config file names (deploy/ray-serve.yaml)."""

import logging
import signal
import time
from typing import Any, Literal

import ray
from ray import serve
from ray.serve.config import RequestRouterConfig

from limner.catalog import BackendSpec, Catalog
from limner.errors import ConfigurationError
from limner.scaleout.deployments import engine_deployment, ingress_deployment
from limner.scaleout.router import ROUTER_CLASS
from limner.settings import Settings

logger = logging.getLogger(__name__)

APP_NAME = "limner"
# How engine deployments pick a replica: by batch key (ours), or Serve's default.
Router = Literal["batch_key", "default"]


def build_application(
    settings: Settings,
    catalog: Catalog,
    *,
    engine_replicas: int = 1,
    ingress_replicas: int = 1,
    engine_cpus: float = 1.0,
    engine_gpus: float | None = None,
    autoscaling: dict[str, Any] | None = None,
    router: Router = "batch_key",
) -> Any:
    """The bound application: one engine deployment per catalog backend, one ingress."""
    check_shared_state(settings, ingress_replicas)
    engines = {
        spec.name: _engine(
            spec, settings, engine_replicas, engine_cpus, engine_gpus, autoscaling, router
        )
        for spec in catalog.backends()
    }
    # Replicas check the schema, they do not migrate it: `limner db upgrade` ran once.
    replica_settings = settings.model_copy(update={"migrate_on_start": False, "behind_proxy": True})
    return ingress_deployment(
        name="ingress",
        num_replicas=ingress_replicas,
        # Streams are long and mostly waiting: one replica carries many at once.
        max_ongoing_requests=256,
        ray_actor_options={"num_cpus": 0.5},
    ).bind(replica_settings.model_dump(mode="json"), engines)


def _engine(
    spec: BackendSpec,
    settings: Settings,
    replicas: int,
    cpus: float,
    gpus: float | None,
    autoscaling: dict[str, Any] | None,
    router: "Router",
) -> Any:
    on_gpu = spec.device.startswith("cuda") if gpus is None else gpus > 0
    options: dict[str, Any] = {
        "name": f"engine-{spec.name}",
        # Serve's back-pressure before the worker's own 503: its queue plus one full batch.
        "max_ongoing_requests": settings.queue_size + settings.max_batch_images,
        "ray_actor_options": {"num_cpus": cpus, "num_gpus": (gpus or 1) if on_gpu else 0},
        # At least one long render may finish when a replica is taken down.
        "graceful_shutdown_timeout_s": 60,
    }
    if router == "batch_key":
        # Jobs that can share a pipeline call meet on one replica (limner/scaleout/router.py).
        options["request_router_config"] = RequestRouterConfig(
            request_router_class=ROUTER_CLASS,  # type: ignore[arg-type]
            request_router_kwargs={"imbalance": settings.max_batch_images},
        )
    if autoscaling:
        options["autoscaling_config"] = autoscaling
    else:
        options["num_replicas"] = replicas
    return engine_deployment(**options).bind(
        spec,
        settings.queue_size,
        settings.max_batch_images,
        settings.batch_wait_ms,
        settings.torch_threads,
    )


def _interrupt(_signal: int, _frame: object) -> None:
    raise KeyboardInterrupt


def check_shared_state(settings: Settings, ingress_replicas: int) -> None:
    """Several ingress replicas share one database and one set of rate-limit windows."""
    if ingress_replicas <= 1:
        return
    if settings.resolved_database_url.startswith("sqlite"):
        raise ConfigurationError(
            "several ingress replicas need a shared database: set LIMNER_DATABASE_URL to "
            "PostgreSQL (SQLite is one machine's file)."
        )
    if settings.redis_url is None:
        raise ConfigurationError(
            "several ingress replicas need shared rate limits: set LIMNER_REDIS_URL (the "
            "in-memory limiter would give every replica its own windows)."
        )


def run(
    settings: Settings,
    catalog: Catalog,
    *,
    host: str,
    port: int,
    address: str | None,
    engine_replicas: int,
    ingress_replicas: int,
    engine_cpus: float,
) -> None:
    """Start (or join) Ray, deploy, and block until interrupted."""
    ray.init(address=address, include_dashboard=False, log_to_driver=True)
    serve.start(http_options={"host": host, "port": port})
    application = build_application(
        settings,
        catalog,
        engine_replicas=engine_replicas,
        ingress_replicas=ingress_replicas,
        engine_cpus=engine_cpus,
    )
    # SIGTERM (a supervisor, `kill`) shuts down as Ctrl-C does: Serve and Ray stopped here,
    # no actor left behind.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        serve.run(application, name=APP_NAME, route_prefix="/")
        logger.info("limner is serving on Ray Serve at http://%s:%d", host, port)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        serve.shutdown()  # type: ignore[no-untyped-call]
        ray.shutdown()
