"""ISM (OpenSearch Index State Management) policies: render, detect, and the exact requests.

The policy files in ``ilm/policies/`` are literal ``PUT _plugins/_ism/policies/<id>`` bodies
with the default settings; ``render_*`` replaces the settings-dependent values. Ages are index
ages (from creation), so they carry margins: a day index may be created ``ilm_precreate_days``
early and holds one day of events (docs/decisions/0022).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from opensearchpy import OpenSearch
from opensearchpy.exceptions import TransportError

from pulse.naming import Names
from pulse.settings import Settings

ISM_PLUGIN = "opensearch-index-management"
ISM_BASE = "/_plugins/_ism"
RAW_POLICY_FILE = "raw-events.json"
ROLLUP_POLICY_FILE = "rollups.json"
ROLLUP_MONTH_MAX_DAYS = 31


@dataclass(frozen=True)
class Request:
    """One HTTP request to the engine, as data (so tests can check it exactly)."""

    method: str
    path: str
    body: dict[str, Any] | None = None
    params: dict[str, Any] = field(default_factory=dict)

    def send(self, client: OpenSearch) -> Any:
        return client.transport.perform_request(
            self.method, self.path, params=self.params or None, body=self.body
        )


def load_policy_file(name: str) -> dict[str, Any]:
    text = resources.files("ilm.policies").joinpath(name).read_text(encoding="utf-8")
    body: dict[str, Any] = json.loads(text)
    return body


def raw_policy_id(names: Names) -> str:
    return f"{names.template_prefix}-events"


def rollup_policy_id(names: Names) -> str:
    return f"{names.template_prefix}-rollups"


def render_raw_policy(settings: Settings, names: Names, shards: int) -> dict[str, Any]:
    """The raw-events policy body for these settings (``shards``: primaries of a day index)."""
    body = load_policy_file(RAW_POLICY_FILE)
    policy = body["policy"]
    margin = 1 + settings.ilm_precreate_days
    warm_age = f"{settings.ilm_warm_after_days + margin}d"
    delete_age = f"{settings.raw_retention_days + margin}d"
    shard_gb = settings.ilm_rollover_max_primary_shard_gb
    hot, rollover, warm, _ = _states(policy, "hot", "rollover", "warm", "delete")
    hot["transitions"] = [
        _to("rollover", min_doc_count=settings.ilm_rollover_max_docs),
        _to("rollover", min_size=_gb(shard_gb * shards)),
        _to("warm", min_index_age=warm_age),
    ]
    rollover["actions"] = [
        {
            "rollover": {
                "min_doc_count": settings.ilm_rollover_max_docs,
                "min_primary_shard_size": _gb(shard_gb),
                "copy_alias": True,
            }
        }
    ]
    rollover["transitions"] = [_to("warm", min_index_age=warm_age)]
    warm["actions"][2] = {"replica_count": {"number_of_replicas": settings.ilm_warm_replicas}}
    warm["transitions"] = [_to("delete", min_index_age=delete_age)]
    policy["ism_template"] = [{"index_patterns": [names.raw_pattern], "priority": 100}]
    return _fingerprinted(body)


def render_rollup_policy(settings: Settings, names: Names) -> dict[str, Any]:
    """The rollups policy body: delete once the newest hour of the month is past retention."""
    body = load_policy_file(ROLLUP_POLICY_FILE)
    policy = body["policy"]
    (hot,) = _states(policy, "hot")
    delete_age = f"{settings.rollup_retention_days + ROLLUP_MONTH_MAX_DAYS}d"
    hot["transitions"] = [_to("delete", min_index_age=delete_age)]
    policy["ism_template"] = [{"index_patterns": [names.rollups_pattern], "priority": 100}]
    return _fingerprinted(body)


def _states(policy: dict[str, Any], *wanted: str) -> list[dict[str, Any]]:
    by_name = {state["name"]: state for state in policy["states"]}
    return [by_name[name] for name in wanted]


def _to(state: str, **condition: Any) -> dict[str, Any]:
    # ISM accepts exactly one condition per transition; several transitions are OR-ed in order.
    return {"state_name": state, "conditions": condition}


def _gb(value: float) -> str:
    return f"{value:g}gb"


def _fingerprinted(body: dict[str, Any]) -> dict[str, Any]:
    """Append a hash of the body to the description: the server adds defaults (retry, times)
    to a stored policy, so equality is checked on this fingerprint, not on the whole body."""
    digest = fingerprint(body)
    body["policy"]["description"] = f"{body['policy']['description']} [pulse:{digest}]"
    return body


def fingerprint(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:12]


def stored_fingerprint(stored: dict[str, Any]) -> str | None:
    """The fingerprint inside a ``GET _plugins/_ism/policies/<id>`` answer."""
    description = str(stored.get("policy", {}).get("description", ""))
    if "[pulse:" not in description:
        return None
    return description.rsplit("[pulse:", 1)[1].rstrip("]")


# Requests -------------------------------------------------------------------------------


def put_policy_request(
    policy_id: str, body: dict[str, Any], seq_no: int | None = None, primary_term: int | None = None
) -> Request:
    """Create, or (with the stored seq_no/primary_term) update, a policy."""
    params: dict[str, Any] = {}
    if seq_no is not None and primary_term is not None:
        params = {"if_seq_no": seq_no, "if_primary_term": primary_term}
    return Request("PUT", f"{ISM_BASE}/policies/{policy_id}", body, params)


def get_policy_request(policy_id: str) -> Request:
    return Request("GET", f"{ISM_BASE}/policies/{policy_id}")


def add_policy_request(index: str, policy_id: str) -> Request:
    """Attach a policy to an existing index (``ism_template`` only covers new indices)."""
    return Request("POST", f"{ISM_BASE}/add/{index}", {"policy_id": policy_id})


def explain_request(index_pattern: str) -> Request:
    return Request("GET", f"{ISM_BASE}/explain/{index_pattern}")


def rollover_alias_request(index: str, alias: str) -> Request:
    """ISM rolls over the alias named in this index setting: the day's write alias."""
    body = {"index": {"plugins.index_state_management.rollover_alias": alias}}
    return Request("PUT", f"/{index}/_settings", body)


def unmanaged(explain: dict[str, Any]) -> list[str]:
    """Indices in an explain answer that have no ISM policy."""
    found = []
    for index, state in explain.items():
        if index == "total_managed_indices" or not isinstance(state, dict):
            continue
        policy = state.get("index.plugins.index_state_management.policy_id") or state.get(
            "policy_id"
        )
        if not policy:
            found.append(index)
    return sorted(found)


# Detection ------------------------------------------------------------------------------


def installed_plugins(client: OpenSearch) -> list[str]:
    rows = client.cat.plugins(format="json")
    return sorted({str(row.get("component", "")) for row in rows or []})


def ism_available(client: OpenSearch, plugins: list[str] | None = None) -> bool:
    """True when the engine has ISM. An injected ``plugins`` list decides alone; otherwise
    ``_cat/plugins`` is read and, when it is silent (some managed services hide it), the ISM
    endpoint is probed."""
    if plugins is not None:
        return ISM_PLUGIN in plugins
    if ISM_PLUGIN in installed_plugins(client):
        return True
    try:
        # ``ignore``: an engine without ISM answers 400/404 here; that is an answer, not a
        # failure worth a warning in the log on every pass.
        answer = client.transport.perform_request(
            "GET", f"{ISM_BASE}/policies", params={"size": 1, "ignore": (400, 404, 405)}
        )
    except TransportError:
        return False
    return isinstance(answer, dict) and "policies" in answer
