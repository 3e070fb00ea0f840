"""RayEngine: the ImageEngine an ingress replica gives create_app, over one DeploymentHandle
per backend. What crosses a handle is the engine's own torch-free job and event types.

A replica that dies before the client has been sent anything is resubmitted once (Serve never
retries an in-flight request itself); after that it is a retryable 503. A full deployment
(Serve's back-pressure) is the same 503 `LocalEngine` raises for a full queue.
"""

import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError

from limner.engine.types import BackendInfo, EngineEvent, RenderJob
from limner.errors import ServerError, ServerOverloaded

logger = logging.getLogger(__name__)

# What a replica gone mid-call looks like from the caller, by Ray's mode of the day.
_REPLICA_GONE = (ActorDiedError, ActorUnavailableError, RayActorError)
_RETRY_HEADERS = {"retry-after": "1", "retry-after-ms": "1000"}


class RayEngine:
    def __init__(self, handles: Mapping[str, Any], infos: list[BackendInfo]) -> None:
        # One streaming handle per backend, configured once: each `.options()` handle carries
        # its own metrics pusher and long poll.
        self._handles = {name: handle.options(stream=True) for name, handle in handles.items()}
        self._infos = infos

    @classmethod
    async def connect(cls, handles: Mapping[str, Any]) -> "RayEngine":
        """Ask each engine deployment once what its backend can do; `backends()` (and with it
        /healthz and /v1/models) then answers from that, never with a cluster call."""
        infos = [await handle.info.remote() for handle in handles.values()]
        return cls(handles, infos)

    async def stream(self, job: RenderJob) -> AsyncIterator[EngineEvent]:
        handle = self._handles.get(job.backend)
        if handle is None:
            raise ServerError(f"No engine deployment serves the backend '{job.backend}'.")
        for attempt in (1, 2):
            events = handle.stream.remote(job)
            sent_any = finished = False
            try:
                async for event in events:
                    sent_any = True
                    yield event
                finished = True
                return
            except (BackPressureError, DeploymentUnavailableError) as exc:
                raise ServerOverloaded(
                    f"Every engine replica of '{job.backend}' is busy; retry the request.",
                    headers=_RETRY_HEADERS,
                ) from exc
            except _REPLICA_GONE as exc:
                if not sent_any and attempt == 1:
                    logger.warning(
                        "engine replica of %s died before its first event; resubmitting %s",
                        job.backend,
                        job.request_id,
                    )
                    continue
                raise ServerOverloaded(
                    "The engine replica rendering this request stopped; retry the request.",
                    headers=_RETRY_HEADERS,
                ) from exc
            finally:
                if not finished:
                    # The consumer left (or the call failed): stop the replica's render too.
                    events.cancel()

    def backends(self) -> list[BackendInfo]:
        return list(self._infos)

    async def close(self) -> None:
        """Serve owns the engine replicas; nothing to stop here."""
