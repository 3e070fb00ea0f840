"""BatchKeyRouter: jobs that can share a pipeline call meet on one engine replica.

A job goes to the replica its batch key was last sent to (within `affinity_s`), unless that
replica is busier than the least-loaded candidate by more than `imbalance` requests; otherwise
Serve's default, the less loaded of two random replicas. The memory is this router's own (one
router per ingress replica, so batching is best effort: a wrong guess costs a missed batch).

Affinity by recency rather than by jobs in flight: Serve 2.60 reports a streaming request
complete to the router long before its stream ends. No FIFOMixin: it hands the replica chosen
for one request to the oldest one waiting, whatever its key, which undid the affinity under
load. `rank_replicas` is the decision, free of Ray, so it is tested on its own.
"""

import random
import time
from collections.abc import Hashable, Mapping
from typing import Any, TypeVar

from ray.serve.request_router import (
    PendingRequest,
    ReplicaID,
    RequestRouter,
    RunningReplica,
)

from limner.engine.types import RenderJob, batch_key

ROUTER_CLASS = "limner.scaleout.router:BatchKeyRouter"
Replica = TypeVar("Replica", bound=Hashable)


def rank_replicas(
    loads: Mapping[Replica, int], holder: Replica | None, imbalance: int
) -> list[list[Replica]]:
    """Replicas by preference. `loads`: ongoing requests per available replica; `holder`: the
    replica this request's batch key went to last, if any."""
    if not loads:
        return []
    near_least = holder in loads and loads[holder] - min(loads.values()) <= imbalance  # type: ignore[index]
    if holder is not None and near_least:
        return [[holder], [replica for replica in loads if replica != holder]]
    two = random.sample(list(loads), k=min(2, len(loads)))
    return [sorted(two, key=lambda replica: loads[replica])]


class BatchKeyRouter(RequestRouter):
    def initialize_state(
        self, imbalance: int = 8, affinity_s: float = 10.0, **_kwargs: Any
    ) -> None:
        self._imbalance = imbalance
        self._affinity_s = affinity_s
        self._last: dict[Hashable, tuple[ReplicaID, float]] = {}

    async def choose_replicas(
        self,
        candidate_replicas: list[RunningReplica],
        pending_request: PendingRequest | None = None,
    ) -> list[list[RunningReplica]]:
        available = self.select_available_replicas(candidate_replicas)
        if not available:
            return []
        by_id = {replica.replica_id: replica for replica in available}
        loads = {
            replica_id: self.replica_queue_len_cache.get(replica_id) or 0 for replica_id in by_id
        }
        ranked = rank_replicas(loads, self._holder(_key(pending_request)), self._imbalance)
        return [[by_id[replica_id] for replica_id in rank] for rank in ranked if rank]

    def on_request_routed(
        self,
        pending_request: PendingRequest,
        replica_id: ReplicaID,
        result: Any,  # noqa: ARG002 - Serve's signature
    ) -> None:
        key = _key(pending_request)
        if key is not None:
            self._last[key] = (replica_id, time.monotonic())

    def on_replica_actor_died(self, replica_id: ReplicaID) -> None:
        super().on_replica_actor_died(replica_id)
        self._last = {key: last for key, last in self._last.items() if last[0] != replica_id}

    def _holder(self, key: Hashable | None) -> ReplicaID | None:
        last = self._last.get(key) if key is not None else None
        if last is None or time.monotonic() - last[1] > self._affinity_s:
            return None
        return last[0]


def _key(pending_request: PendingRequest | None) -> Hashable | None:
    if pending_request is None or not pending_request.args:
        return None
    job = pending_request.args[0]
    return batch_key(job) if isinstance(job, RenderJob) else None
