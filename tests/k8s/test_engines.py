"""Kafka (Strimzi) and OpenSearch (OpenSearch operator) as each overlay renders them:
durable topics sized for the peak, a KRaft quorum, dedicated cluster managers and hot/warm
data nodes, and settings that agree with what the pulse components are told."""

from __future__ import annotations

import math

from tests.k8s.manifests import Manifest, config_map_data, find, one

PEAK_EVENTS_PER_S_PER_BILLION_PER_DAY = 139_000  # DESIGN.md: half a day's events in one hour
EVENTS_PER_S_PER_PARTITION = 3_000  # one indexer consumer, conservatively (bench/ measures it)
FOURTEEN_DAYS_MS = 14 * 24 * 3600 * 1000


def _topic(docs: list[Manifest], name: str) -> Manifest:
    topic = one(docs, "KafkaTopic", name)
    assert topic["spec"]["topicName"] == name
    return topic


def test_topics_are_replicated_and_durable(docs: list[Manifest]) -> None:
    for name in ("events.raw", "events.dlq"):
        spec = _topic(docs, name)["spec"]
        assert spec["replicas"] == 3, name
        assert int(spec["config"]["min.insync.replicas"]) == 2, name
        assert spec["config"]["cleanup.policy"] == "delete", name
    raw = _topic(docs, "events.raw")["spec"]["config"]
    assert int(raw["retention.ms"]) >= FOURTEEN_DAYS_MS, "the reprocessing horizon"
    dlq = _topic(docs, "events.dlq")["spec"]["config"]
    assert int(dlq["retention.ms"]) >= int(raw["retention.ms"])
    assert int(dlq["max.message.bytes"]) > int(raw["max.message.bytes"]), "reason + original"


def test_components_are_told_the_topic_sizes(docs: list[Manifest]) -> None:
    config = config_map_data(docs, "pulse-config")
    assert int(config["PULSE_RAW_PARTITIONS"]) == _topic(docs, "events.raw")["spec"]["partitions"]
    assert int(config["PULSE_DLQ_PARTITIONS"]) == _topic(docs, "events.dlq")["spec"]["partitions"]


def test_prod_partitions_cover_the_peak(rendered: dict[str, list[Manifest]]) -> None:
    peak = PEAK_EVENTS_PER_S_PER_BILLION_PER_DAY  # one billion events/day
    needed = math.ceil(peak / EVENTS_PER_S_PER_PARTITION)
    partitions = _topic(rendered["prod"], "events.raw")["spec"]["partitions"]
    assert partitions >= needed, f"{partitions} partitions < {needed} for {peak} events/s"
    brokers = one(rendered["prod"], "KafkaNodePool", "broker")["spec"]["replicas"]
    assert partitions % brokers == 0, "partition leaders spread evenly over the brokers"


def test_kafka_is_kraft_with_a_quorum(docs: list[Manifest]) -> None:
    kafka = one(docs, "Kafka", "pulse")
    pools = find(docs, "KafkaNodePool")
    assert pools and all(p["metadata"]["labels"]["strimzi.io/cluster"] == "pulse" for p in pools)
    controllers = sum(p["spec"]["replicas"] for p in pools if "controller" in p["spec"]["roles"])
    brokers = sum(p["spec"]["replicas"] for p in pools if "broker" in p["spec"]["roles"])
    assert controllers >= 3 and controllers % 2 == 1, "a KRaft quorum survives one loss"
    assert brokers >= 3, "replication 3 needs three brokers"
    config = kafka["spec"]["kafka"]["config"]
    assert int(config["min.insync.replicas"]) == 2
    assert int(config["default.replication.factor"]) == 3
    assert config["auto.create.topics.enable"] is False
    assert config["unclean.leader.election.enable"] is False
    for topic in find(docs, "KafkaTopic"):
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == "pulse"
        assert topic["spec"]["replicas"] <= brokers


def test_kafka_bootstrap_setting_points_at_the_cluster(docs: list[Manifest]) -> None:
    kafka = one(docs, "Kafka", "pulse")
    plain = [
        listener
        for listener in kafka["spec"]["kafka"]["listeners"]
        if listener["type"] == "internal" and listener["tls"] is False
    ]
    expected = f"{kafka['metadata']['name']}-kafka-bootstrap:{plain[0]['port']}"
    assert config_map_data(docs, "pulse-config")["PULSE_KAFKA_BOOTSTRAP"] == expected


def _pools(docs: list[Manifest]) -> dict[str, Manifest]:
    cluster = one(docs, "OpenSearchCluster", "pulse-opensearch")
    return {p["component"]: p for p in cluster["spec"]["nodePools"]}


def test_opensearch_has_dedicated_managers_and_hot_warm_nodes(docs: list[Manifest]) -> None:
    pools = _pools(docs)
    managers = [p for p in pools.values() if "cluster_manager" in p["roles"]]
    assert len(managers) == 1 and managers[0]["roles"] == ["cluster_manager"], "dedicated"
    assert managers[0]["replicas"] % 2 == 1
    temps = {}
    for pool in pools.values():
        if "data" in pool["roles"]:
            temps[pool["additionalConfig"]["node.attr.temp"]] = pool
            assert "cluster_manager" not in pool["roles"]
    assert set(temps) == {"hot", "warm"}
    assert "ingest" in temps["hot"]["roles"] and "ingest" not in temps["warm"]["roles"]
    replicas = int(config_map_data(docs, "pulse-config")["PULSE_RAW_REPLICAS"])
    assert replicas < temps["hot"]["replicas"], "every replica shard needs another hot node"


def test_prod_opensearch_survives_a_node_loss(rendered: dict[str, list[Manifest]]) -> None:
    docs = rendered["prod"]
    pools = _pools(docs)
    assert pools["cluster-managers"]["replicas"] >= 3
    config = config_map_data(docs, "pulse-config")
    assert int(config["PULSE_RAW_REPLICAS"]) >= 1
    # Warm indices soon outlive the Kafka retention (no rebuild possible): keep a replica.
    assert int(config["PULSE_ILM_WARM_REPLICAS"]) >= 1
    for pool in pools.values():
        assert pool["pdb"] == {"enable": True, "maxUnavailable": 1}
    general = one(docs, "OpenSearchCluster", "pulse-opensearch")["spec"]["general"]
    assert general["drainDataNodes"] is True


def test_engines_can_be_applied_first(docs: list[Manifest]) -> None:
    """docs/operations.md deploys the engines before the components that need their topics:
    `kubectl apply -k ... -l 'app.kubernetes.io/component in (kafka,opensearch)'`."""
    engine_kinds = {"Kafka", "KafkaNodePool", "KafkaTopic", "OpenSearchCluster"}
    for doc in docs:
        component = doc["metadata"].get("labels", {}).get("app.kubernetes.io/component")
        is_engine = component in {"kafka", "opensearch"}
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        assert is_engine == (doc["kind"] in engine_kinds), where
