"""Issue 5: the time the platform adds to one image request (auth + rate limits + metering).

(The issue names it bench/platform.py; that name would shadow the standard library's `platform`
module for every script run from bench/.)

In one process, on a fresh database (SQLite under a temp dir by default, or --database-url: on
PostgreSQL a throwaway schema, dropped afterwards), times N rounds of what the platform does for
each image request:

    KeyStore.authenticate  (the key, its organization and project, in one query)
    Meter.admit            (prices, budgets: this month's spend, rate limits: every quota at once)
    Meter.deliver          (one usage record, committed)

and prints p50 and p99 of their sum (goal: p50 ≤ 2 ms), plus each part's p50. The limits are
raised so that no request is refused. Use --redis-url to time the limiter shared through Redis.

    python bench/platform_latency.py [--rounds 2000] [--database-url URL] [--redis-url URL]
"""

import argparse
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, make_url, text

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from limner.accounts.keys import KeyStore  # noqa: E402
from limner.accounts.orgs import OPERATOR_ORGANIZATION_ID, Organizations, Projects  # noqa: E402
from limner.metering.limits import build_rate_limiter  # noqa: E402
from limner.metering.meter import Charge, Meter  # noqa: E402
from limner.metering.tiers import TierBook, TierTable  # noqa: E402
from limner.storage.db import Database, make_engine, upgrade  # noqa: E402


@contextmanager
def fresh_database(url: str | None, home: Path) -> Iterator[str]:
    """A URL to an empty database: a SQLite file under `home`, or on PostgreSQL a new schema
    (its tables left behind by an earlier run would turn every delivery into a duplicate)."""
    if url is None:
        yield f"sqlite:///{home / 'bench.db'}"
        return
    if not url.startswith("postgresql"):
        yield url
        return
    schema = f"bench_{secrets.token_hex(4)}"
    admin = create_engine(url)
    with admin.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        scoped = make_url(url).update_query_dict({"options": f"-csearch_path={schema}"})
        yield scoped.render_as_string(hide_password=False)
    finally:
        with admin.begin() as connection:
            connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--database-url")
    parser.add_argument("--redis-url")
    args = parser.parse_args()

    with (
        tempfile.TemporaryDirectory() as home,
        fresh_database(args.database_url, Path(home)) as url,
    ):
        database = Database(make_engine(url))
        upgrade(database.engine)
        Organizations(database).bootstrap(None, None)
        projects = Projects(database)
        project = projects.default_project(OPERATOR_ORGANIZATION_ID).id
        _key, secret = projects.create_key(OPERATOR_ORGANIZATION_ID, project, "bench")
        keys = KeyStore(database)
        # A tier table with room for every round, so the limiter admits and counts each one.
        table = TierTable.load()
        roomy = TierTable.from_mapping(
            {
                "tiers": {
                    name: {"paid_usd": 0, "days": 0, "usage_limit_usd": 10**9}
                    for name in table.tiers
                },
                "limits": {
                    "all": {
                        "models": ["*"],
                        **{
                            name: {"rpm": 10**9, "tpm": 10**12, "ipm": 10**9}
                            for name in table.tiers
                        },
                    }
                },
            }
        )
        meter = Meter(database, TierBook(database, roomy), build_rate_limiter(args.redis_url))
        timings: dict[str, list[float]] = {"authenticate": [], "admit": [], "deliver": []}
        totals = []
        # Request ids unique to this run: an id billed before would make deliver a no-op.
        run = secrets.token_hex(4)
        for round_ in range(args.rounds + 50):
            started = time.perf_counter()
            caller = keys.authenticate(f"Bearer {secret}")
            authenticated = time.perf_counter()
            assert caller.project_id is not None
            admitted = meter.admit(
                Charge(
                    organization_id=caller.organization_id,
                    project_id=caller.project_id,
                    api_key_id=caller.key_id,
                    tier=caller.tier,
                    model="gpt-image-1",
                    source="image.generation",
                    size="1024x1024",
                    quality="low",
                    images=1,
                    text_input_tokens=12,
                    image_input_tokens=0,
                    image_output_tokens=272,
                )
            )
            checked = time.perf_counter()
            meter.deliver(admitted, f"req_{run}_{round_}")
            done = time.perf_counter()
            if round_ < 50:  # warm-up: connection pool, statement caches
                continue
            timings["authenticate"].append(authenticated - started)
            timings["admit"].append(checked - authenticated)
            timings["deliver"].append(done - checked)
            totals.append(done - started)
        database.dispose()

    backend = "redis" if args.redis_url else "memory"
    print(f"database {url.split(':')[0]}, limiter {backend}, {args.rounds} rounds")
    for name, values in timings.items():
        print(f"  {name:<13} p50 {statistics.median(values) * 1000:6.3f} ms")
    totals.sort()
    p99 = totals[int(len(totals) * 0.99) - 1]
    p50 = statistics.median(totals)
    print(
        f"platform per request: p50 {p50 * 1000:.3f} ms, p99 {p99 * 1000:.3f} ms (goal p50 <= 2 ms)"
    )


if __name__ == "__main__":
    main()
