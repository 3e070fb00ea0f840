"""Generated image files under $LIMNER_HOME with HMAC-signed, expiring URLs."""

import hashlib
import hmac
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from limner.errors import NotFound, PermissionDenied

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


class BlobStore:
    def __init__(self, directory: Path, secret: bytes, ttl_seconds: int) -> None:
        self._directory = directory
        self._secret = secret
        self._ttl = ttl_seconds
        directory.mkdir(parents=True, exist_ok=True)

    @classmethod
    def open(cls, home: Path, ttl_seconds: int) -> "BlobStore":
        """The signing secret lives beside the images so every process under one home agrees."""
        home.mkdir(parents=True, exist_ok=True)
        secret_file = home / "url-signing.key"
        if not secret_file.exists():
            descriptor = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(secrets.token_bytes(32))
        return cls(home / "images", secret_file.read_bytes(), ttl_seconds)

    def save(self, data: bytes, extension: str, now: float | None = None) -> SignedImage:
        name = f"img-{secrets.token_urlsafe(24)}.{extension}"
        (self._directory / name).write_bytes(data)
        expires = int(now if now is not None else time.time()) + self._ttl
        return SignedImage(name=name, expires=expires, signature=self._sign(name, expires))

    def read(self, name: str, expires: int, signature: str, now: float | None = None) -> bytes:
        """Return the file's bytes if the signature is genuine and unexpired."""
        if not _NAME.match(name) or not hmac.compare_digest(signature, self._sign(name, expires)):
            raise UrlSignatureInvalid("The image URL signature is not valid.")
        if (now if now is not None else time.time()) >= expires:
            raise UrlExpired("The image URL has expired; image URLs are valid for 60 minutes.")
        path = self._directory / name
        if not path.is_file():
            raise NotFound("The image no longer exists.")
        return path.read_bytes()

    def purge_expired(self, now: float | None = None) -> int:
        """Delete files older than the URL lifetime; nothing can fetch them any more."""
        cutoff = (now if now is not None else time.time()) - self._ttl
        removed = 0
        for path in self._directory.glob("img-*"):
            if path.stat().st_mtime < cutoff:
                path.unlink(missing_ok=True)
                removed += 1
        return removed

    def _sign(self, name: str, expires: int) -> str:
        message = f"{name}:{expires}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()
