"""The Serve deployments: `EngineReplica` (one catalog backend on one device, today's
LocalEngine inside) and `Ingress` (the whole FastAPI app, its engine a RayEngine).

`Ingress` builds the app late (`__serve_build_asgi_app__`, after its constructor got the engine
handles), so nothing of create_app is pickled, and it imports nothing of torch.
"""

import logging
import os
from typing import Any

from ray import serve

from limner.catalog import BackendSpec
from limner.engine.types import BackendInfo, RenderJob
from limner.scaleout.metrics_bridge import MetricsBridge
from limner.scaleout.ray_engine import RayEngine
from limner.scaleout.replica_settings import in_replica

logger = logging.getLogger(__name__)


class EngineReplica:
    """One backend, loaded as `limner serve` loads it, behind a bounded queue and batcher."""

    def __init__(
        self,
        spec: BackendSpec,
        queue_size: int,
        max_batch_images: int,
        batch_wait_ms: float,
        torch_threads: int | None,
        log_level: str = "info",
    ) -> None:
        _configure_logs(log_level)
        # Imported here: only engine replicas load torch.
        from limner.app import load_backend
        from limner.engine.devices import set_cpu_threads
        from limner.engine.local import LocalEngine

        set_cpu_threads(torch_threads)
        self._metrics = _bridge()
        self._backend = load_backend(spec)
        self._engine = LocalEngine(
            {spec.name: self._backend},
            max_queue=queue_size,
            max_batch_images=max_batch_images,
            batch_wait_ms=batch_wait_ms,
        )

    async def stream(self, job: RenderJob) -> Any:
        logger.info("render %s on %s in replica pid %d", job.request_id, job.backend, os.getpid())
        # Serve cancelling this generator (the client left) lands in LocalEngine.stream's wait,
        # whose cleanup withdraws the job: the render stops at its next step.
        async for event in self._engine.stream(job):
            yield event

    def info(self) -> BackendInfo:
        return self._backend.info()

    def pid(self) -> int:
        """This replica's process (operators and the fault tests kill it)."""
        return os.getpid()

    async def __del__(self) -> None:
        await self._engine.close()


class IngressReplica:
    """The FastAPI app of `limner serve`, built on this replica with a RayEngine."""

    def __init__(
        self, settings: dict[str, Any], engines: dict[str, Any], log_level: str = "info"
    ) -> None:
        _configure_logs(log_level)
        self._metrics = _bridge()
        self._settings = in_replica(settings)
        self._engines = engines

    async def __serve_build_asgi_app__(self) -> Any:
        from limner.app import create_app

        engine = await RayEngine.connect(self._engines)
        return create_app(self._settings, engine=engine)


def _bridge() -> MetricsBridge:
    context = serve.get_replica_context()
    return MetricsBridge(context.deployment, context.replica_id.unique_id).start()


def _configure_logs(level: str) -> None:
    """Limner's log lines (request ids included) from inside a replica; Ray forwards the
    replica's output to the driver's."""
    from limner import logs
    from limner.api.middleware import RequestIdLogFilter

    logs.configure(level, "text", RequestIdLogFilter())


def engine_deployment(**options: Any) -> Any:
    return serve.deployment(EngineReplica, **options)


def ingress_deployment(**options: Any) -> Any:
    return serve.deployment(serve.ingress()(IngressReplica), **options)
