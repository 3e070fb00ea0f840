"""BatchKeyRouter: jobs that can share a pipeline call meet on one engine replica.

A job whose `batch_key` some replica is already rendering goes there, unless that replica is
busier than the least-loaded candidate by more than `imbalance` requests; everything else takes
Serve's default, the less loaded of two random replicas. State is this router's own, in memory
(one router per ingress replica, so batching is best effort: a wrong guess costs only a missed
batch). `rank_replicas` is the decision, free of Ray, so it is tested on its own.
"""

import random
from collections import Counter
from collections.abc import Hashable, Mapping
from typing import Any, TypeVar

from ray.serve.request_router import (
    FIFOMixin,
    PendingRequest,
    ReplicaID,
    RequestRouter,
    RunningReplica,
)

from limner.engine.types import RenderJob, batch_key

ROUTER_CLASS = "limner.scaleout.router:BatchKeyRouter"


Replica = TypeVar("Replica", bound=Hashable)


def rank_replicas(
    loads: Mapping[Replica, int],
    rendering_key: Mapping[Replica, int],
    imbalance: int,
) -> list[list[Replica]]:
    """Replicas by preference. `loads`: ongoing requests per available replica; `rendering_key`:
    how many jobs of this request's batch key each replica has in flight."""
    if not loads:
        return []
    least = min(loads.values())
    holders = [
        replica
        for replica, count in rendering_key.items()
        if count > 0 and replica in loads and loads[replica] - least <= imbalance
    ]
    if holders:
        best = min(holders, key=lambda replica: loads[replica])
        return [[best], [replica for replica in loads if replica != best]]
    two = random.sample(list(loads), k=min(2, len(loads)))
    return [sorted(two, key=lambda replica: loads[replica])]


class BatchKeyRouter(FIFOMixin, RequestRouter):
    def initialize_state(self, imbalance: int = 8, **_kwargs: Any) -> None:
        self._imbalance = imbalance
        self._in_flight: dict[Hashable, Counter[ReplicaID]] = {}
        self._routed: dict[str, tuple[Hashable, ReplicaID]] = {}

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
        key = _key(pending_request)
        rendering = self._in_flight.get(key, Counter()) if key is not None else Counter()
        ranked = rank_replicas(loads, rendering, self._imbalance)
        return [[by_id[replica_id] for replica_id in rank] for rank in ranked if rank]

    def on_request_routed(
        self,
        pending_request: PendingRequest,
        replica_id: ReplicaID,
        result: Any,  # noqa: ARG002 - Serve's signature
    ) -> None:
        key = _key(pending_request)
        if key is None:
            return
        self._in_flight.setdefault(key, Counter())[replica_id] += 1
        self._routed[pending_request.metadata.internal_request_id] = (key, replica_id)

    def on_request_completed(
        self,
        replica_id: ReplicaID,  # noqa: ARG002 - the request's own record names it
        internal_request_id: str,
    ) -> None:
        routed = self._routed.pop(internal_request_id, None)
        if routed is None:
            return
        key, replica = routed
        counts = self._in_flight.get(key)
        if counts is not None:
            counts[replica] -= 1
            if counts[replica] <= 0:
                del counts[replica]
            if not counts:
                del self._in_flight[key]

    def on_replica_actor_died(self, replica_id: ReplicaID) -> None:
        super().on_replica_actor_died(replica_id)
        for counts in self._in_flight.values():
            counts.pop(replica_id, None)


def _key(pending_request: PendingRequest | None) -> Hashable | None:
    if pending_request is None or not pending_request.args:
        return None
    job = pending_request.args[0]
    return batch_key(job) if isinstance(job, RenderJob) else None
