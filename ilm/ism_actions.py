"""Actions of the ISM path: put the policies, point each write index at its rollover alias,
attach the policy to indices created before it existed. Used only when ISM is detected."""

from __future__ import annotations

from typing import Any

from opensearchpy import OpenSearch
from opensearchpy.exceptions import NotFoundError, TransportError

from ilm import ism
from ilm.actions import Action
from ilm.inventory import ROLLOVER_ALIAS_SETTING


class PutIsmPolicy(Action):
    """Create or update an ISM policy (compare-and-set on the stored version)."""

    kind = "ism-policy"

    def __init__(self, client: OpenSearch, policy_id: str, body: dict[str, Any]) -> None:
        if "policy" not in body or ism.stored_fingerprint(body) is None:
            raise ValueError("a rendered (fingerprinted) ISM policy body is required")
        super().__init__(client, policy_id)
        self.body = body

    def describe(self) -> str:
        return f"put policy [pulse:{ism.stored_fingerprint(self.body)}]"

    def _stored(self) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = ism.get_policy_request(self.target).send(self.client)
        except NotFoundError:
            return None
        return found

    def done(self) -> bool:
        try:
            stored = self._stored()
        except TransportError:
            return False  # no ISM answering: the change is still to be made
        return stored is not None and ism.stored_fingerprint(stored) == ism.stored_fingerprint(
            self.body
        )

    def _execute(self) -> None:
        stored = self._stored()
        if stored is None:
            ism.put_policy_request(self.target, self.body).send(self.client)
        else:
            seq, term = stored["_seq_no"], stored["_primary_term"]
            ism.put_policy_request(self.target, self.body, seq, term).send(self.client)


class SetRolloverAlias(Action):
    """ISM rolls over the alias named in the index setting; a backing index created by an ISM
    rollover does not inherit it (the alias is per day, no template can carry it)."""

    kind = "ism-alias"

    def __init__(self, client: OpenSearch, index: str, alias: str) -> None:
        if not alias:
            raise ValueError("a rollover alias is required")
        super().__init__(client, index)
        self.alias = alias

    def describe(self) -> str:
        return f"set {ROLLOVER_ALIAS_SETTING}={self.alias}"

    def done(self) -> bool:
        found = self.client.indices.get_settings(
            index=self.target, name=f"index.{ROLLOVER_ALIAS_SETTING}"
        )
        settings = found.get(self.target, {}).get("settings", {})
        flat = settings.get(f"index.{ROLLOVER_ALIAS_SETTING}")
        nested: Any = settings.get("index", {})
        for part in ROLLOVER_ALIAS_SETTING.split("."):
            nested = nested.get(part, {}) if isinstance(nested, dict) else {}
        return self.alias in (flat, nested)

    def _execute(self) -> None:
        ism.rollover_alias_request(self.target, self.alias).send(self.client)


class AttachIsmPolicy(Action):
    """Attach ``policy_id`` to the unmanaged indices of ``pattern`` (``ism_template`` only
    attaches to indices created after the policy)."""

    kind = "ism-attach"

    def __init__(self, client: OpenSearch, pattern: str, policy_id: str) -> None:
        if not policy_id:
            raise ValueError("a policy id is required")
        super().__init__(client, pattern)
        self.policy_id = policy_id

    def describe(self) -> str:
        return f"attach {self.policy_id} to unmanaged indices"

    def _unmanaged(self) -> list[str]:
        return ism.unmanaged(ism.explain_request(self.target).send(self.client))

    def done(self) -> bool:
        try:
            return not self._unmanaged()
        except NotFoundError:
            return True  # no index matches the pattern yet
        except TransportError:
            return False

    def _execute(self) -> None:
        for index in self._unmanaged():
            ism.add_policy_request(index, self.policy_id).send(self.client)
