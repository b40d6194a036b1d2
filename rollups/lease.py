"""What a rollup worker raises when it may no longer write for a shard.

The leases themselves are the shard documents (rollups.shards, docs/decisions/0220): one per
shard, renewed and committed by compare-and-set, so a worker that lost one learns it on its
next write to that document and stops writing that shard's rollups before it does.
"""

from __future__ import annotations


class LeaseLost(RuntimeError):
    """Another worker holds (or took over) a shard this worker needed."""
