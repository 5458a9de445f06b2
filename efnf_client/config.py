"""Where the CLI finds the server's URL and the API key.

First found wins: the ``--url`` / ``--api-key`` flags, then the ``EFNF_URL`` / ``EFNF_API_KEY``
environment variables, then the config file, a TOML file with top-level ``url`` and ``api_key``:

    url = "http://127.0.0.1:8000"
    api_key = "efnf_..."

at ``EFNF_CONFIG`` if set, else ``$XDG_CONFIG_HOME/efnf/config.toml`` (by default
``~/.config/efnf/config.toml``). Without any URL, ``http://127.0.0.1:8000`` (``scripts/serve.sh``).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_URL = "http://127.0.0.1:8000"
KNOWN_KEYS = frozenset({"url", "api_key"})


class ConfigError(Exception):
    """The config file cannot be read or holds something unexpected."""


@dataclass(frozen=True)
class Connection:
    url: str
    api_key: str | None
    url_from: str
    api_key_from: str | None


def config_path(environ: Mapping[str, str]) -> Path:
    if environ.get("EFNF_CONFIG"):
        return Path(environ["EFNF_CONFIG"]).expanduser()
    base = environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base).expanduser() / "efnf" / "config.toml"


def read_config_file(path: Path) -> dict[str, str]:
    """The file's ``url`` and ``api_key`` (an absent file is empty)."""
    if not path.is_file():
        return {}
    try:
        values = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise ConfigError(f"config file {path}: {error}") from error
    unknown = set(values) - KNOWN_KEYS
    if unknown:
        raise ConfigError(
            f"config file {path}: unknown key(s) {sorted(unknown)}; expected {sorted(KNOWN_KEYS)}"
        )
    for key, value in values.items():
        if not isinstance(value, str):
            raise ConfigError(f"config file {path}: {key} must be a string")
    return values


def resolve_connection(
    url: str | None, api_key: str | None, environ: Mapping[str, str] | None = None
) -> Connection:
    """The URL and key from the flags, the environment or the config file, in that order."""
    environ = os.environ if environ is None else environ
    path = config_path(environ)
    from_file = read_config_file(path)
    url_choices = [
        (url, "--url"),
        (environ.get("EFNF_URL"), "EFNF_URL"),
        (from_file.get("url"), str(path)),
        (DEFAULT_URL, "default"),
    ]
    key_choices = [
        (api_key, "--api-key"),
        (environ.get("EFNF_API_KEY"), "EFNF_API_KEY"),
        (from_file.get("api_key"), str(path)),
    ]
    chosen_url, url_from = next((value, where) for value, where in url_choices if value)
    chosen_key, key_from = next(
        ((value, where) for value, where in key_choices if value), (None, None)
    )
    return Connection(chosen_url, chosen_key, url_from, key_from)
