"""Actions are retried and verified: a lost answer is not repeated, a silent no-op fails."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from opensearchpy import OpenSearch
from opensearchpy.exceptions import ConnectionTimeout

from ilm.actions import Action, DeleteIndex, NotYetDone
from ilm.inventory import load_inventory
from pulse.naming import Names
from storage.templates import write_target


class CreateLosingAnswer(Action):
    """Creates an index, then behaves as if the answer was lost (a timeout)."""

    kind = "test"

    def __init__(self, client: OpenSearch, index: str, do_nothing: bool = False) -> None:
        super().__init__(client, index)
        self.calls = 0
        self.do_nothing = do_nothing

    def describe(self) -> str:
        return "create"

    def done(self) -> bool:
        return bool(self.client.indices.exists(index=self.target))

    def _execute(self) -> None:
        self.calls += 1
        if self.do_nothing:
            return
        self.client.indices.create(index=self.target)
        raise ConnectionTimeout("TIMEOUT", "answer lost", None)


def test_a_lost_answer_is_verified_not_repeated(os_client: OpenSearch, names: Names) -> None:
    action = CreateLosingAnswer(os_client, f"{names.namespace}-probe")
    action.apply()  # the retry reads the outcome back and stops
    assert action.calls == 1


def test_an_attempt_without_outcome_fails_after_retries(
    os_client: OpenSearch, names: Names
) -> None:
    action = CreateLosingAnswer(os_client, f"{names.namespace}-never", do_nothing=True)
    with pytest.raises(NotYetDone):
        action.apply()
    assert action.calls == CreateLosingAnswer.attempts


def test_delete_validates_in_init(os_client: OpenSearch, names: Names) -> None:
    today = datetime.now(tz=UTC).date()
    write_target(os_client, names, "g1", today)
    (info,) = load_inventory(os_client, names)
    cutoff_ms = int((datetime.now(tz=UTC) - timedelta(days=10)).timestamp() * 1000)
    with pytest.raises(ValueError, match="inside retention"):
        DeleteIndex(os_client, info, cutoff_ms, "occurred_at")
