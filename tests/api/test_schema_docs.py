"""The schema documents itself: GraphiQL's docs pane is the API reference (issue 18)."""

from __future__ import annotations

from typing import Any

from graphql import get_introspection_query, graphql_sync

from api.app import EXTENSIONS
from api.schema import build_schema


def _introspect() -> dict[str, Any]:
    served = build_schema(EXTENSIONS)._schema  # the served schema, as graphql-core sees it
    answer = graphql_sync(served, get_introspection_query(descriptions=True))
    assert answer.errors is None
    assert answer.data is not None
    return answer.data["__schema"]


def _blank(text: str | None) -> bool:
    return not (text or "").strip()


def undocumented(schema: dict[str, Any]) -> list[str]:
    """Every type, field, argument, input field and enum value without a description
    (graphql's own introspection types, named __*, excepted)."""
    missing: list[str] = []
    for t in schema["types"]:
        name = t["name"]
        if name.startswith("__"):
            continue
        if _blank(t["description"]):
            missing.append(name)
        for f in t["fields"] or []:
            if _blank(f["description"]):
                missing.append(f"{name}.{f['name']}")
            missing += [
                f"{name}.{f['name']}({a['name']})" for a in f["args"] if _blank(a["description"])
            ]
        for f in t["inputFields"] or []:
            if _blank(f["description"]):
                missing.append(f"{name}.{f['name']}")
        for v in t["enumValues"] or []:
            if _blank(v["description"]):
                missing.append(f"{name}.{v['name']}")
    return missing


def test_every_schema_element_has_a_description() -> None:
    assert undocumented(_introspect()) == []


def test_the_check_sees_each_kind_of_element() -> None:
    """The walk covers types, fields, arguments, input fields and enum values."""
    schema = _introspect()
    by_name = {t["name"]: t for t in schema["types"]}
    by_name["Report"]["description"] = None
    metrics = next(f for f in by_name["Query"]["fields"] if f["name"] == "metrics")
    next(a for a in metrics["args"] if a["name"] == "merchantId")["description"] = ""
    by_name["TimeRange"]["inputFields"][0]["description"] = None
    by_name["Metric"]["enumValues"][0]["description"] = " "
    by_name["Point"]["fields"][0]["description"] = None
    assert sorted(undocumented(schema)) == [
        "Metric.EVENTS",
        "Point.start",
        "Query.metrics(merchantId)",
        "Report",
        "TimeRange.start",
    ]
