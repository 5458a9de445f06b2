"""Dependencies point one way: flows <- app.core <- (app's web layer, worker); the client
talks HTTP only (tests/test_client.py checks it in a fresh interpreter).

Read from the source with ``ast``, so a lazy import inside a function counts too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _imports(package: str) -> dict[str, set[str]]:
    """Every module each source file of ``package`` imports (absolute names)."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module)
        found[str(path.relative_to(ROOT))] = names
    return found


def _offending(package: str, forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    def hits(name: str) -> bool:
        return any(name == f or name.startswith(f + ".") for f in forbidden)

    offending = {
        path: sorted(name for name in names if hits(name))
        for path, names in _imports(package).items()
    }
    return {path: names for path, names in offending.items() if names}


WEB_STACK = ("fastapi", "starlette", "uvicorn", "h11")
APP_OUTSIDE_CORE = (
    "app.api",
    "app.web",
    "app.main",
    "app.batching",
    "app.model_cache",
    "app.resolution",
    "app.transport",
    "app.metrics",
    "app.inputs",
    "app.limits",
    "app.previews",
    "app.gc_tuning",
    "app.key_admin",
    "app.__main__",
)


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("flows", ("app", "worker", "efnf_client", "sqlalchemy", "celery", *WEB_STACK)),
        ("app/core", (*APP_OUTSIDE_CORE, "worker", "efnf_client", *WEB_STACK)),
        ("worker", (*APP_OUTSIDE_CORE, "efnf_client", *WEB_STACK)),
        ("efnf_client", ("app", "flows", "worker")),
    ],
)
def test_dependencies_point_one_way(package: str, forbidden: tuple[str, ...]) -> None:
    assert _offending(package, forbidden) == {}


def test_the_check_finds_imports_that_exist() -> None:
    # The negative control: the web layer does import the web stack, so the check can fail.
    assert _offending("app/api", WEB_STACK)
    assert "app.core.settings" in _imports("app/api")["app/api/deps.py"]
