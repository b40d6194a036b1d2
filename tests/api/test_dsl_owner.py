"""Only api.dsl writes OpenSearch DSL for reports (docs/decisions/0230): an AST scan of every
other api module for dict literals keyed by query or aggregation words."""

from __future__ import annotations

import ast
from pathlib import Path

import api

API = Path(api.__file__).parent
# Keys that only a search body, a query clause or an aggregation has.
DSL_KEYS = frozenset(
    {
        "aggs",
        "bool",
        "cardinality",
        "composite",
        "date_histogram",
        "exists",
        "match_all",
        "must_not",
        "query",
        "range",
        "search_after",
        "should",
        "term",
        "terms",
        "track_total_hits",
    }
)
OWNER = "dsl.py"
# The funnel is its own flow (decision 0215: point-in-time paging through the transport),
# with its formatter in one module, not a report stage.
OTHER_FLOWS = frozenset({"funnel_read.py"})


def dsl_literals(source: str) -> list[tuple[int, str]]:
    """(line, key) of every dict literal in ``source`` with a DSL key."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Dict):
            for key in node.keys:
                if isinstance(key, ast.Constant) and key.value in DSL_KEYS:
                    found.append((node.lineno, str(key.value)))
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "dict":
            found += [(node.lineno, k.arg) for k in node.keywords if k.arg in DSL_KEYS]
    return found


def test_the_scan_sees_dsl() -> None:
    assert dsl_literals('x = {"query": {"term": {"a": 1}}}') == [(1, "query"), (1, "term")]
    assert dsl_literals("x = dict(size=0, aggs={})") == [(1, "aggs")]
    assert dsl_literals('x = {"merchant_id": "m1"}; y = args["range"]') == []
    assert dsl_literals((API / OWNER).read_text())  # the owner does write it


def test_only_api_dsl_writes_dsl() -> None:
    offenders = {
        path.name: hits
        for path in sorted(API.glob("*.py"))
        if path.name != OWNER and path.name not in OTHER_FLOWS
        for hits in [dsl_literals(path.read_text())]
        if hits
    }
    assert offenders == {}, f"DSL outside api/dsl.py (move it there): {offenders}"
