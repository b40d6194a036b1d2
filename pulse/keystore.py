"""The key store: random bearer keys, stored only as SHA-256 hashes, with a scope each.

A key's scope is *who* (one merchant, or admin = every merchant) and *what* (read = the
GraphQL API, write = the collector). Read keys never write and write keys never read, so a
leaked ingest key (it sits in a merchant's server config) exposes no analytics, and a leaked
dashboard key cannot inject events.

It lives in ``pulse`` (plumbing below every component) because both ends use it: the API
checks read keys, the collector write keys, and ``ingest`` must not import ``api``.
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
from opensearchpy.exceptions import NotFoundError, RequestError

from pulse.naming import Names

KEY_PREFIX = "pulse_"
KEYS_MAPPING: dict[str, Any] = {
    "dynamic": "strict",
    "properties": {
        "key_id": {"type": "keyword"},
        "merchant_id": {"type": "keyword"},
        "admin": {"type": "boolean"},
        # Absent on keys created before write keys existed: those are read keys.
        "write": {"type": "boolean"},
        "created_at": {"type": "date"},
        "revoked": {"type": "boolean"},
        "label": {"type": "keyword"},
    },
}


@dataclass(frozen=True)
class Principal:
    """Who presents a key: an admin or one merchant, for reading or for writing."""

    key_id: str
    merchant_id: str | None
    admin: bool
    write: bool = False

    def may_read(self, merchant_id: str) -> bool:
        return not self.write and (self.admin or self.merchant_id == merchant_id)

    def may_write(self, merchant_id: object) -> bool:
        """May this key send a record whose ``merchant_id`` field is ``merchant_id``?"""
        return self.write and (self.admin or self.merchant_id == merchant_id)

    @property
    def scope(self) -> str:
        """``read admin``, ``write merchant m1``, ... (what `pulse keys` prints)."""
        who = "admin" if self.admin else f"merchant {self.merchant_id}"
        return f"{'write' if self.write else 'read'} {who}"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def ensure_keys_index(client: OpenSearch, names: Names) -> None:
    """Create the keys index, or add fields a newer Pulse needs (mappings only grow)."""
    if not client.indices.exists(index=names.keys_index):
        try:
            client.indices.create(index=names.keys_index, body={"mappings": KEYS_MAPPING})
            return
        except RequestError as exc:
            if exc.error != "resource_already_exists_exception":
                raise
    client.indices.put_mapping(index=names.keys_index, body=KEYS_MAPPING)


def create_key(
    client: OpenSearch,
    names: Names,
    merchant_id: str | None,
    admin: bool,
    label: str = "",
    write: bool = False,
) -> tuple[str, Principal]:
    """Create a key; returns the plaintext (shown once) and its principal."""
    if admin == (merchant_id is not None):
        raise ValueError("a key is either --admin or for exactly one --merchant")
    ensure_keys_index(client, names)
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    digest = hash_key(key)
    principal = Principal(digest[:12], merchant_id, admin, write)
    doc = {
        "key_id": principal.key_id,
        "merchant_id": merchant_id,
        "admin": admin,
        "write": write,
        "created_at": datetime.now(tz=UTC).isoformat(),
        "revoked": False,
        "label": label,
    }
    client.index(index=names.keys_index, id=digest, body=doc, refresh="wait_for")
    return key, principal


def lookup_hash(client: OpenSearch, names: Names, digest: str) -> Principal | None:
    """The principal of a key's hash, or None when unknown or revoked."""
    try:
        found = client.get(index=names.keys_index, id=digest)
    except NotFoundError:
        return None
    src = found["_source"]
    if src.get("revoked"):
        return None
    return principal_of(src)


def lookup(client: OpenSearch, names: Names, key: str) -> Principal | None:
    """The principal of a presented key, or None when unknown or revoked."""
    if not key.startswith(KEY_PREFIX):
        return None
    return lookup_hash(client, names, hash_key(key))


def principal_of(src: dict[str, Any]) -> Principal:
    return Principal(
        src["key_id"], src.get("merchant_id"), bool(src.get("admin")), bool(src.get("write"))
    )


def list_keys(client: OpenSearch, names: Names) -> list[dict[str, Any]]:
    """Every key's stored document (never the key), oldest first, with its ``scope``."""
    if not client.indices.exists(index=names.keys_index):
        return []
    res = client.search(
        index=names.keys_index, body={"size": 10000, "sort": [{"created_at": "asc"}]}
    )
    docs = [hit["_source"] for hit in res["hits"]["hits"]]
    return [{**doc, "scope": principal_of(doc).scope} for doc in docs]


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
