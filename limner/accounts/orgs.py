"""Organizations, projects, service accounts and their keys: the platform's resources.

Every query is scoped by organization id, so a key of one organization can neither see nor
touch another's resources: a foreign id answers exactly like a missing one (404).
"""

import time
from dataclasses import dataclass
from typing import Generic, TypeVar

from sqlalchemy import Select, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from limner.accounts.keys import KeyKind, hash_key, insert_key
from limner.errors import InvalidRequest, InvalidValue, NotFound
from limner.ids import new_id
from limner.storage.db import Database
from limner.storage.tables import ApiKey, Organization, Project, ServiceAccount

# Fixed ids: several server processes may bootstrap one database at the same moment, and a
# fixed primary key turns the race into one insert and one harmless conflict.
OPERATOR_ORGANIZATION_ID = "org-operator"
OPERATOR_PROJECT_ID = "proj_operator_default"
TIERS = ("free", "1", "2", "3", "4", "5")
TOP_TIER = "5"
MAX_EXPIRY_SECONDS = 31_536_000  # a year, OpenAI's bound for admin keys

Row = TypeVar("Row", Project, ServiceAccount, ApiKey)


@dataclass(frozen=True)
class Page(Generic[Row]):
    items: list[Row]
    has_more: bool


@dataclass(frozen=True)
class NewServiceAccount:
    account: ServiceAccount
    key: ApiKey | None
    secret: str | None


def tier_name(value: str) -> str:
    """Accepts free, 1..5 and "tier 3"/"tier-3" spellings; refuses the rest."""
    normal = value.strip().lower().removeprefix("tier").strip(" -_")
    if normal not in TIERS:
        raise InvalidValue(f"Unknown tier {value!r}; expected one of: {', '.join(TIERS)}.", "tier")
    return normal


class Organizations:
    """Create and look up organizations; the operator's settings for new ones."""

    def __init__(
        self, database: Database, *, new_verified: bool = False, new_tier: str = "free"
    ) -> None:
        self._database = database
        self._new_verified = new_verified
        self._new_tier = tier_name(new_tier)

    def bootstrap(self, admin_key: str | None, api_key: str | None) -> None:
        """The operator's organization (verified, top tier) with its Default project; keys
        made before organizations existed join it; the configured keys are registered."""
        now = int(time.time())
        try:
            with self._database.transaction() as session:
                if session.get(Organization, OPERATOR_ORGANIZATION_ID) is None:
                    session.add(
                        Organization(
                            id=OPERATOR_ORGANIZATION_ID,
                            name="Operator",
                            is_operator=True,
                            verified_at=now,
                            tier=TOP_TIER,
                            created_at=now,
                        )
                    )
                    session.flush()
                    session.add(_default_project(OPERATOR_ORGANIZATION_ID, OPERATOR_PROJECT_ID))
        except IntegrityError:
            pass  # another process created it first
        with self._database.transaction() as session:
            session.execute(
                update(ApiKey)
                .where(ApiKey.organization_id.is_(None), ApiKey.kind == "admin")
                .values(organization_id=OPERATOR_ORGANIZATION_ID)
            )
            session.execute(
                update(ApiKey)
                .where(ApiKey.organization_id.is_(None))
                .values(organization_id=OPERATOR_ORGANIZATION_ID, project_id=OPERATOR_PROJECT_ID)
            )
        if admin_key:
            self._register(admin_key, "admin", "bootstrap admin")
        if api_key:
            self._register(api_key, "project", "bootstrap")

    def _register(self, secret: str, kind: KeyKind, name: str) -> None:
        try:
            with self._database.transaction() as session:
                project = OPERATOR_PROJECT_ID if kind != "admin" else None
                existing = session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(secret)))
                if existing is None:
                    insert_key(
                        session,
                        kind=kind,
                        name=name,
                        organization_id=OPERATOR_ORGANIZATION_ID,
                        project_id=project,
                        secret=secret,
                    )
        except IntegrityError:
            pass

    def create(
        self, name: str, *, verified: bool | None = None, tier: str | None = None
    ) -> Organization:
        now = int(time.time())
        verified = self._new_verified if verified is None else verified
        organization = Organization(
            id=new_id("org-"),
            name=_name(name),
            is_operator=False,
            verified_at=now if verified else None,
            tier=tier_name(tier) if tier is not None else self._new_tier,
            created_at=now,
        )
        with self._database.transaction() as session:
            session.add(organization)
            session.flush()
            session.add(_default_project(organization.id, new_id("proj_")))
        return organization

    def list(self) -> list[Organization]:
        with self._database.transaction() as session:
            return list(session.scalars(select(Organization).order_by(Organization.created_at)))

    def get(self, organization_id: str) -> Organization:
        with self._database.transaction() as session:
            return _organization(session, organization_id)

    def set_verified(self, organization_id: str, verified: bool) -> Organization:
        with self._database.transaction() as session:
            organization = _organization(session, organization_id)
            organization.verified_at = int(time.time()) if verified else None
            return organization

    def set_tier(self, organization_id: str, tier: str) -> Organization:
        with self._database.transaction() as session:
            organization = _organization(session, organization_id)
            organization.tier = tier_name(tier)
            return organization

    def set_spend_limit(self, organization_id: str, cents: int | None) -> Organization:
        with self._database.transaction() as session:
            organization = _organization(session, organization_id)
            organization.spend_limit_cents = _cents(cents)
            return organization


class Projects:
    """Projects, service accounts and keys inside one organization."""

    def __init__(self, database: Database) -> None:
        self._database = database

    # Projects.

    def create(
        self, organization_id: str, name: str, external_key_id: str | None = None
    ) -> Project:
        project = Project(
            id=new_id("proj_"),
            organization_id=organization_id,
            name=_name(name),
            is_default=False,
            external_key_id=external_key_id,
            created_at=int(time.time()),
        )
        with self._database.transaction() as session:
            _organization(session, organization_id)
            session.add(project)
        return project

    def list(
        self,
        organization_id: str,
        *,
        after: str | None = None,
        limit: int = 20,
        include_archived: bool = False,
    ) -> Page[Project]:
        query = select(Project).where(Project.organization_id == organization_id)
        if not include_archived:
            query = query.where(Project.archived_at.is_(None))
        with self._database.transaction() as session:
            return _page(session, query, Project, after, limit)

    def get(self, organization_id: str, project_id: str) -> Project:
        with self._database.transaction() as session:
            return _project(session, organization_id, project_id)

    def modify(
        self,
        organization_id: str,
        project_id: str,
        *,
        name: str | None = None,
        external_key_id: str | None = None,
    ) -> Project:
        with self._database.transaction() as session:
            project = _project(session, organization_id, project_id)
            _refuse_archived(project)
            if name is not None:
                project.name = _name(name)
            if external_key_id is not None:
                project.external_key_id = external_key_id
            return project

    def archive(self, organization_id: str, project_id: str) -> Project:
        with self._database.transaction() as session:
            project = _project(session, organization_id, project_id)
            if project.is_default:
                raise InvalidRequest("The Default project cannot be archived.", "project_id")
            if project.archived_at is None:
                project.archived_at = int(time.time())
            return project

    def set_spend_limit(self, organization_id: str, project_id: str, cents: int | None) -> Project:
        with self._database.transaction() as session:
            project = _project(session, organization_id, project_id)
            project.spend_limit_cents = _cents(cents)
            return project

    def default_project(self, organization_id: str) -> Project:
        with self._database.transaction() as session:
            project = session.scalar(
                select(Project).where(
                    Project.organization_id == organization_id, Project.is_default.is_(True)
                )
            )
            if project is None:
                raise NotFound(f"Organization {organization_id} has no Default project.")
            return project

    # Project API keys.

    def create_key(self, organization_id: str, project_id: str, name: str) -> tuple[ApiKey, str]:
        """A user-style project key. OpenAI mints these only in its dashboard; here the
        operator's CLI and the /v1/limner extension do."""
        with self._database.transaction() as session:
            project = _project(session, organization_id, project_id)
            _refuse_archived(project)
            return insert_key(
                session,
                kind="project",
                name=_name(name),
                organization_id=organization_id,
                project_id=project_id,
            )

    def create_first_key(self, organization_id: str = OPERATOR_ORGANIZATION_ID) -> str | None:
        """A key for the Default project when the organization has no usable model key at all
        (a fresh install); None when it has one. Shown once by its caller, like any key."""
        now = int(time.time())
        with self._database.transaction() as session:
            usable = session.scalar(
                select(ApiKey.id)
                .where(
                    ApiKey.organization_id == organization_id,
                    ApiKey.kind != "admin",
                    ApiKey.revoked_at.is_(None),
                    (ApiKey.expires_at.is_(None)) | (ApiKey.expires_at > now),
                )
                .limit(1)
            )
        if usable is not None:
            return None
        project = self.default_project(organization_id)
        _record, key = self.create_key(organization_id, project.id, "first key")
        return key

    def list_keys(
        self, organization_id: str, project_id: str, *, after: str | None = None, limit: int = 20
    ) -> Page[ApiKey]:
        with self._database.transaction() as session:
            _project(session, organization_id, project_id)
            query = select(ApiKey).where(
                ApiKey.project_id == project_id, ApiKey.revoked_at.is_(None)
            )
            return _page(session, query, ApiKey, after, limit)

    def get_key(self, organization_id: str, project_id: str, key_id: str) -> ApiKey:
        with self._database.transaction() as session:
            return _project_key(session, organization_id, project_id, key_id)

    def expire_key(
        self, organization_id: str, project_id: str, key_id: str, expires_in_seconds: int
    ) -> ApiKey:
        expires_at = _expires_at(expires_in_seconds)
        with self._database.transaction() as session:
            key = _project_key(session, organization_id, project_id, key_id)
            key.expires_at = expires_at
            return key

    def delete_key(self, organization_id: str, project_id: str, key_id: str) -> None:
        with self._database.transaction() as session:
            key = _project_key(session, organization_id, project_id, key_id)
            if key.service_account_id is not None:
                raise InvalidRequest(
                    "This key belongs to a service account; delete the service account instead.",
                    "api_key_id",
                )
            key.revoked_at = int(time.time())

    # Service accounts.

    def create_service_account(
        self, organization_id: str, project_id: str, name: str, *, with_key: bool = True
    ) -> NewServiceAccount:
        now = int(time.time())
        with self._database.transaction() as session:
            project = _project(session, organization_id, project_id)
            _refuse_archived(project)
            if project.is_default:
                raise InvalidRequest(
                    "Service accounts cannot be added to the Default project.", "project_id"
                )
            account = ServiceAccount(
                id=new_id("svc_acct_"),
                project_id=project_id,
                name=_name(name),
                role="member" if with_key else "none",
                created_at=now,
            )
            session.add(account)
            session.flush()
            if not with_key:
                return NewServiceAccount(account, None, None)
            key, secret = insert_key(
                session,
                kind="service_account",
                name="Secret Key",
                organization_id=organization_id,
                project_id=project_id,
                service_account_id=account.id,
            )
            return NewServiceAccount(account, key, secret)

    def list_service_accounts(
        self, organization_id: str, project_id: str, *, after: str | None = None, limit: int = 20
    ) -> Page[ServiceAccount]:
        with self._database.transaction() as session:
            _project(session, organization_id, project_id)
            query = select(ServiceAccount).where(
                ServiceAccount.project_id == project_id, ServiceAccount.deleted_at.is_(None)
            )
            return _page(session, query, ServiceAccount, after, limit)

    def get_service_account(
        self, organization_id: str, project_id: str, account_id: str
    ) -> ServiceAccount:
        with self._database.transaction() as session:
            return _service_account(session, organization_id, project_id, account_id)

    def modify_service_account(
        self,
        organization_id: str,
        project_id: str,
        account_id: str,
        *,
        name: str | None = None,
        role: str | None = None,
    ) -> ServiceAccount:
        with self._database.transaction() as session:
            account = _service_account(session, organization_id, project_id, account_id)
            if name is not None:
                account.name = _name(name)
            if role is not None:
                if role not in ("owner", "member"):
                    raise InvalidValue("role must be 'owner' or 'member'.", "role")
                account.role = role
            return account

    def delete_service_account(
        self, organization_id: str, project_id: str, account_id: str
    ) -> None:
        """The account and every key it holds stop working at once."""
        now = int(time.time())
        with self._database.transaction() as session:
            project = _project(session, organization_id, project_id)
            _refuse_archived(project)
            account = _service_account(session, organization_id, project_id, account_id)
            account.deleted_at = now
            session.execute(
                update(ApiKey)
                .where(ApiKey.service_account_id == account_id, ApiKey.revoked_at.is_(None))
                .values(revoked_at=now)
            )

    def create_service_account_key(
        self, organization_id: str, project_id: str, account_id: str, name: str | None
    ) -> tuple[ApiKey, str]:
        with self._database.transaction() as session:
            _service_account(session, organization_id, project_id, account_id)
            return insert_key(
                session,
                kind="service_account",
                name=_name(name or "Secret Key"),
                organization_id=organization_id,
                project_id=project_id,
                service_account_id=account_id,
            )


class AdminKeys:
    """Organization-wide admin keys."""

    def __init__(self, database: Database) -> None:
        self._database = database

    def create(
        self, organization_id: str, name: str, expires_in_seconds: int | None = None
    ) -> tuple[ApiKey, str]:
        expires_at = None if expires_in_seconds is None else _expires_at(expires_in_seconds)
        with self._database.transaction() as session:
            _organization(session, organization_id)
            return insert_key(
                session,
                kind="admin",
                name=_name(name),
                organization_id=organization_id,
                expires_at=expires_at,
            )

    def list(
        self, organization_id: str, *, after: str | None = None, limit: int = 20, order: str = "asc"
    ) -> Page[ApiKey]:
        query = select(ApiKey).where(
            ApiKey.organization_id == organization_id,
            ApiKey.kind == "admin",
            ApiKey.revoked_at.is_(None),
        )
        with self._database.transaction() as session:
            return _page(session, query, ApiKey, after, limit, descending=order == "desc")

    def get(self, organization_id: str, key_id: str) -> ApiKey:
        with self._database.transaction() as session:
            return _admin_key(session, organization_id, key_id)

    def delete(self, organization_id: str, key_id: str) -> None:
        with self._database.transaction() as session:
            _admin_key(session, organization_id, key_id).revoked_at = int(time.time())


# Queries shared by the classes above.


def _page(
    session: Session,
    query: Select[Row],
    table: type[Row],
    after: str | None,
    limit: int,
    *,
    descending: bool = False,
) -> Page[Row]:
    """Cursor pagination in (created_at, id) order; `after` is the id of the last item seen."""
    if not 1 <= limit <= 100:
        raise InvalidValue("limit must be between 1 and 100.", "limit")
    created, ident = table.created_at, table.id
    if after is not None:
        anchor = session.get(table, after)
        if anchor is None:
            raise InvalidValue(f"No such object for `after`: {after!r}.", "after")
        position = (anchor.created_at, anchor.id)
        if descending:
            query = query.where(
                (created < position[0]) | ((created == position[0]) & (ident < position[1]))
            )
        else:
            query = query.where(
                (created > position[0]) | ((created == position[0]) & (ident > position[1]))
            )
    order = (created.desc(), ident.desc()) if descending else (created, ident)
    rows = list(session.scalars(query.order_by(*order).limit(limit + 1)))
    return Page(rows[:limit], len(rows) > limit)


def _organization(session: Session, organization_id: str) -> Organization:
    organization = session.get(Organization, organization_id)
    if organization is None:
        raise NotFound(f"No organization found with id '{organization_id}'.")
    return organization


def _project(session: Session, organization_id: str, project_id: str) -> Project:
    project = session.get(Project, project_id)
    if project is None or project.organization_id != organization_id:
        raise NotFound(f"No project found with id '{project_id}'.")
    return project


def _project_key(session: Session, organization_id: str, project_id: str, key_id: str) -> ApiKey:
    _project(session, organization_id, project_id)
    key = session.get(ApiKey, key_id)
    if key is None or key.project_id != project_id or key.revoked_at is not None:
        raise NotFound(f"No API key found with id '{key_id}'.")
    return key


def _service_account(
    session: Session, organization_id: str, project_id: str, account_id: str
) -> ServiceAccount:
    _project(session, organization_id, project_id)
    account = session.get(ServiceAccount, account_id)
    if account is None or account.project_id != project_id or account.deleted_at is not None:
        raise NotFound(f"No service account found with id '{account_id}'.")
    return account


def _admin_key(session: Session, organization_id: str, key_id: str) -> ApiKey:
    key = session.get(ApiKey, key_id)
    if (
        key is None
        or key.kind != "admin"
        or key.organization_id != organization_id
        or key.revoked_at is not None
    ):
        raise NotFound(f"No admin API key found with id '{key_id}'.")
    return key


def _default_project(organization_id: str, project_id: str) -> Project:
    return Project(
        id=project_id,
        organization_id=organization_id,
        name="Default project",
        is_default=True,
        created_at=int(time.time()),
    )


def _refuse_archived(project: Project) -> None:
    if project.archived_at is not None:
        raise InvalidRequest(
            f"Project {project.id} is archived and cannot be changed.", "project_id"
        )


def _name(value: str) -> str:
    value = value.strip()
    if not value or len(value) > 200:
        raise InvalidValue("name must be 1 to 200 characters.", "name")
    return value


def _expires_at(expires_in_seconds: int) -> int:
    if not 1 <= expires_in_seconds <= MAX_EXPIRY_SECONDS:
        raise InvalidValue(
            f"expires_in_seconds must be between 1 and {MAX_EXPIRY_SECONDS}.",
            "expires_in_seconds",
        )
    return int(time.time()) + expires_in_seconds


def _cents(value: int | None) -> int | None:
    if value is not None and value < 1:
        raise InvalidValue("threshold_amount must be at least 1 (US cents).", "threshold_amount")
    return value
