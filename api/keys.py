"""API keys as the GraphQL API sees them.

The key store itself (hashing, scopes, create/list/revoke) is ``pulse.keystore``: the collector
checks write keys against the same store and ``ingest`` may not import ``api``. The API takes
read keys only: ``schema._principal`` refuses a write key with ``FORBIDDEN``.
"""

from __future__ import annotations

from opensearchpy import OpenSearch

from pulse import keystore
from pulse.keystore import (
    KEY_PREFIX,
    KEYS_MAPPING,
    Principal,
    create_key,
    ensure_keys_index,
    hash_key,
    list_keys,
    revoke,
)
from pulse.naming import Names

__all__ = [
    "KEYS_MAPPING",
    "KEY_PREFIX",
    "Principal",
    "create_key",
    "ensure_keys_index",
    "hash_key",
    "list_keys",
    "lookup",
    "revoke",
]


def lookup(client: OpenSearch, names: Names, key: str) -> Principal | None:
    """The principal of a presented key (read or write), or None when unknown or revoked."""
    return keystore.lookup(client, names, key)
