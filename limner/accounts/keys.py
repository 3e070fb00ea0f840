"""API keys: created (shown once), stored as hashes, bearer authentication, bootstrap admin."""

import hashlib
import secrets
import time
from dataclasses import dataclass

from sqlalchemy import select

from limner.errors import AuthenticationFailed
from limner.storage.db import Database
from limner.storage.tables import ApiKey

KEY_PREFIX = "sk-limner-"


@dataclass(frozen=True)
class Caller:
    """Who is making a request: resolved once per request by the auth dependency."""

    key_id: str
    name: str
    is_admin: bool


@dataclass(frozen=True)
class KeyRecord:
    id: str
    name: str
    redacted_value: str
    is_admin: bool
    created_at: int
    revoked_at: int | None


def hash_key(key: str) -> str:
    # Keys are 256-bit random strings, so a fast hash is safe; a slow KDF would only add latency.
    return hashlib.sha256(key.encode()).hexdigest()


def redact(key: str) -> str:
    return f"{key[: len(KEY_PREFIX) + 2]}****{key[-4:]}"


class KeyStore:
    def __init__(self, database: Database) -> None:
        self._database = database

    def create(self, name: str, *, is_admin: bool = False) -> tuple[KeyRecord, str]:
        """Return the record and the plaintext key, which is never stored."""
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        return self._insert(key, name, is_admin), key

    def bootstrap_admin(self, key: str) -> KeyRecord | None:
        """Register $LIMNER_ADMIN_KEY on first start; idempotent on later starts."""
        with self._database.transaction() as session:
            found = session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(key)))
            if found is not None:
                return None
        return self._insert(key, "bootstrap admin", is_admin=True)

    def authenticate(self, authorization: str | None) -> Caller:
        key = _bearer(authorization)
        with self._database.transaction() as session:
            row = session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(key)))
            if row is None or row.revoked_at is not None:
                raise AuthenticationFailed(
                    f"Incorrect API key provided: {_redact_any(key)}. You can find your API key "
                    "with `limner keys list` or create one with `limner keys create`."
                )
            return Caller(key_id=row.id, name=row.name, is_admin=row.is_admin)

    def list(self) -> list[KeyRecord]:
        with self._database.transaction() as session:
            rows = session.scalars(select(ApiKey).order_by(ApiKey.created_at)).all()
            return [_record(row) for row in rows]

    def revoke(self, key_id: str) -> bool:
        with self._database.transaction() as session:
            row = session.get(ApiKey, key_id)
            if row is None or row.revoked_at is not None:
                return False
            row.revoked_at = int(time.time())
            return True

    def _insert(self, key: str, name: str, is_admin: bool) -> KeyRecord:
        row = ApiKey(
            id="key_" + secrets.token_hex(12),
            name=name,
            redacted_value=redact(key),
            key_hash=hash_key(key),
            is_admin=is_admin,
            created_at=int(time.time()),
        )
        with self._database.transaction() as session:
            session.add(row)
        return _record(row)


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


def _record(row: ApiKey) -> KeyRecord:
    return KeyRecord(
        id=row.id,
        name=row.name,
        redacted_value=row.redacted_value,
        is_admin=row.is_admin,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
    )
