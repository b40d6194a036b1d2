"""Index actions (elastic/curator style): each validates in ``__init__``, describes itself in
``dry_run()``, and changes the engine in ``apply()``.

``apply()`` is retried (tenacity) and verified: every attempt first asks ``done()`` (the
outcome, read back from the engine), so an attempt whose answer was lost is not repeated, and
an attempt that returned without reaching the outcome counts as failed.
"""

from __future__ import annotations

import contextlib
import logging
from abc import ABC, abstractmethod
from datetime import date
from typing import Any, ClassVar

from opensearchpy import OpenSearch
from opensearchpy.exceptions import ConnectionError as OSConnectionError
from opensearchpy.exceptions import ConnectionTimeout, NotFoundError
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from ilm.inventory import RAW, IndexInfo
from storage.templates import desired_templates, ensure_raw_day

log = logging.getLogger(__name__)


class NotYetDone(RuntimeError):
    """An attempt returned but the outcome is not visible: retry."""


class Refused(RuntimeError):
    """A safety check failed: the action must not proceed (never retried)."""


RETRYABLE = (NotYetDone, OSConnectionError, ConnectionTimeout)


class Action(ABC):
    """One change to the engine, planned from an inventory snapshot."""

    kind: ClassVar[str]
    attempts: ClassVar[int] = 3

    def __init__(self, client: OpenSearch, target: str) -> None:
        if not target:
            raise ValueError(f"{type(self).__name__} needs a target")
        self.client = client
        self.target = target

    @abstractmethod
    def describe(self) -> str:
        """What the action will do, in a few words."""

    @abstractmethod
    def done(self) -> bool:
        """The outcome, read back from the engine."""

    @abstractmethod
    def _execute(self) -> None:
        """One attempt at the change; must be safe to repeat."""

    def dry_run(self) -> str:
        return f"{self.kind:<12} {self.target}: {self.describe()}"

    def apply(self) -> None:
        retrying = Retrying(
            stop=stop_after_attempt(self.attempts),
            wait=wait_exponential(multiplier=0.2, max=2),
            retry=retry_if_exception_type(RETRYABLE),
            reraise=True,
        )
        for attempt in retrying:
            with attempt:
                if self.done():
                    return
                self._execute()
                if not self.done():
                    raise NotYetDone(self.dry_run())
        log.info("ilm action applied", extra={"action": self.kind, "target": self.target})


def _flatten(settings: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """{"index": {"a": 1}} and {"a": "1"} both become {"a": "1"} (how engines echo settings)."""
    flat: dict[str, str] = {}
    for key, value in settings.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{path}."))
        else:
            flat[path.removeprefix("index.")] = str(value).lower()
    return flat


def _template_view(body: dict[str, Any]) -> tuple[Any, ...]:
    template = body.get("template", {})
    return (
        sorted(body.get("index_patterns", [])),
        int(body.get("priority", 0)),
        _flatten(template.get("settings", {})),
        template.get("mappings", {}),
    )


class PutTemplates(Action):
    """Put the raw and rollup index templates when the stored ones differ."""

    kind = "template"

    def __init__(self, client: OpenSearch, desired: dict[str, dict[str, Any]]) -> None:
        super().__init__(client, ",".join(sorted(desired)))
        self.desired = desired

    def describe(self) -> str:
        return "put index templates (mappings, settings)"

    def _stored(self, name: str) -> dict[str, Any] | None:
        try:
            found = self.client.indices.get_index_template(name=name)
        except NotFoundError:
            return None
        templates = found.get("index_templates", [])
        return dict(templates[0]["index_template"]) if templates else None

    def done(self) -> bool:
        for name, body in self.desired.items():
            stored = self._stored(name)
            if stored is None or _template_view(stored) != _template_view(body):
                return False
        return True

    def _execute(self) -> None:
        for name, body in self.desired.items():
            self.client.indices.put_index_template(name=name, body=body)


def templates_action(client: OpenSearch, settings: Any, names: Any) -> PutTemplates:
    return PutTemplates(client, desired_templates(settings, names))


class CreateDay(Action):
    """Pre-create a day's write alias and first backing index (in the read alias)."""

    kind = "create"

    def __init__(
        self, client: OpenSearch, names: Any, generation: str, day: date, read_alias: bool
    ) -> None:
        super().__init__(client, names.raw_index(generation, day))
        self.names, self.generation, self.day, self.read_alias = names, generation, day, read_alias

    def describe(self) -> str:
        member = f" in {self.names.events_alias}" if self.read_alias else ""
        return f"create write alias with backing index -000001{member}"

    def done(self) -> bool:
        return bool(self.client.indices.exists(index=self.target))

    def _execute(self) -> None:
        ensure_raw_day(self.client, self.names, self.generation, self.day, self.read_alias)


class CoverReadAlias(Action):
    """Add backing indices missing from a read alias (a day's indices are served together)."""

    kind = "alias"

    def __init__(self, client: OpenSearch, alias: str, indices: list[str]) -> None:
        if not indices:
            raise ValueError("nothing to add")
        super().__init__(client, alias)
        self.indices = sorted(indices)

    def describe(self) -> str:
        return f"add {', '.join(self.indices)}"

    def done(self) -> bool:
        try:
            members = self.client.indices.get_alias(name=self.target, index=",".join(self.indices))
        except NotFoundError:
            return False
        return set(self.indices) <= set(members)

    def _execute(self) -> None:
        actions = [{"add": {"index": i, "alias": self.target}} for i in self.indices]
        self.client.indices.update_aliases(body={"actions": actions})


class Warm(Action):
    """A day no longer written: read-only, one segment per shard, fewer replicas."""

    kind = "warm"
    # Below the lock TTL: a longer merge goes on in the engine after the request times out.
    merge_timeout_s: ClassVar[float] = 600.0

    def __init__(self, client: OpenSearch, info: IndexInfo, replicas: int) -> None:
        if replicas < 0:
            raise ValueError("replicas must be >= 0")
        super().__init__(client, info.name)
        self.replicas = replicas

    def describe(self) -> str:
        return f"read-only, force-merge to 1 segment, {self.replicas} replicas"

    def done(self) -> bool:
        found = self.client.indices.get_settings(index=self.target)
        flat = _flatten(found[self.target]["settings"])
        return flat.get("blocks.write") == "true" and flat.get("number_of_replicas") == str(
            self.replicas
        )

    def _execute(self) -> None:
        # Read-only first, as ISM's force_merge does: a merge of an index still taking writes
        # is wasted work.
        body = {"index": {"blocks.write": True, "number_of_replicas": self.replicas}}
        self.client.indices.put_settings(index=self.target, body=body)
        try:
            self.client.indices.forcemerge(
                index=self.target, max_num_segments=1, request_timeout=self.merge_timeout_s
            )
        except ConnectionTimeout:
            log.warning("force-merge still running in the engine", extra={"index": self.target})


class DeleteIndex(Action):
    """Delete an index whose whole time range is past retention.

    Validated twice: by name in ``__init__`` (its range ends before ``cutoff``) and by data
    before deleting (no document at or after ``cutoff``), so an index that still serves a range
    inside retention through a read alias is never deleted, whatever its name says.
    """

    kind = "delete"

    def __init__(self, client: OpenSearch, info: IndexInfo, cutoff_ms: int, time_field: str):
        if info.end.timestamp() * 1000 > cutoff_ms:
            raise ValueError(f"{info.name} holds events inside retention")
        super().__init__(client, info.name)
        self.cutoff_ms, self.time_field = cutoff_ms, time_field
        self.kind_of_index = info.kind

    def describe(self) -> str:
        what = "raw day" if self.kind_of_index == RAW else "rollup month"
        return f"{what} past retention"

    def done(self) -> bool:
        return not self.client.indices.exists(index=self.target)

    def _execute(self) -> None:
        query = {"query": {"range": {self.time_field: {"gte": self.cutoff_ms}}}}
        inside = int(self.client.count(index=self.target, body=query)["count"])
        if inside:
            raise Refused(f"{self.target} still holds {inside} documents inside retention")
        # NotFound: deleted by a previous attempt whose answer was lost.
        with contextlib.suppress(NotFoundError):
            self.client.indices.delete(index=self.target)
