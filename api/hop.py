"""The worker-thread hop of a resolver's blocking work (the engine client blocks).

``anyio.to_thread.run_sync`` cost ~80 µs of CPU per hop under uvloop (a capacity limiter, a
cancel scope and a checkpoint around the thread pool's queue), ``loop.run_in_executor`` on a
pool of the same size ~45 µs (decision 0295). Like anyio's, the call runs in a copy of the
caller's context variables, and at most ``WORKERS`` run at once (anyio's default limit).
Unlike anyio's, a cancelled caller does not wait for a call that already started: it runs
to its end in its thread (a report's reads have no effect but the caches').
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")

WORKERS = 40  # anyio's default thread limit, which this replaces
POOL = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="pulse-api")


async def in_thread(fn: Callable[..., T], *args: object) -> T:
    """``fn(*args)`` in a worker thread, in a copy of the caller's context."""
    call = functools.partial(contextvars.copy_context().run, fn, *args)
    return await asyncio.get_running_loop().run_in_executor(POOL, call)
