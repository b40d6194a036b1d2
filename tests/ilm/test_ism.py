"""ISM policies: the exact request bodies, and the choice between ISM and the manager."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from ilm import ism
from pulse.naming import Names
from pulse.settings import Settings

POLICIES = Path(__file__).parents[2] / "ilm" / "policies"
NAMES = Names(namespace="")


def without_fingerprint(body: dict[str, Any]) -> dict[str, Any]:
    body = copy.deepcopy(body)
    policy = body["policy"]
    policy["description"] = policy["description"].rsplit(" [pulse:", 1)[0]
    return body


def test_default_raw_policy_is_the_checked_in_file() -> None:
    body = ism.render_raw_policy(Settings(), NAMES, shards=1)
    assert without_fingerprint(body) == json.loads((POLICIES / "raw-events.json").read_text())


def test_default_rollup_policy_is_the_checked_in_file() -> None:
    body = ism.render_rollup_policy(Settings(), NAMES)
    assert without_fingerprint(body) == json.loads((POLICIES / "rollups.json").read_text())


def test_raw_policy_body_follows_settings() -> None:
    settings = Settings(
        raw_retention_days=30,
        ilm_warm_after_days=2,
        ilm_precreate_days=2,
        ilm_rollover_max_docs=1000,
        ilm_rollover_max_primary_shard_gb=25,
        ilm_warm_replicas=1,
    )
    body = ism.render_raw_policy(settings, Names(namespace="acme"), shards=4)
    assert without_fingerprint(body) == {
        "policy": {
            "description": "Pulse raw events: hot (day index, size rollover) -> warm -> delete",
            "default_state": "hot",
            "states": [
                {
                    "name": "hot",
                    "actions": [],
                    "transitions": [
                        {"state_name": "rollover", "conditions": {"min_doc_count": 1000}},
                        {"state_name": "rollover", "conditions": {"min_size": "100gb"}},
                        {"state_name": "warm", "conditions": {"min_index_age": "5d"}},
                    ],
                },
                {
                    "name": "rollover",
                    "actions": [
                        {
                            "rollover": {
                                "min_doc_count": 1000,
                                "min_primary_shard_size": "25gb",
                                "copy_alias": True,
                            }
                        }
                    ],
                    "transitions": [{"state_name": "warm", "conditions": {"min_index_age": "5d"}}],
                },
                {
                    "name": "warm",
                    "actions": [
                        {"read_only": {}},
                        {"force_merge": {"max_num_segments": 1}},
                        {"replica_count": {"number_of_replicas": 1}},
                    ],
                    "transitions": [
                        {"state_name": "delete", "conditions": {"min_index_age": "33d"}}
                    ],
                },
                {"name": "delete", "actions": [{"delete": {}}], "transitions": []},
            ],
            "ism_template": [{"index_patterns": ["acme-events-*"], "priority": 100}],
        }
    }


def test_rollup_policy_deletes_after_retention_plus_a_month() -> None:
    body = ism.render_rollup_policy(Settings(rollup_retention_days=365), Names(namespace="acme"))
    hot = body["policy"]["states"][0]
    assert hot["transitions"] == [{"state_name": "delete", "conditions": {"min_index_age": "396d"}}]
    assert body["policy"]["ism_template"] == [
        {"index_patterns": ["acme-rollups-*"], "priority": 100}
    ]


def test_fingerprint_changes_with_the_policy() -> None:
    a = ism.render_raw_policy(Settings(), NAMES, shards=1)
    b = ism.render_raw_policy(Settings(raw_retention_days=91), NAMES, shards=1)
    assert ism.stored_fingerprint(a) != ism.stored_fingerprint(b)
    assert ism.stored_fingerprint(a) == ism.stored_fingerprint(
        ism.render_raw_policy(Settings(), NAMES, shards=1)
    )
    # A stored policy as the server returns it, with server-side additions, still matches.
    stored = {"_seq_no": 3, "_primary_term": 1, "policy": {**a["policy"], "schema_version": 21}}
    assert ism.stored_fingerprint(stored) == ism.stored_fingerprint(a)


def test_requests_are_exact() -> None:
    body = {"policy": {"description": "x"}}
    create = ism.put_policy_request("pulse-events", body)
    assert (create.method, create.path, create.body, create.params) == (
        "PUT",
        "/_plugins/_ism/policies/pulse-events",
        body,
        {},
    )
    update = ism.put_policy_request("pulse-events", body, seq_no=7, primary_term=2)
    assert update.params == {"if_seq_no": 7, "if_primary_term": 2}
    add = ism.add_policy_request("events-g1-2026.01.01-000001", "pulse-events")
    assert (add.method, add.path, add.body) == (
        "POST",
        "/_plugins/_ism/add/events-g1-2026.01.01-000001",
        {"policy_id": "pulse-events"},
    )
    alias = ism.rollover_alias_request("events-g1-2026.01.01-000002", "events-g1-2026.01.01")
    assert (alias.method, alias.path, alias.body) == (
        "PUT",
        "/events-g1-2026.01.01-000002/_settings",
        {"index": {"plugins.index_state_management.rollover_alias": "events-g1-2026.01.01"}},
    )
    assert ism.get_policy_request("p").path == "/_plugins/_ism/policies/p"
    assert ism.explain_request("events-*").path == "/_plugins/_ism/explain/events-*"


def test_unmanaged_reads_an_explain_answer() -> None:
    explain = {
        "events-g1-2026.01.01-000001": {"index.plugins.index_state_management.policy_id": "p"},
        "events-g1-2026.01.02-000001": {"index.plugins.index_state_management.policy_id": None},
        "events-g1-2026.01.03-000001": {"index.opendistro.index_state_management.policy_id": None},
        "total_managed_indices": 1,
    }
    assert ism.unmanaged(explain) == ["events-g1-2026.01.02-000001", "events-g1-2026.01.03-000001"]


def test_injected_plugin_list_decides_alone() -> None:
    client: Any = None  # never called when the plugin list is given
    assert ism.ism_available(client, ["opensearch-index-management", "opensearch-security"])
    assert not ism.ism_available(client, ["opensearch-security"])
    assert not ism.ism_available(client, [])
