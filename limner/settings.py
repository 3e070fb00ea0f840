"""Process settings from the environment (LIMNER_*) and the CLI; refuses unsafe values."""

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from limner.errors import ConfigurationError

# The databases Limner is built and tested on.
SUPPORTED_DATABASES = ("sqlite", "postgresql")


class Settings(BaseSettings):
    """Everything a Limner process needs to know that is not a served-model catalog."""

    model_config = SettingsConfigDict(env_prefix="LIMNER_", extra="ignore")

    home: Path = Field(default_factory=lambda: Path.home() / ".limner")
    database_url: str | None = None
    # The operator organization's first admin key (admin endpoints), and optionally a project
    # key for its Default project (model endpoints), registered on start: a known key for
    # containers and CI. Both are stored as hashes like any other key.
    admin_key: str | None = None
    api_key: str | None = None
    # Rate-limit windows shared by every process; None: each process counts on its own.
    redis_url: str | None = None
    # The usage-tier table (limits per model and tier); None: the packaged default.
    tiers: Path | None = None
    # What organizations created later start with (the operator's own starts verified, tier 5).
    new_org_verified: bool = False
    new_org_tier: str = "free"
    # A TOML catalog of served models; when None, `model_path` serves every OpenAI name.
    catalog: Path | None = None
    model_path: Path | None = None
    device: str = "auto"
    dtype: str = "auto"
    # Torch intra-op threads on the CPU; None keeps torch's default (one per core). Set it when
    # other CPU-heavy processes share the machine: oversubscribed OpenMP threads spin and can
    # slow a small model by an order of magnitude.
    torch_threads: int | None = None
    # The engine's admission and batching: jobs waiting per device beyond this are refused with
    # 503 and retry-after; jobs with the same settings arriving within `batch_wait_ms` share one
    # pipeline call of up to `max_batch_images` images (1 turns batching off, 0 ms: no waiting).
    queue_size: int = 16
    max_batch_images: int = 8
    batch_wait_ms: float = 10.0
    # Hosts that JSON edits may fetch `image_url`s from. Empty: only data URLs are accepted,
    # so the server cannot be used to reach internal addresses.
    allowed_image_hosts: list[str] = Field(default_factory=list)
    # Base of the URLs returned for response_format=url; None: taken from each request.
    public_url: str | None = None
    image_url_ttl_seconds: int = 3600
    # Where those images are kept: files under `home` (one machine, or a directory every
    # replica mounts), or rows in the database (every replica of a cluster reaches them).
    image_storage: Literal["files", "database"] = "files"
    max_upload_bytes: int = 50 * 1024 * 1024
    # The Responses API's mainline: an OpenAI-compatible chat-completions API (".../v1") that
    # decides the image calls and writes the replies; None: Limner orchestrates by rule.
    # `mainline_model` is the name sent to it (None: the request's `model`).
    mainline_url: str | None = None
    mainline_model: str | None = None
    mainline_api_key: str | None = None
    mainline_timeout_seconds: float = 60.0
    # Migrate the database at start (the single process); replicas of a cluster only check it,
    # after one `limner db upgrade`.
    migrate_on_start: bool = True
    # Behind a proxy that owns `x-request-id` (Ray Serve's): take the id from the request and
    # leave the response header to the proxy, so a client sees one id, not two.
    behind_proxy: bool = False
    # Moderation (prompt, input and output checks). Off only when the operator says so.
    moderation: bool = True
    # The operator's moderation policy (TOML, the shape of limner/moderation/policy.default.toml)
    # and term lists (terms.default.toml); None: the packaged ones.
    moderation_policy: Path | None = None
    moderation_terms: Path | None = None
    # Extra checks by name: {"my_check": "package.module:ClassName"}; a policy enables them.
    moderation_checks: dict[str, str] = Field(default_factory=dict)

    @field_validator("admin_key", "api_key")
    @classmethod
    def _admin_key_is_strong(cls, value: str | None) -> str | None:
        if value is not None and len(value) < 20:
            raise ValueError("LIMNER_ADMIN_KEY and LIMNER_API_KEY must be at least 20 characters")
        return value

    @field_validator("database_url")
    @classmethod
    def _supported_database(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            backend = make_url(value).get_backend_name()
        except ArgumentError as exc:
            raise ValueError("LIMNER_DATABASE_URL is not a database URL") from exc
        if backend not in SUPPORTED_DATABASES:
            raise ValueError(
                f"LIMNER_DATABASE_URL names a {backend} database; Limner runs on SQLite "
                "(sqlite:///path) or PostgreSQL (postgresql+psycopg://...)"
            )
        return value

    @field_validator("image_url_ttl_seconds")
    @classmethod
    def _ttl_positive(cls, value: int) -> int:
        if value <= 0:
            raise ValueError("image_url_ttl_seconds must be positive")
        return value

    @field_validator("queue_size", "max_batch_images")
    @classmethod
    def _at_least_one(cls, value: int) -> int:
        if value < 1:
            raise ValueError("queue_size and max_batch_images must be at least 1")
        return value

    @field_validator("batch_wait_ms")
    @classmethod
    def _not_negative(cls, value: float) -> float:
        if value < 0:
            raise ValueError("batch_wait_ms must not be negative")
        return value

    def prepare_home(self) -> Path:
        """Create the data directory if it is missing, readable by its owner only (it holds the
        database, generated images and the URL-signing key); whichever command runs first."""
        try:
            self.home.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot create the data directory {self.home}: {exc.strerror}. "
                "Point LIMNER_HOME (or --home) at a directory you can write."
            ) from exc
        return self.home

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'limner.db'}"

    @property
    def images_dir(self) -> Path:
        return self.home / "images"
