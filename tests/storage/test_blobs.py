import time
from pathlib import Path

import pytest

from limner.errors import NotFound
from limner.storage.blobs import BlobStore, UrlExpired, UrlSignatureInvalid
from limner.storage.db import Database


def test_signed_round_trip_and_refusals(tmp_path: Path) -> None:
    store = BlobStore.open(tmp_path, ttl_seconds=3600)
    signed = store.save(b"data", "png", now=1000)
    assert signed.expires == 4600
    assert store.read(signed.name, signed.expires, signed.signature, now=4599) == b"data"
    with pytest.raises(UrlExpired):
        store.read(signed.name, signed.expires, signed.signature, now=4600)
    with pytest.raises(UrlSignatureInvalid):
        store.read(signed.name, signed.expires + 60, signed.signature, now=1000)
    with pytest.raises(UrlSignatureInvalid):
        store.read("../limner.db", signed.expires, signed.signature, now=1000)


def test_secret_is_shared_by_stores_on_one_home(tmp_path: Path) -> None:
    first = BlobStore.open(tmp_path, ttl_seconds=60)
    signed = first.save(b"x", "webp")
    second = BlobStore.open(tmp_path, ttl_seconds=60)
    assert second.read(signed.name, signed.expires, signed.signature) == b"x"
    assert (tmp_path / "url-signing.key").stat().st_mode & 0o777 == 0o600
    other_home = BlobStore.open(tmp_path / "other", ttl_seconds=60)
    with pytest.raises(UrlSignatureInvalid):
        other_home.read(signed.name, signed.expires, signed.signature)


def test_deleted_file_is_not_found_and_purge(tmp_path: Path) -> None:
    store = BlobStore.open(tmp_path, ttl_seconds=1)
    signed = store.save(b"x", "png")
    assert store.purge_expired(now=time.time() + 10) == 1
    with pytest.raises(NotFound):
        store.read(signed.name, signed.expires, signed.signature, now=signed.expires - 1)


def test_images_in_the_database_are_shared_by_every_store(database: Database) -> None:
    """What several ingress replicas do: one signs, another reads; the secret is made once."""
    first = BlobStore.in_database(database, ttl_seconds=3600)
    signed = first.save(b"png bytes", "png", now=1000)
    second = BlobStore.in_database(database, ttl_seconds=3600)
    assert second.read(signed.name, signed.expires, signed.signature, now=1001) == b"png bytes"
    with pytest.raises(UrlSignatureInvalid):
        second.read(signed.name, signed.expires, "0" * 64, now=1001)
    with pytest.raises(UrlExpired):
        second.read(signed.name, signed.expires, signed.signature, now=signed.expires)
    assert second.purge_expired(now=1000 + 3601) == 1
    with pytest.raises(NotFound):
        second.read(signed.name, signed.expires, signed.signature, now=1001)
