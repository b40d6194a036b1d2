"""Which members of a read alias a search goes to (storage.served), on the real engine: the
members read as ``_cat/aliases`` text are the alias's members as ``GET _alias`` lists them,
with the spans their names give, through a rollover, a swap and the alias's absence."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from opensearchpy import OpenSearch
from opensearchpy.exceptions import NotFoundError

from pulse.clients import opensearch_client
from pulse.naming import Names
from pulse.settings import Settings
from storage import served

DAY_MS = 86_400_000


def _ms(year: int, month: int, day: int) -> int:
    return int(datetime(year, month, day, tzinfo=UTC).timestamp() * 1000)


def _by_get_alias(client: OpenSearch, alias: str) -> list[str]:
    """The members as the JSON read (what ``members`` read before decision 0310)."""
    return sorted(client.indices.get_alias(name=alias))


@pytest.fixture(params=["stock", "api"])
def client(request: pytest.FixtureRequest, os_client: OpenSearch, settings: Settings) -> OpenSearch:
    """The stock client (the rollup job's) and the API's (libcurl, orjson bodies)."""
    if request.param == "stock":
        return os_client
    assert settings.opensearch_url
    return opensearch_client(settings.opensearch_url, curl=True, orjson_bodies=True)


def test_members_are_the_aliases_members_with_their_spans(
    client: OpenSearch, os_client: OpenSearch, names: Names
) -> None:
    alias = f"{names.namespace}-served"
    day1, day2 = f"{alias}-g1-2026.11.29-000001", f"{alias}-g1-2026.11.30-000001"
    rolled, month, plain = f"{alias}-g1-2026.11.30-000002", f"{alias}-g1-2026.11", f"{alias}-x"
    for index in (day1, day2, rolled, month, plain, f"{alias}-g2-2026.11.30-000001"):
        os_client.indices.create(index=index)
    assert served.members(client, alias) == []  # no alias yet: empty, not an error
    os_client.indices.update_aliases(
        body={"actions": [{"add": {"index": i, "alias": alias}} for i in (day2, day1, month)]}
    )
    found = served.members(client, alias)
    assert [m.index for m in found] == _by_get_alias(os_client, alias) == [month, day1, day2]
    assert found[1] == served.Member(day1, _ms(2026, 11, 29), _ms(2026, 11, 30))
    assert found[0] == served.Member(month, _ms(2026, 11, 1), _ms(2026, 12, 1))
    # A rollover's successor and an index without a date join; another generation does not.
    os_client.indices.update_aliases(
        body={"actions": [{"add": {"index": i, "alias": alias}} for i in (rolled, plain)]}
    )
    found = served.members(client, alias)
    assert [m.index for m in found] == _by_get_alias(os_client, alias)
    assert [m.index for m in found] == [month, day1, day2, rolled, plain]
    span = (_ms(2026, 11, 30), _ms(2026, 11, 30) + 3_600_000)
    assert served.indices_for(client, alias, *span) == ",".join([month, day2, rolled, plain])
    # A swap (a reprocess switch) is seen at the next read.
    os_client.indices.update_aliases(
        body={"actions": [{"remove": {"index": day2, "alias": alias}},
                          {"remove": {"index": rolled, "alias": alias}}]}
    )  # fmt: skip
    assert [m.index for m in served.members(client, alias)] == [month, day1, plain]


class _NoAlias:
    """An engine that answers 404 for a missing alias (as ``GET _alias/<name>`` does)."""

    def __init__(self) -> None:
        self.cat = self

    def aliases(self, name: str, h: str) -> str:
        raise NotFoundError(404, "alias_missing_exception", {"error": f"alias [{name}] missing"})


def test_an_alias_answered_missing_has_no_members() -> None:
    assert served.members(_NoAlias(), "events") == []  # type: ignore[arg-type]
    assert served.indices_for(_NoAlias(), "events", 0, DAY_MS) is None  # type: ignore[arg-type]


def test_names_of_text_and_rows() -> None:
    assert served._names("b \na\n\nb\n") == ["a", "b"]
    assert served._names([{"index": "b"}, {"index": "a"}]) == ["a", "b"]
    assert served._names("") == served._names(None) == []
