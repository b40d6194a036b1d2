"""api.hop.in_thread: a resolver's blocking call in a worker thread, as anyio's to_thread ran
it: the caller's context variables, its value or its exception, off the event loop."""

from __future__ import annotations

import asyncio
import contextvars
import threading

import pytest

from api.hop import in_thread

REQUEST = contextvars.ContextVar("request", default="none")


def _seen(extra: str) -> tuple[str, str]:
    return REQUEST.get() + extra, threading.current_thread().name


def _fails() -> None:
    raise ValueError("from the worker")


def test_the_call_runs_off_the_loop_with_the_callers_context() -> None:
    async def main() -> tuple[str, str, str]:
        REQUEST.set("r1")
        value, thread = await in_thread(_seen, "!")
        return value, thread, threading.current_thread().name

    value, thread, loop_thread = asyncio.run(main())
    assert value == "r1!"  # the context var set before the hop, and the argument
    assert thread.startswith("pulse-api") and thread != loop_thread


def test_the_callee_cannot_change_the_callers_context() -> None:
    def sets() -> None:
        REQUEST.set("changed in the worker")

    async def main() -> str:
        REQUEST.set("mine")
        await in_thread(sets)
        return REQUEST.get()

    assert asyncio.run(main()) == "mine"


def test_an_exception_reaches_the_caller() -> None:
    with pytest.raises(ValueError, match="from the worker"):
        asyncio.run(in_thread(_fails))
