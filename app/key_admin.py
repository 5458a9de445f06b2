"""``python -m app keys create|list|revoke`` and the local key of the embedded default.

Keys are created and revoked only here, by whoever can reach the database: there is no HTTP
route that mints keys. ``python -m app serve`` calls ``ensure_local_key`` so that a first start
on an empty database prints a working key and leaves it in ``<data dir>/local-api-key`` (0600).
"""

from __future__ import annotations

import os
from pathlib import Path

from app.core.db.api_keys import count_api_keys, create_api_key, list_api_keys, revoke_api_key
from app.core.db.session import session_scope
from app.core.settings import Settings

LOCAL_KEY_FILE = "local-api-key"
LOCAL_KEY_NAME = "local (created on first start)"


def create_key(settings: Settings, tenant: str, name: str | None) -> str:
    """Creates a key for ``tenant``; prints its id and the key, which is shown only this once."""
    with session_scope(settings.database_url) as session:
        new = create_api_key(session, tenant, name)
        key_id = new.row.id
    print(f"created {key_id} for tenant {tenant!r}; the key (shown only now):")
    print(new.key)
    return new.key


def list_keys(settings: Settings) -> None:
    """Prints every key's id, tenant, state, creation time and name (never a secret)."""
    with session_scope(settings.database_url) as session:
        rows = list_api_keys(session)
        lines = [
            "\t".join(
                [
                    row.id,
                    row.tenant,
                    f"revoked {row.revoked_at.isoformat()}" if row.revoked_at else "active",
                    row.created_at.isoformat(),
                    row.name or "",
                ]
            )
            for row in rows
        ]
    print("\t".join(["id", "tenant", "state", "created_at", "name"]))
    for line in lines:
        print(line)


def revoke_key(settings: Settings, key_id: str) -> bool:
    """Revokes ``key_id`` at once (the next request with it is refused); False if unknown."""
    with session_scope(settings.database_url) as session:
        row = revoke_api_key(session, key_id)
        if row is None:
            print(f"no API key with id {key_id!r} (see `python -m app keys list`)")
            return False
        print(f"revoked {row.id} of tenant {row.tenant!r}")
        return True


def write_private_file(path: Path, text: str) -> None:
    """Writes ``text`` to ``path`` readable by its owner only (0600), even if it existed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        os.fchmod(file.fileno(), 0o600)
        file.write(text)


def ensure_local_key(settings: Settings) -> Path | None:
    """On a database without any key (revoked ones count): creates one for the default tenant.

    Prints the key and writes it to ``<data dir>/local-api-key``; returns that path, or ``None``
    when the database already had a key (a revoked one stays revoked: no new key appears).
    """
    with session_scope(settings.database_url) as session:
        if count_api_keys(session):
            return None
        new = create_api_key(session, settings.default_owner, LOCAL_KEY_NAME)
        path = settings.data_dir / LOCAL_KEY_FILE
        # Written before the commit: a key nobody can find later is never left behind.
        write_private_file(path, new.key + "\n")
    rule = "=" * 78
    print(
        f"\n{rule}\nFirst start: created API key {new.row.id} for tenant "
        f"{settings.default_owner!r}.\nSend it as 'Authorization: Bearer <key>'; it is also in "
        f"{path.resolve()} (mode 0600).\n\n    {new.key}\n{rule}\n",
        flush=True,
    )
    return path
