"""The OpenAPI document as this deployment enforces it.

FastAPI builds the document from the request models, whose bounds are the library's (``steps <=
10,000,000``); a deployment refuses more (``EFNF_MAX_STEPS``, 1,000,000 by default). Each
:data:`app.limits.SCHEMA_LIMITS` entry tightens one property to ``min(library bound, setting)``,
so that the published schema, the docs, generated clients and the dashboard's form all show the
limits a request is actually held to. Only request schemas are bounded: a component that
responses share (``FlowConfig``, ``TrainConfig``) gets a request-side copy, ``<Name>-Input``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from app.core.settings import Settings
from app.limits import SCHEMA_LIMITS, SchemaLimit

Schema = dict[str, Any]
BOUNDED_TYPES = ("integer", "number", "array")


def _component_name(reference: str) -> str:
    return reference.rsplit("/", 1)[-1]


def _resolve(schemas: dict[str, Schema], node: Schema) -> Schema:
    while "$ref" in node:
        node = schemas[_component_name(node["$ref"])]
    if len(node.get("allOf", ())) == 1 and "properties" not in node:
        return _resolve(schemas, node["allOf"][0])
    return node


def _request_only(schemas: dict[str, Schema], node: Schema) -> Schema:
    """``node`` with a reference to a shared component made a reference to its request-side
    copy ``<Name>-Input`` (FastAPI's own name for one), created on first use.

    Responses use the same components (``JobOut.training`` is a ``TrainConfig``), and a job
    accepted under an older, higher limit must still match the response schema: limits bound
    what a request may send, not what the service has stored.
    """
    holder = node["allOf"][0] if len(node.get("allOf", ())) == 1 else node
    if "$ref" not in holder:
        return node
    name = _component_name(holder["$ref"])
    if not name.endswith("-Input"):
        copy = f"{name}-Input"
        schemas.setdefault(copy, copy_of(schemas[name]))
        holder["$ref"] = f"#/components/schemas/{copy}"
    return node


def copy_of(schema: Schema) -> Schema:
    return json.loads(json.dumps(schema))


def schema_property(schemas: dict[str, Schema], component: str, path: str) -> Schema:
    """The schema of the property at dotted ``path`` of ``component``, following ``$ref``s
    (each made request-only on the way, see :func:`_request_only`).

    Raises:
        KeyError: the path does not name a property.
    """
    node = schemas[component]
    for part in path.split("."):
        node = _resolve(schemas, _request_only(schemas, node))["properties"][part]
    return node


def bounded_nodes(schemas: dict[str, Schema], node: Schema) -> list[Schema]:
    """The schema(s) a bound applies to: the property, or its non-null ``anyOf`` branches."""
    node = _resolve(schemas, _request_only(schemas, node))
    if "anyOf" in node:
        branches = [_resolve(schemas, branch) for branch in node["anyOf"]]
        return [branch for branch in branches if branch.get("type") in BOUNDED_TYPES]
    return [node]


def apply_limit(schemas: dict[str, Schema], limit: SchemaLimit, value: float) -> None:
    """Lowers ``limit.keyword`` of the property to ``value`` (a lower library bound stays)."""
    nodes = bounded_nodes(schemas, schema_property(schemas, limit.schema, limit.path))
    if not nodes:
        raise KeyError(f"{limit.schema}.{limit.path} has no numeric or array schema to bound")
    for node in nodes:
        node[limit.keyword] = min(node.get(limit.keyword, math.inf), value)


def install_limited_openapi(
    app: FastAPI, settings: Settings, components: dict[str, Schema] | None = None
) -> None:
    """Makes ``app.openapi()`` add ``components`` (schemas that routes reference by ``$ref``
    but FastAPI does not see, e.g. a body parsed by hand) and apply :data:`SCHEMA_LIMITS`."""
    build: Callable[[], Schema] = app.openapi

    def openapi() -> Schema:
        if app.openapi_schema is None:
            document = build()
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            schemas.update(components or {})
            for limit in SCHEMA_LIMITS:
                apply_limit(schemas, limit, getattr(settings, limit.setting))
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
