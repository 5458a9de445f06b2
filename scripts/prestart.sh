#!/usr/bin/env sh
# Pre-start step of the API (docker-compose runs it before uvicorn): waits for the database named
# by EFNF_DATABASE_URL, then upgrades its schema to the newest migration. Safe to run repeatedly.
set -eu
cd "$(dirname "$0")/.."
python - <<'PY'
import sys
import time

from sqlalchemy import create_engine, text

from app.core.db.session import ensure_sqlite_directory
from app.core.settings import get_settings

url = get_settings().database_url
ensure_sqlite_directory(url)
deadline = time.monotonic() + 60
while True:
    try:
        engine = create_engine(url)
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        engine.dispose()
        break
    except Exception as error:
        if time.monotonic() > deadline:
            sys.exit(f"database not reachable after 60 s: {error}")
        print(f"waiting for the database: {type(error).__name__}", flush=True)
        time.sleep(2)
PY
python -m app migrate
