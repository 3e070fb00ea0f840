"""API keys: created (shown once), stored as hashes, bearer authentication → Caller.

Three kinds, as OpenAI has them: admin keys (`sk-admin-…`, organization-wide, admin endpoints
only), project keys (`sk-proj-…`) and service-account keys (`sk-svcacct-…`), which call the model
endpoints for their project. Every lookup reads the organization's row in the same query, so a
verification or tier change is seen by the very next request on every process.
"""

import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import bindparam, or_, select, update
from sqlalchemy.orm import Session

from limner.errors import AuthenticationFailed, MismatchedOrganization, MismatchedProject
from limner.ids import new_id
from limner.storage.db import Database, core_table
from limner.storage.tables import ApiKey, Organization, Project, ServiceAccount

KeyKind = Literal["admin", "project", "service_account"]
PREFIXES: dict[KeyKind, str] = {
    "admin": "sk-admin-",
    "project": "sk-proj-",
    "service_account": "sk-svcacct-",
}
# last_used_at is informational; writing it on every request would add a write per request.
_LAST_USED_RESOLUTION = 60

_key_table = core_table(ApiKey)
_keys = _key_table.c
_organizations = core_table(Organization).c
_projects = core_table(Project).c
_accounts = core_table(ServiceAccount).c
# Built once: a statement object memoizes its cache key, so each request only binds the hash.
# The organization's row is read in the same query, never cached, so a verification, tier or
# revocation change is seen by the very next request on every process.
_FIND_KEY = (
    select(
        _keys.id.label("key_id"),
        _keys.kind,
        _keys.project_id,
        _keys.last_used_at,
        _keys.expires_at,
        _keys.revoked_at,
        _organizations.id.label("organization_id"),
        _organizations.verified_at,
        _organizations.tier,
        _organizations.is_operator,
        _projects.archived_at,
        _accounts.deleted_at,
    )
    .select_from(
        _key_table.join(core_table(Organization), _organizations.id == _keys.organization_id)
        .outerjoin(core_table(Project), _projects.id == _keys.project_id)
        .outerjoin(core_table(ServiceAccount), _accounts.id == _keys.service_account_id)
    )
    .where(_keys.key_hash == bindparam("key_hash"))
)
# The staleness test in the WHERE clause keeps concurrent processes from rewriting the same
# value: only the first request in a resolution period writes.
_TOUCH_KEY = (
    update(_key_table)
    .where(
        _keys.id == bindparam("key_id"),
        or_(_keys.last_used_at.is_(None), _keys.last_used_at <= bindparam("stale")),
    )
    .values(last_used_at=bindparam("now"))
)


@dataclass(frozen=True)
class Caller:
    """Who is making a request: resolved once per request by the auth dependency."""

    key_id: str
    kind: KeyKind
    organization_id: str
    project_id: str | None
    verified: bool
    tier: str
    is_operator: bool

    @property
    def is_admin(self) -> bool:
        return self.kind == "admin"


def hash_key(key: str) -> str:
    # Keys are 256-bit random strings, so a fast hash is safe; a slow KDF would only add latency.
    return hashlib.sha256(key.encode()).hexdigest()


def redact(key: str) -> str:
    """`sk-proj-ab...wxyz`: the prefix, two characters, three dots, the last four."""
    prefix = next((p for p in PREFIXES.values() if key.startswith(p)), key[:3])
    return f"{key[: len(prefix) + 2]}...{key[-4:]}"


def insert_key(
    session: Session,
    *,
    kind: KeyKind,
    name: str,
    organization_id: str,
    project_id: str | None = None,
    service_account_id: str | None = None,
    expires_at: int | None = None,
    secret: str | None = None,
) -> tuple[ApiKey, str]:
    """Add a key in the caller's transaction; returns the row and the secret, never stored."""
    secret = secret or PREFIXES[kind] + secrets.token_urlsafe(36)
    row = ApiKey(
        id=new_id("key_"),
        name=name,
        redacted_value=redact(secret),
        key_hash=hash_key(secret),
        kind=kind,
        organization_id=organization_id,
        project_id=project_id,
        service_account_id=service_account_id,
        created_at=int(time.time()),
        expires_at=expires_at,
    )
    session.add(row)
    return row, secret


class KeyStore:
    def __init__(self, database: Database) -> None:
        self._database = database

    def authenticate(
        self,
        authorization: str | None,
        organization_header: str | None = None,
        project_header: str | None = None,
    ) -> Caller:
        key = _bearer(authorization)
        now = int(time.time())
        # Core rather than an ORM Session: this runs on every request, and the Session's
        # identity map and unit of work cost more than the one indexed SELECT they wrap.
        with self._database.read() as connection:
            found = connection.execute(_FIND_KEY, {"key_hash": hash_key(key)}).first()
            if found is None or not _usable(
                now,
                revoked_at=found.revoked_at,
                expires_at=found.expires_at,
                archived_at=found.archived_at,
                deleted_at=found.deleted_at,
            ):
                raise AuthenticationFailed(
                    f"Incorrect API key provided: {_redact_any(key)}. You can find your API key "
                    "with `limner keys list` or create one with `limner keys create`."
                )
            last_used_at: int | None = found.last_used_at
            if last_used_at is None or now - last_used_at >= _LAST_USED_RESOLUTION:
                connection.execute(
                    _TOUCH_KEY,
                    {"key_id": found.key_id, "now": now, "stale": now - _LAST_USED_RESOLUTION},
                )
                connection.commit()
        caller = Caller(
            key_id=found.key_id,
            kind=_kind(found.kind),
            organization_id=found.organization_id,
            project_id=found.project_id,
            verified=found.verified_at is not None,
            tier=found.tier,
            is_operator=bool(found.is_operator),
        )
        _check_headers(caller, organization_header, project_header)
        return caller

    def list_all(self, organization_id: str | None = None) -> list[ApiKey]:
        """Every key, revoked ones included, for the operator's CLI."""
        query = select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)
        if organization_id is not None:
            query = query.where(ApiKey.organization_id == organization_id)
        with self._database.transaction() as session:
            return list(session.scalars(query))

    def revoke(self, key_id: str) -> bool:
        with self._database.transaction() as session:
            row = session.get(ApiKey, key_id)
            if row is None or row.revoked_at is not None:
                return False
            row.revoked_at = int(time.time())
            return True


def _usable(
    now: int,
    *,
    revoked_at: int | None,
    expires_at: int | None,
    archived_at: int | None,
    deleted_at: int | None,
) -> bool:
    """Not revoked or expired; its project (if any) not archived, its service account (if any)
    not deleted: outer joins read NULL for a key that has neither."""
    if revoked_at is not None or (expires_at is not None and expires_at <= now):
        return False
    return archived_at is None and deleted_at is None


def _kind(value: str) -> KeyKind:
    if value not in PREFIXES:
        raise ValueError(f"unknown key kind {value!r}")
    return value


def _check_headers(
    caller: Caller, organization_header: str | None, project_header: str | None
) -> None:
    """OpenAI-Organization / OpenAI-Project, when sent, must name the key's own."""
    if organization_header and organization_header != caller.organization_id:
        raise MismatchedOrganization(
            "OpenAI-Organization header should match organization for API key"
        )
    if project_header and caller.project_id and project_header != caller.project_id:
        raise MismatchedProject("OpenAI-Project header should match project for API key")


def _bearer(authorization: str | None) -> str:
    if not authorization:
        raise AuthenticationFailed(
            "You didn't provide an API key. You need to provide your API key in an Authorization "
            "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
        )
    scheme, _, key = authorization.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise AuthenticationFailed(
            "The Authorization header must use Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
        )
    return key.strip()


def _redact_any(key: str) -> str:
    return f"{key[:3]}****{key[-4:]}" if len(key) > 8 else "****"
