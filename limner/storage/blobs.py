"""Generated images behind HMAC-signed, expiring URLs: as files under $LIMNER_HOME (one
machine, or a directory every ingress replica mounts), or as rows in the database (every
replica of a cluster reaches it; the signing secret lives there too)."""

import hashlib
import hmac
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from limner.errors import NotFound, PermissionDenied
from limner.storage.db import Database, core_table
from limner.storage.tables import ImageFile, PlatformDocument

_NAME = re.compile(r"^img-[A-Za-z0-9_-]{20,64}\.(png|jpeg|webp)$")


class UrlExpired(PermissionDenied):
    code = "url_expired"


class UrlSignatureInvalid(PermissionDenied):
    code = "invalid_signature"


@dataclass(frozen=True)
class SignedImage:
    name: str
    expires: int
    signature: str


class _Place(Protocol):
    """Where the image bytes are kept."""

    def put(self, name: str, data: bytes, now: float) -> None: ...

    def get(self, name: str) -> bytes | None: ...

    def purge(self, cutoff: float) -> int: ...


class _Directory:
    def __init__(self, directory: Path) -> None:
        self._directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    def put(self, name: str, data: bytes, now: float) -> None:
        path = self._directory / name
        path.write_bytes(data)
        os.utime(path, (now, now))  # purged by this time, as rows are by created_at

    def get(self, name: str) -> bytes | None:
        path = self._directory / name
        return path.read_bytes() if path.is_file() else None

    def purge(self, cutoff: float) -> int:
        removed = 0
        for path in self._directory.glob("img-*"):
            if path.stat().st_mtime < cutoff:
                path.unlink(missing_ok=True)
                removed += 1
        return removed


class _Rows:
    def __init__(self, database: Database) -> None:
        self._database = database

    def put(self, name: str, data: bytes, now: float) -> None:
        with self._database.begin() as connection:
            connection.execute(
                core_table(ImageFile).insert().values(name=name, data=data, created_at=int(now))
            )

    def get(self, name: str) -> bytes | None:
        with self._database.read() as connection:
            data = connection.scalar(select(ImageFile.data).where(ImageFile.name == name))
        return bytes(data) if data is not None else None

    def purge(self, cutoff: float) -> int:
        with self._database.begin() as connection:
            result = connection.execute(delete(ImageFile).where(ImageFile.created_at < cutoff))
        return int(result.rowcount or 0)


class BlobStore:
    def __init__(self, place: _Place, secret: bytes, ttl_seconds: int) -> None:
        self._place = place
        self._secret = secret
        self._ttl = ttl_seconds

    @classmethod
    def open(cls, home: Path, ttl_seconds: int) -> "BlobStore":
        """The signing secret lives beside the images so every process under one home agrees."""
        home.mkdir(parents=True, exist_ok=True)
        secret_file = home / "url-signing.key"
        if not secret_file.exists():
            descriptor = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(secrets.token_bytes(32))
        return cls(_Directory(home / "images"), secret_file.read_bytes(), ttl_seconds)

    @classmethod
    def in_database(cls, database: Database, ttl_seconds: int) -> "BlobStore":
        """Images as rows; the signing secret made once, by whichever process comes first."""
        return cls(_Rows(database), _database_secret(database), ttl_seconds)

    def save(self, data: bytes, extension: str, now: float | None = None) -> SignedImage:
        name = f"img-{secrets.token_urlsafe(24)}.{extension}"
        moment = now if now is not None else time.time()
        self._place.put(name, data, moment)
        expires = int(moment) + self._ttl
        return SignedImage(name=name, expires=expires, signature=self._sign(name, expires))

    def read(self, name: str, expires: int, signature: str, now: float | None = None) -> bytes:
        """Return the image's bytes if the signature is genuine and unexpired."""
        if not _NAME.match(name) or not hmac.compare_digest(signature, self._sign(name, expires)):
            raise UrlSignatureInvalid("The image URL signature is not valid.")
        if (now if now is not None else time.time()) >= expires:
            raise UrlExpired("The image URL has expired; image URLs are valid for 60 minutes.")
        data = self._place.get(name)
        if data is None:
            raise NotFound("The image no longer exists.")
        return data

    def purge_expired(self, now: float | None = None) -> int:
        """Delete images older than the URL lifetime; nothing can fetch them any more."""
        return self._place.purge((now if now is not None else time.time()) - self._ttl)

    def _sign(self, name: str, expires: int) -> str:
        message = f"{name}:{expires}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()


_SECRET_DOCUMENT = "url_signing_key"


def _database_secret(database: Database) -> bytes:
    """The URL-signing secret, stored once in the database for every replica that shares it."""
    table = core_table(PlatformDocument)
    with database.begin() as connection:
        found = connection.scalar(
            select(PlatformDocument.body).where(PlatformDocument.name == _SECRET_DOCUMENT)
        )
        if found is not None:
            return bytes.fromhex(found)
    candidate = secrets.token_bytes(32).hex()
    try:
        with database.begin() as connection:
            connection.execute(
                table.insert().values(
                    name=_SECRET_DOCUMENT, body=candidate, updated_at=int(time.time())
                )
            )
    except IntegrityError:
        pass  # another replica made it first: use theirs
    with database.begin() as connection:
        stored = connection.scalar(
            select(PlatformDocument.body).where(PlatformDocument.name == _SECRET_DOCUMENT)
        )
    if stored is None:
        raise RuntimeError("the URL-signing secret could not be stored")
    return bytes.fromhex(stored)
