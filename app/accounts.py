"""Users, roles and bearer tokens."""
import hashlib
import secrets
from collections import OrderedDict
from dataclasses import dataclass
from threading import Lock

from sqlalchemy import delete, select, update

from app.engine.errors import Conflict, Invalid, get_or_404
from app.extensions import db
from app.models import ApiToken, Role, RoleMember, User
from app.models.states import OperatorStatus

PERMISSIONS = ("CanManageChats",)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def user_for_token(token: str) -> User | None:
    """The active user a token belongs to (a deactivated user's tokens open nothing)."""
    row = db.session.scalars(select(ApiToken).where(ApiToken.token_hash == hash_token(token))).first()
    return row.user if row and row.user.active else None


@dataclass(frozen=True)
class Credentials:
    """What a token opened when it was cached: its user, their permissions and the user's stamp then."""
    user_id: int
    stamp: str
    permissions: frozenset[str]


class TokenCache:
    """Token hash -> Credentials, in one process (bounded; the oldest entry goes first).

    An entry holds only while the user row's `auth_stamp` is the one cached: every change to what
    a token opens writes a new stamp in its own transaction (`_restamp`), and the user row is read
    on every request anyway, so a revoke or a permission change holds in every process at once.
    """

    def __init__(self, size: int = 10_000):
        self.size, self._items, self._lock = size, OrderedDict(), Lock()

    def get(self, key: str) -> Credentials | None:
        with self._lock:
            return self._items.get(key)

    def put(self, key: str, credentials: Credentials) -> None:
        with self._lock:
            self._items[key] = credentials
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def drop(self, key: str) -> None:
        with self._lock:
            self._items.pop(key, None)


def authenticate(token: str, cache: TokenCache) -> tuple[User, frozenset[str]] | None:
    """The active user a token belongs to and their effective permissions; one SELECT (the user
    row, to compare its stamp) when the token is cached."""
    key = hash_token(token)
    known = cache.get(key)
    if known is not None:
        user = db.session.get(User, known.user_id, populate_existing=True)
        if user is not None and user.active and user.auth_stamp == known.stamp:
            return user, known.permissions
        cache.drop(key)
    # The stamp is read with the token, before the roles: a change in between leaves an old stamp
    # beside newer permissions, which the next request refreshes; never the other way round.
    user = db.session.scalars(select(User).join(ApiToken, ApiToken.user_id == User.id)
                              .where(ApiToken.token_hash == key)).first()
    if user is None or not user.active:
        return None
    permissions = frozenset(user.effective_permissions())
    cache.put(key, Credentials(user.id, user.auth_stamp, permissions))
    return user, permissions


def _restamp(user_ids) -> None:
    """What these users' tokens open changed: cached credentials of theirs hold no longer."""
    db.session.execute(update(User).where(User.id.in_(user_ids)).values(auth_stamp=secrets.token_hex(8))
                       .execution_options(synchronize_session="fetch"))


def _restamp_members(role: Role) -> None:
    _restamp(select(RoleMember.user_id).where(RoleMember.role_id == role.id))


def admin_ids() -> list[int]:
    """Active users holding CanManageChats, themselves or through a role."""
    return [u.id for u in db.session.scalars(select(User).where(User.active.is_(True)))
            if "CanManageChats" in u.effective_permissions()]


def issue_token(user: User, token: str | None = None) -> str:
    token = token or secrets.token_urlsafe(32)
    db.session.add(ApiToken(user_id=user.id, token_hash=hash_token(token)))
    return token


def _check_permissions(permissions) -> list[str]:
    unknown = set(permissions) - set(PERMISSIONS)
    if unknown:
        raise Invalid(f"unknown permission {', '.join(sorted(unknown))}", details={"field": "permissions"})
    return sorted(set(permissions))


def _roles_named(names) -> list[Role]:
    roles = db.session.scalars(select(Role).where(Role.name.in_(names))).all() if names else []
    missing = set(names) - {r.name for r in roles}
    if missing:
        raise Invalid(f"no role named {', '.join(sorted(missing))}", details={"field": "roles"})
    return list(roles)


def create_user(login: str, name: str = "", roles=(), permissions=(), token: str | None = None):
    """Create a user and a first token; returns (user, token). The token is shown only once."""
    if db.session.scalars(select(User).where(User.login == login)).first():
        raise Conflict(f"a user with login {login!r} exists", code="login_taken", details={"field": "login"})
    user = User(login=login, name=name or login, permissions=_check_permissions(permissions))
    user.roles = _roles_named(roles)
    db.session.add(user)
    db.session.flush()
    return user, issue_token(user, token)


def update_user(user: User, changes: dict) -> User:
    if "login" in changes and changes["login"] != user.login:
        if db.session.scalars(select(User).where(User.login == changes["login"])).first():
            raise Conflict(f"a user with login {changes['login']!r} exists", code="login_taken",
                           details={"field": "login"})
        user.login = changes["login"]
    if "name" in changes:
        user.name = changes["name"]
    if "permissions" in changes:
        user.permissions = _check_permissions(changes["permissions"])
    if "roles" in changes:
        user.roles = _roles_named(changes["roles"])
    if changes.get("active") is not None:
        user.active = changes["active"]
        if not user.active:
            user.status = OperatorStatus.INACTIVE  # offered no chats while they cannot sign in
    if {"permissions", "roles", "active"} & set(changes):
        user.auth_stamp = secrets.token_hex(8)
    return user


def reset_token(user: User) -> str:
    """Revoke every token of the user and issue a new one."""
    db.session.execute(delete(ApiToken).where(ApiToken.user_id == user.id))
    user.auth_stamp = secrets.token_hex(8)
    return issue_token(user)


def delete_user(user: User) -> None:
    """Chats and messages keep naming their operator, so a user who had any stays."""
    from app.models import Chat, Message
    worked = db.session.scalars(select(Chat.id).where((Chat.operator_id == user.id) | (Chat.offered_to_id == user.id))
                                .limit(1)).first() or db.session.scalars(
        select(Message.id).where(Message.author_id == user.id).limit(1)).first()
    if worked:
        raise Conflict(f"user {user.id} has worked chats; remove them from their queues instead",
                       code="user_has_chats")
    db.session.delete(user)


def create_role(name: str, permissions=()) -> Role:
    if db.session.scalars(select(Role).where(Role.name == name)).first():
        raise Conflict(f"a role named {name!r} exists", code="role_taken", details={"field": "name"})
    role = Role(name=name, permissions=_check_permissions(permissions))
    db.session.add(role)
    db.session.flush()
    return role


def update_role(role: Role, changes: dict) -> Role:
    if "name" in changes and changes["name"] != role.name:
        if db.session.scalars(select(Role).where(Role.name == changes["name"])).first():
            raise Conflict(f"a role named {changes['name']!r} exists", code="role_taken", details={"field": "name"})
        role.name = changes["name"]
    if "permissions" in changes:
        role.permissions = _check_permissions(changes["permissions"])
        _restamp_members(role)
    return role


def add_member(role: Role, user_id: int) -> None:
    user = db.session.get(User, user_id)
    if user is None:
        raise Invalid("user_id: no such user", details={"field": "user_id"})
    if user not in role.members:
        role.members.append(user)
        user.auth_stamp = secrets.token_hex(8)


def remove_member(role: Role, user_id: int) -> None:
    role.members = [u for u in role.members if u.id != user_id]
    _restamp([user_id])


def delete_role(role: Role) -> None:
    """Its members keep their own permissions; queues it served lose it."""
    _restamp_members(role)
    db.session.delete(role)


# -- reads -------------------------------------------------------------------------------------
def users(limit: int, offset: int) -> list[User]:
    return db.session.scalars(select(User).order_by(User.id).limit(limit).offset(offset)).all()


def user(user_id: int) -> User:
    return get_or_404(User, user_id)


def roles(limit: int, offset: int) -> list[Role]:
    return db.session.scalars(select(Role).order_by(Role.id).limit(limit).offset(offset)).all()


def role(role_id: int) -> Role:
    return get_or_404(Role, role_id)


def bootstrap_admin(token: str) -> None:
    """On first start, user `admin` with CanManageChats and the given token."""
    if db.session.scalars(select(User).where(User.login == "admin")).first() is None:
        create_user("admin", "Administrator", permissions=["CanManageChats"], token=token)
