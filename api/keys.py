"""API keys: random bearer tokens, stored only as SHA-256 hashes, scoped to a merchant or admin.

Keys are 256-bit random, so a fast unsalted hash is enough (nothing to brute-force); the
plaintext is shown once at creation and never stored.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from opensearchpy import OpenSearch
from opensearchpy.exceptions import NotFoundError

from pulse.naming import Names
from storage.templates import ensure_index

KEY_PREFIX = "pulse_"
KEYS_MAPPING: dict[str, Any] = {
    "dynamic": "strict",
    "properties": {
        "key_id": {"type": "keyword"},
        "merchant_id": {"type": "keyword"},
        "admin": {"type": "boolean"},
        "created_at": {"type": "date"},
        "revoked": {"type": "boolean"},
        "label": {"type": "keyword"},
    },
}


@dataclass(frozen=True)
class Principal:
    """Who is asking: an admin, or one merchant."""

    key_id: str
    merchant_id: str | None
    admin: bool

    def may_read(self, merchant_id: str) -> bool:
        return self.admin or self.merchant_id == merchant_id


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def ensure_keys_index(client: OpenSearch, names: Names) -> None:
    if not client.indices.exists(index=names.keys_index):
        ensure_index(client, names.keys_index)
        client.indices.put_mapping(index=names.keys_index, body=KEYS_MAPPING)


def create_key(
    client: OpenSearch, names: Names, merchant_id: str | None, admin: bool, label: str = ""
) -> tuple[str, Principal]:
    """Create a key; returns the plaintext (shown once) and its principal."""
    if admin == (merchant_id is not None):
        raise ValueError("a key is either --admin or for exactly one --merchant")
    ensure_keys_index(client, names)
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    digest = hash_key(key)
    key_id = digest[:12]
    doc = {
        "key_id": key_id,
        "merchant_id": merchant_id,
        "admin": admin,
        "created_at": datetime.now(tz=UTC).isoformat(),
        "revoked": False,
        "label": label,
    }
    client.index(index=names.keys_index, id=digest, body=doc, refresh="wait_for")
    return key, Principal(key_id, merchant_id, admin)


def lookup(client: OpenSearch, names: Names, key: str) -> Principal | None:
    """The principal of a presented key, or None when unknown or revoked."""
    if not key.startswith(KEY_PREFIX):
        return None
    try:
        found = client.get(index=names.keys_index, id=hash_key(key))
    except NotFoundError:
        return None
    src = found["_source"]
    if src.get("revoked"):
        return None
    return Principal(src["key_id"], src.get("merchant_id"), bool(src.get("admin")))


def list_keys(client: OpenSearch, names: Names) -> list[dict[str, Any]]:
    if not client.indices.exists(index=names.keys_index):
        return []
    res = client.search(
        index=names.keys_index, body={"size": 10000, "sort": [{"created_at": "asc"}]}
    )
    return [hit["_source"] for hit in res["hits"]["hits"]]


def revoke(client: OpenSearch, names: Names, key_id: str) -> bool:
    """Revoke by key id (the first 12 hex digits of the hash); True if a key was revoked."""
    res = client.search(
        index=names.keys_index, body={"query": {"term": {"key_id": key_id}}, "size": 10}
    )
    hits = res["hits"]["hits"]
    for hit in hits:
        client.update(
            index=names.keys_index, id=hit["_id"], body={"doc": {"revoked": True}}, refresh=True
        )
    return bool(hits)
