"""API keys: generation, SHA-256 digests at rest, lookup by public id, revocation.

A key reads ``efnf_<id>_<secret>``: ``<id>`` is 16 hex digits, public, stored as the row id
``key_<id>`` and shown by ``python -m app keys list``; ``<secret>`` is 32 random bytes
(URL-safe base64). Only the SHA-256 digest of the whole key is stored, so a leaked database
yields no usable key; 256 random bits make a fast unsalted digest safe (nothing to brute-force).
There is no cache: every request reads the row, so a revocation takes effect on the next one.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.core.db.base import utcnow
from app.core.db.models import ApiKey

KEY_PATTERN = re.compile(r"^efnf_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
TENANT_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# Compared against when no row matches, so that a miss costs the same as a wrong secret.
_NO_DIGEST = "0" * 64


class ApiKeyRejected(Exception):
    """The presented key is malformed, unknown, wrong or revoked; the message says which."""


@dataclass(frozen=True)
class NewApiKey:
    """A key just created: its row and the key itself, which exists nowhere else."""

    row: ApiKey
    key: str


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def check_tenant(tenant: str) -> str:
    """``tenant`` if it is a valid tenant id, else ``ValueError`` saying what is allowed."""
    if not TENANT_PATTERN.match(tenant):
        raise ValueError(
            f"tenant {tenant!r} must be 1-64 characters of letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    return tenant


def create_api_key(session: Session, tenant: str, name: str | None = None) -> NewApiKey:
    """Adds a key for ``tenant`` (flushed, not committed) and returns it with its secret."""
    public_id = secrets.token_hex(8)
    key = f"efnf_{public_id}_{secrets.token_urlsafe(32)}"
    row = ApiKey(
        id=f"key_{public_id}",
        tenant=check_tenant(tenant),
        name=name,
        secret_sha256=digest(key),
        created_at=utcnow(),
    )
    session.add(row)
    session.flush()
    return NewApiKey(row, key)


def list_api_keys(session: Session) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)))


def count_api_keys(session: Session) -> int:
    """Every key ever created, revoked ones included."""
    return session.scalar(select(func.count()).select_from(ApiKey))


def revoke_api_key(session: Session, key_id: str) -> ApiKey | None:
    """Marks the key revoked (idempotent); ``None`` if there is no such key."""
    row = session.get(ApiKey, key_id)
    if row is not None and row.revoked_at is None:
        row.revoked_at = utcnow()
        session.flush()
    return row


def authenticate(session: Session, key: str) -> ApiKey:
    """The live key row matching ``key``; raises ``ApiKeyRejected`` with the reason otherwise."""
    match = KEY_PATTERN.match(key)
    if match is None:
        raise ApiKeyRejected("API key is malformed; expected 'efnf_<16 hex digits>_<secret>'")
    row = session.get(ApiKey, f"key_{match.group(1)}")
    stored = row.secret_sha256 if row is not None else _NO_DIGEST
    if not hmac.compare_digest(stored, digest(key)) or row is None:
        raise ApiKeyRejected("API key is not valid")
    if row.revoked_at is not None:
        raise ApiKeyRejected(f"API key {row.id} was revoked at {row.revoked_at.isoformat()}")
    return row
