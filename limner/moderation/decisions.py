"""The decision log: every moderation decision, allowed or refused, with its request id.

Each decision goes to the structured log at once and to the `moderation_decisions` table in
batches from a background thread, so a request never waits on a log write. `flush()` writes what
is pending now (tests, shutdown). Images are never stored: only which check decided and its score.
"""

import logging
import queue
import threading
from dataclasses import dataclass
from typing import Any

from sqlalchemy import desc, insert, select

from limner.moderation.protocol import Level, Stage
from limner.storage.db import Database
from limner.storage.tables import ModerationDecision

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Decision:
    request_id: str
    organization_id: str
    stage: Stage
    level: Level
    allowed: bool
    check: str
    categories: tuple[str, ...]
    score: float
    detail: str
    created_at: int

    def row(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id[:80],
            "organization_id": self.organization_id,
            "stage": self.stage,
            "level": self.level,
            "allowed": self.allowed,
            "check": self.check[:200],
            "categories": ",".join(self.categories)[:200],
            "score": self.score,
            "detail": self.detail[:200],
            "created_at": self.created_at,
        }


class DecisionLog:
    def __init__(self, database: Database, flush_seconds: float = 0.5) -> None:
        self._database = database
        self._flush_seconds = flush_seconds
        self._pending: queue.SimpleQueue[Decision] = queue.SimpleQueue()
        self._write_lock = threading.Lock()
        self._stopped = threading.Event()
        self._writer = threading.Thread(target=self._run, name="limner-moderation-log", daemon=True)
        self._writer.start()

    def record(self, decision: Decision) -> None:
        logger.info(
            "moderation %s",
            "allowed" if decision.allowed else "blocked",
            extra={"moderation": decision.row()},
        )
        self._pending.put(decision)

    def flush(self) -> None:
        rows = []
        with self._write_lock:
            while True:
                try:
                    rows.append(self._pending.get_nowait().row())
                except queue.Empty:
                    break
            if not rows:
                return
            try:
                with self._database.transaction() as session:
                    session.execute(insert(ModerationDecision), rows)
            except Exception:
                # The log must never take a request down; the structured log already has them.
                logger.exception("could not write %d moderation decisions", len(rows))

    def close(self) -> None:
        self._stopped.set()
        self._writer.join(timeout=5)
        self.flush()

    def _run(self) -> None:
        while not self._stopped.wait(self._flush_seconds):
            self.flush()

    def for_request(self, request_id: str) -> list[dict[str, Any]]:
        self.flush()
        statement = (
            select(ModerationDecision)
            .where(ModerationDecision.request_id == request_id)
            .order_by(ModerationDecision.id)
        )
        return self._rows(statement)

    def recent(self, organization_id: str | None, limit: int) -> list[dict[str, Any]]:
        self.flush()
        statement = select(ModerationDecision).order_by(desc(ModerationDecision.id)).limit(limit)
        if organization_id is not None:
            statement = statement.where(ModerationDecision.organization_id == organization_id)
        return self._rows(statement)

    def _rows(self, statement: Any) -> list[dict[str, Any]]:
        with self._database.transaction() as session:
            return [_wire(row) for row in session.scalars(statement)]


def _wire(row: ModerationDecision) -> dict[str, Any]:
    return {
        "object": "moderation.decision",
        "id": row.id,
        "request_id": row.request_id,
        "organization_id": row.organization_id,
        "stage": row.stage,
        "level": row.level,
        "allowed": row.allowed,
        "check": row.check,
        "categories": [c for c in row.categories.split(",") if c],
        "score": row.score,
        "detail": row.detail,
        "created_at": row.created_at,
    }
