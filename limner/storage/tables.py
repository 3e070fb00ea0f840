"""SQLAlchemy mapped classes for every table; one metadata for Alembic.

Times are Unix seconds (BigInteger), as the OpenAI objects carry them. Money is integer
nano-dollars: prices such as $2.50 per million tokens are whole nano-dollars per token, so every
sum is exact.
"""

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Organization(Base):
    __tablename__ = "organizations"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    # The operator's own organization: the bootstrap admin key's, verified at the top tier.
    is_operator: Mapped[bool] = mapped_column(Boolean, default=False)
    verified_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    tier: Mapped[str] = mapped_column(String(10), default="free")
    # Monthly hard spend limit in US cents; None: no limit.
    spend_limit_cents: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    created_at: Mapped[int] = mapped_column(BigInteger)


class Project(Base):
    __tablename__ = "projects"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    external_key_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    spend_limit_cents: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    created_at: Mapped[int] = mapped_column(BigInteger)
    archived_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class ServiceAccount(Base):
    __tablename__ = "service_accounts"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(10), default="member")
    created_at: Mapped[int] = mapped_column(BigInteger)
    deleted_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class ApiKey(Base):
    """A bearer key. Only its SHA-256 is stored; the key itself is shown once, at creation.

    `kind` is admin (organization-wide, admin endpoints only), project or service_account
    (model endpoints, for their project)."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    redacted_value: Mapped[str] = mapped_column(String(40))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    kind: Mapped[str] = mapped_column(String(20), default="project")
    organization_id: Mapped[str | None] = mapped_column(
        ForeignKey("organizations.id"), nullable=True, index=True
    )
    project_id: Mapped[str | None] = mapped_column(
        ForeignKey("projects.id"), nullable=True, index=True
    )
    service_account_id: Mapped[str | None] = mapped_column(
        ForeignKey("service_accounts.id"), nullable=True
    )
    created_at: Mapped[int] = mapped_column(BigInteger)
    last_used_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    expires_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    revoked_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class ProjectRateLimit(Base):
    """A project's own per-model limits; None inherits the organization's (its tier's) value."""

    __tablename__ = "project_rate_limits"
    __table_args__ = (UniqueConstraint("project_id", "model"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id"), index=True)
    model: Mapped[str] = mapped_column(String(100))
    max_requests_per_1_minute: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    max_tokens_per_1_minute: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    max_images_per_1_minute: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class UsageRecord(Base):
    """One delivered request: written once, in the transaction that marks it delivered."""

    __tablename__ = "usage_records"
    __table_args__ = (
        Index("ix_usage_records_organization_created", "organization_id", "created_at"),
        UniqueConstraint("delivery_id", name="usage_records_delivery_id_key"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # The once-only key, made by Limner per admitted request; the request id (which a proxy
    # may have taken from the client) is kept for tracing only.
    delivery_id: Mapped[str] = mapped_column(String(64))
    request_id: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[int] = mapped_column(BigInteger, index=True)
    organization_id: Mapped[str] = mapped_column(String(40))
    project_id: Mapped[str] = mapped_column(String(40))
    api_key_id: Mapped[str] = mapped_column(String(40))
    model: Mapped[str] = mapped_column(String(100))
    source: Mapped[str] = mapped_column(String(30))  # image.generation | image.edit | ...
    size: Mapped[str] = mapped_column(String(20))
    quality: Mapped[str] = mapped_column(String(20))
    images: Mapped[int] = mapped_column(Integer)
    text_input_tokens: Mapped[int] = mapped_column(BigInteger)
    image_input_tokens: Mapped[int] = mapped_column(BigInteger)
    image_output_tokens: Mapped[int] = mapped_column(BigInteger)
    # Cost per line item in nano-dollars, priced when the request was delivered.
    text_input_cost: Mapped[int] = mapped_column(BigInteger)
    image_input_cost: Mapped[int] = mapped_column(BigInteger)
    image_output_cost: Mapped[int] = mapped_column(BigInteger)


class SpendTotal(Base):
    """Running spend per calendar month, added to in the transaction that records a delivery:
    budget checks read one or two rows instead of summing the month's usage records.
    `project_id` "" is the whole organization."""

    __tablename__ = "spend_totals"

    organization_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    project_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    month: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    amount: Mapped[int] = mapped_column(BigInteger)


class PlatformDocument(Base):
    """Operator-set tables (prices, tiers) as JSON; absent rows fall back to packaged defaults."""

    __tablename__ = "platform_documents"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    body: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[int] = mapped_column(BigInteger)


class ModerationPolicy(Base):
    """An organization's changes to the packaged moderation policy, as JSON (merged over it)."""

    __tablename__ = "moderation_policies"

    organization_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True
    )
    body: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[int] = mapped_column(BigInteger)


class ModerationDecision(Base):
    """One moderation decision: which stage, which check decided, the score. Never the image."""

    __tablename__ = "moderation_decisions"
    __table_args__ = (
        Index("ix_moderation_decisions_request", "request_id"),
        Index("ix_moderation_decisions_org_time", "organization_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    request_id: Mapped[str] = mapped_column(String(80))
    organization_id: Mapped[str] = mapped_column(String(40))
    stage: Mapped[str] = mapped_column(String(10))  # prompt | input | output
    level: Mapped[str] = mapped_column(String(10))  # auto | low
    allowed: Mapped[bool] = mapped_column(Boolean)
    # The check that blocked, or every check that ran when allowed ("terms,prompt_classifier").
    check: Mapped[str] = mapped_column(String(200))
    categories: Mapped[str] = mapped_column(String(200))
    score: Mapped[float] = mapped_column(Float)
    detail: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[int] = mapped_column(BigInteger)


class StoredResponse(Base):
    """A Responses API response (`store: true`), as its wire JSON without image bytes: those
    are in `response_images`, once, however many later turns refer to them."""

    __tablename__ = "responses"
    __table_args__ = (Index("ix_responses_project", "project_id", "id"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    organization_id: Mapped[str] = mapped_column(String(40))
    project_id: Mapped[str] = mapped_column(String(40))
    previous_response_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    status: Mapped[str] = mapped_column(String(20))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[int] = mapped_column(BigInteger)


class ResponseItem(Base):
    """One input or output item of a stored response, in order. `item_id` is the wire id
    (`msg_…`, `ig_…`); a replayed item appears again under the response that replayed it."""

    __tablename__ = "response_items"
    __table_args__ = (Index("ix_response_items_project_item", "project_id", "item_id"),)

    response_id: Mapped[str] = mapped_column(
        ForeignKey("responses.id", ondelete="CASCADE"), primary_key=True
    )
    kind: Mapped[str] = mapped_column(String(10), primary_key=True)  # input | output
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[str] = mapped_column(String(64))
    project_id: Mapped[str] = mapped_column(String(40))
    body: Mapped[str] = mapped_column(Text)


class ResponseImage(Base):
    """An image a stored response brought in (an input image) or made (a call's result)."""

    __tablename__ = "response_images"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    response_id: Mapped[str] = mapped_column(
        ForeignKey("responses.id", ondelete="CASCADE"), index=True
    )
    project_id: Mapped[str] = mapped_column(String(40))
    media_type: Mapped[str] = mapped_column(String(40))
    data: Mapped[bytes] = mapped_column(LargeBinary)


class ImageFile(Base):
    """A generated image behind a signed URL, when images are kept in the database
    (`LIMNER_IMAGE_STORAGE=database`: every replica of a cluster reaches it)."""

    __tablename__ = "image_files"

    name: Mapped[str] = mapped_column(String(80), primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[int] = mapped_column(BigInteger, index=True)
