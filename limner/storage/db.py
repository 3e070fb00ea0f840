"""Database engine and sessions for SQLite (default) and PostgreSQL; schema via Alembic."""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import cast

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, Table, create_engine, event
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from limner.errors import StartupError

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True)


def _sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    # WAL lets readers proceed while a writer commits: several workers share one file.
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")
    # In WAL mode NORMAL syncs at checkpoints rather than on every commit: a crash cannot
    # corrupt the database, and a power cut may lose only the last commits. One fsync per
    # delivered request was most of the platform's per-request cost (bench/platform.py).
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def core_table(mapped: type[DeclarativeBase]) -> Table:
    """The Table behind a mapped class, for Core statements (declared as a FromClause)."""
    return cast(Table, mapped.__table__)


class DatabaseUnavailable(StartupError):
    """The database cannot be opened or reached; the message names it (password hidden)."""


def upgrade(engine: Engine) -> None:
    """Migrate the database to the newest schema (what `limner db upgrade` and start-up run).

    Every command opens the database here first, so this is where an unreachable one is told.
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    try:
        engine.connect().close()
    except DBAPIError as exc:
        url = engine.url.render_as_string(hide_password=True)
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise DatabaseUnavailable(
            f"cannot open the database {url}: {reason}. Check LIMNER_DATABASE_URL (or "
            "LIMNER_HOME, for the default SQLite file) and that the database server is running."
        ) from exc
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def check_revision(engine: Engine) -> None:
    """Refuse to start on a database that is not at the newest schema (replicas of a cluster,
    which leave migrating to one `limner db upgrade`)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    head = ScriptDirectory.from_config(config).get_current_head()
    try:
        with engine.connect() as connection:
            current = MigrationContext.configure(connection).get_current_revision()
    except DBAPIError as exc:
        raise DatabaseUnavailable(f"cannot open the database: {exc.orig or exc}") from exc
    if current != head:
        raise DatabaseUnavailable(
            f"the database is at schema revision {current or 'none'}, not {head}: run "
            "`limner db upgrade` once before starting the replicas."
        )


class Database:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One unit of work: committed when the block ends, rolled back if it raises."""
        with self._sessions.begin() as session:
            yield session

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """One unit of work on a Core connection: committed when the block ends, rolled back if
        it raises. For the per-request paths (authentication, admission, delivery), where an ORM
        Session's unit-of-work bookkeeping cost more than the statements it ran."""
        with self.engine.begin() as connection:
            yield connection

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A Core connection for the per-request reads, each statement its own transaction.

        On PostgreSQL it is in autocommit: no BEGIN and ROLLBACK round trips around a single
        SELECT, and, above all, no ROLLBACK at all, because psycopg drops its prepared
        statements on every ROLLBACK, and re-planning the hot queries cost several times what
        running them does. A write here must be followed by `commit()` (a no-op in autocommit;
        on SQLite it ends the transaction pysqlite began); anything else is rolled back.
        """
        with self.engine.connect() as connection:
            if connection.dialect.name == "postgresql":
                # Set on the checked-out connection only; the pool restores the default
                # isolation level when it is returned.
                connection.execution_options(isolation_level="AUTOCOMMIT")
            yield connection

    def ping(self) -> bool:
        with self.engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")
        return True

    def dispose(self) -> None:
        self.engine.dispose()
