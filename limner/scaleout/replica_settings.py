"""The settings an ingress replica is built with. A deployment's arguments are kept in Serve's
state, readable by anyone who can reach the cluster, so secrets never travel in them: each
replica reads those from its own environment (LIMNER_*, as the driver did), and a salted digest
of the driver's values tells a replica whose node was given different ones."""

import hashlib
import secrets
from typing import Any

from limner.errors import ConfigurationError
from limner.settings import Settings

# Keys, and URLs that may carry a password.
SECRET_SETTINGS = ("admin_key", "api_key", "mainline_api_key", "database_url", "redis_url")


def for_replicas(settings: Settings) -> dict[str, Any]:
    """What the ingress deployment is bound with: the settings less their secrets."""
    salt = secrets.token_hex(16)
    return {
        "settings": settings.model_dump(mode="json", exclude=set(SECRET_SETTINGS)),
        "salt": salt,
        "secret_digests": {
            name: _digest(salt, getattr(settings, name)) for name in SECRET_SETTINGS
        },
    }


def in_replica(shipped: dict[str, Any]) -> Settings:
    """The replica's settings: what was shipped, the secrets from this process's environment."""
    settings = Settings(**shipped["settings"])
    salt = shipped["salt"]
    differing = [
        f"LIMNER_{name.upper()}"
        for name, digest in shipped["secret_digests"].items()
        if _digest(salt, getattr(settings, name)) != digest
    ]
    if differing:
        raise ConfigurationError(
            f"{', '.join(differing)} on this node differ from where Limner was deployed: give "
            "every node of the cluster the same LIMNER_* secrets (docs/scale-out.md)."
        )
    return settings


def _digest(salt: str, value: str | None) -> str | None:
    if value is None:
        return None
    return hashlib.sha256(f"{salt}:{value}".encode()).hexdigest()
