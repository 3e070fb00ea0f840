"""`limner serve --ray`: a Serve application from the settings, the catalog and a cluster plan,
on a local Ray cluster started here or on one joined by address. `app_builder` is the import
path a Serve config file names (deploy/ray-serve.yaml); its `args` are a ClusterPlan."""

import logging
import re
import signal
import time
import tomllib
from pathlib import Path
from typing import Any, Literal

import ray
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from ray import serve
from ray.serve.config import RequestRouterConfig

from limner.catalog import BackendSpec, Catalog
from limner.datafiles import describe_validation_error
from limner.errors import ConfigurationError
from limner.scaleout.deployments import engine_deployment, ingress_deployment
from limner.scaleout.replica_settings import for_replicas
from limner.scaleout.router import ROUTER_CLASS
from limner.settings import Settings

logger = logging.getLogger(__name__)

APP_NAME = "limner"
# How engine deployments pick a replica: by batch key (ours), or Serve's default.
Router = Literal["batch_key", "default"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Autoscaling(_Strict):
    """Serve's autoscaling on ongoing requests per replica, for one engine deployment."""

    min_replicas: int = Field(default=1, ge=0)
    max_replicas: int = Field(default=2, ge=1)
    target_ongoing_requests: float = Field(default=8, gt=0)
    upscale_delay_s: float = Field(default=30, ge=0)
    downscale_delay_s: float = Field(default=600, ge=0)
    look_back_period_s: float = Field(default=30, gt=0)


class EnginePlan(_Strict):
    """How one backend's engine deployment runs; unset fields take the plan's defaults."""

    replicas: int | None = Field(default=None, ge=1)
    cpus: float | None = Field(default=None, gt=0)
    gpus: float | None = Field(default=None, ge=0)
    autoscaling: Autoscaling | None = None


class ClusterPlan(_Strict):
    """The deployments: an ingress (the HTTP app) and one engine deployment per backend.
    `gpus` None: one GPU per engine replica whose backend's device is CUDA, or "auto" on a
    cluster that has GPUs; none otherwise."""

    catalog: Path | None = None
    ingress_replicas: int = Field(default=1, ge=1)
    ingress_cpus: float = Field(default=0.5, gt=0)
    engine_replicas: int = Field(default=1, ge=1)
    engine_cpus: float = Field(default=1.0, gt=0)
    engine_gpus: float | None = Field(default=None, ge=0)
    # Serve's own by default: the batch-key router's affinity is not yet shown on a cluster
    # (docs/scale-out.md).
    router: Router = "default"
    engines: dict[str, EnginePlan] = Field(default_factory=dict)

    @classmethod
    def from_toml(cls, path: Path, **overrides: Any) -> "ClusterPlan":
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigurationError(f"cannot read the cluster plan {path}: {exc}") from exc
        return cls.parse({**data, **overrides}, source=str(path))

    @classmethod
    def parse(cls, data: dict[str, Any], source: str = "cluster plan") -> "ClusterPlan":
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigurationError(f"{source}: {describe_validation_error(exc)}") from exc


def app_builder(args: dict[str, Any]) -> Any:
    """For `serve run` / `serve deploy`: settings from the replicas' environment (LIMNER_*),
    the plan from the config's `args`."""
    from limner.app import load_catalog

    plan = ClusterPlan.parse(args, source="the Serve config's args")
    settings = Settings(catalog=plan.catalog) if plan.catalog else Settings()
    catalog = load_catalog(settings)
    check_plan(settings, catalog, plan)
    return build_application(settings, catalog, plan, _cluster_gpus())


def check_plan(settings: Settings, catalog: Catalog, plan: ClusterPlan) -> None:
    """What refuses a plan, told before any cluster is started or joined."""
    check_shared_state(settings, plan.ingress_replicas)
    unknown = set(plan.engines) - {spec.name for spec in catalog.backends()}
    if unknown:
        names = ", ".join(sorted(unknown))
        raise ConfigurationError(f"the cluster plan names backends the catalog lacks: {names}")


def _cluster_gpus() -> float:
    if not ray.is_initialized():
        return 0.0
    return float(ray.cluster_resources().get("GPU", 0))  # type: ignore[no-untyped-call]


def build_application(
    settings: Settings, catalog: Catalog, plan: ClusterPlan, cluster_gpus: float = 0.0
) -> Any:
    """The bound application (of a plan `check_plan` accepted): one engine deployment per
    catalog backend, one ingress. `cluster_gpus`: the GPUs the cluster has, which decide what a
    device of "auto" reserves."""
    engines = {
        spec.name: _engine(spec, settings, plan, cluster_gpus) for spec in catalog.backends()
    }
    # Replicas check the schema, they do not migrate it: `limner db upgrade` ran once.
    replica_settings = settings.model_copy(update={"migrate_on_start": False, "behind_proxy": True})
    return ingress_deployment(
        name="ingress",
        num_replicas=plan.ingress_replicas,
        # Streams are long and mostly waiting: one replica carries many at once.
        max_ongoing_requests=256,
        ray_actor_options={"num_cpus": plan.ingress_cpus},
    ).bind(for_replicas(replica_settings), engines)


def engine_gpus(device: str, own: EnginePlan, plan: ClusterPlan, cluster_gpus: float) -> float:
    """GPUs one engine replica reserves. A replica that reserved none is placed with no regard
    for GPUs and (Ray 2.60) sees every GPU of its node, so "auto" would pile replicas onto the
    first one: it reserves one wherever the cluster has GPUs to give."""
    gpus = own.gpus if own.gpus is not None else plan.engine_gpus
    if gpus is not None:
        return gpus
    wants_gpu = device.startswith("cuda") or (device == "auto" and cluster_gpus > 0)
    return 1.0 if wants_gpu else 0.0


def _engine(spec: BackendSpec, settings: Settings, plan: ClusterPlan, cluster_gpus: float) -> Any:
    own = plan.engines.get(spec.name, EnginePlan())
    gpus = engine_gpus(spec.device, own, plan, cluster_gpus)
    options: dict[str, Any] = {
        "name": f"engine-{spec.name}",
        # A replica holds no more jobs than its worker queues, so the worker never refuses;
        # beyond that Serve queues up to as many again per caller, then refuses with
        # BackPressureError, which RayEngine answers as the same 503 as a full queue.
        "max_ongoing_requests": settings.queue_size,
        "max_queued_requests": settings.queue_size,
        "ray_actor_options": {"num_cpus": own.cpus or plan.engine_cpus, "num_gpus": gpus},
        # At least one long render may finish when a replica is taken down.
        "graceful_shutdown_timeout_s": 60,
    }
    if plan.router == "batch_key":
        # Jobs that can share a pipeline call meet on one replica (limner/scaleout/router.py).
        options["request_router_config"] = RequestRouterConfig(
            request_router_class=ROUTER_CLASS,  # type: ignore[arg-type]
            request_router_kwargs={"imbalance": settings.max_batch_images},
        )
    if own.autoscaling is not None:
        options["autoscaling_config"] = own.autoscaling.model_dump()
    else:
        options["num_replicas"] = own.replicas or plan.engine_replicas
    return engine_deployment(**options).bind(
        spec,
        settings.queue_size,
        settings.max_batch_images,
        settings.batch_wait_ms,
        settings.torch_threads,
    )


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
    if settings.image_storage == "files":
        logger.warning(
            "images behind signed URLs are files under %s: every ingress replica must mount "
            "that directory, or set LIMNER_IMAGE_STORAGE=database",
            settings.home,
        )


def _deploy_failure(exc: Exception) -> str:
    """Why the deploy failed, as the replicas said it: Serve's own message names only the
    deployments, the Limner error that stopped a replica is in their status."""
    reasons: list[str] = []
    try:
        application = serve.status().applications.get(APP_NAME)
        for name, deployment in (application.deployments if application else {}).items():
            said = re.findall(r"^limner\.errors\.\w+: (.+)$", deployment.message, re.MULTILINE)
            if said:
                reasons.append(f"{name}: {said[-1]}")
    except Exception:  # the cluster itself may be what failed
        logger.debug("no deployment status to explain the failure", exc_info=True)
    return f"Limner could not be deployed: {'; '.join(reasons) or exc}"


def _interrupt(_signal: int, _frame: object) -> None:
    raise KeyboardInterrupt


def run(
    settings: Settings,
    catalog: Catalog,
    plan: ClusterPlan,
    *,
    host: str,
    port: int,
    address: str | None,
    metrics_port: int | None = None,
) -> None:
    """Start (or join) Ray, deploy, and block until interrupted. `metrics_port`: where a
    cluster started here exports every replica's metrics (metrics_bridge.py)."""
    check_plan(settings, catalog, plan)
    options: dict[str, Any] = {}
    if metrics_port and not address:
        options["_metrics_export_port"] = metrics_port
    ray.init(address=address, include_dashboard=False, log_to_driver=True, **options)
    application = build_application(settings, catalog, plan, _cluster_gpus())
    serve.start(http_options={"host": host, "port": port})
    # SIGTERM (a supervisor, `kill`) shuts down as Ctrl-C does: Serve and Ray stopped here,
    # no actor left behind.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        try:
            serve.run(application, name=APP_NAME, route_prefix="/")
        except Exception as exc:
            raise ConfigurationError(_deploy_failure(exc)) from exc
        logger.info("limner is serving on Ray Serve at http://%s:%d", host, port)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        if address:
            # A cluster joined is not ours to stop: only Limner's application leaves it.
            serve.delete(APP_NAME)
        else:
            serve.shutdown()  # type: ignore[no-untyped-call]
        ray.shutdown()
