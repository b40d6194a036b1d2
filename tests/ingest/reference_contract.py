"""A frozen copy of ingest/contract.py as of fe940b5, before the msgspec fast path: the oracle
the property tests compare the current parser against (documents and DLQ reasons must match).
Do not edit it to follow changes of the contract; change the tests instead.
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

MAX_MESSAGE_BYTES = 256 * 1024
MAX_ATTRIBUTES = 50
MAX_ATTRIBUTE_KEY = 128
MAX_ATTRIBUTE_VALUE = 1024
AMOUNT_SCALE = 1000  # amounts are stored as integer thousandths of the major unit
MAX_AMOUNT = Decimal(10) ** 12
MAX_EPOCH_MS = 253402300800000  # 10000-01-01T00:00:00Z: every instant is below it

WELL_KNOWN_TYPES = ("payment", "refund", "page_view", "checkout_start", "dispute")
STATUSES = frozenset({"succeeded", "failed", "pending"})
CHANNELS = frozenset({"web", "app", "pos"})

_MERCHANT_RE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_CURRENCY_RE = re.compile(r"[A-Z]{3}")
_COUNTRY_RE = re.compile(r"[A-Z]{2}")
_DECLINE_CODE_RE = re.compile(r"[a-z0-9_]{1,64}")
# RFC 3339: date, 'T' or space, time, optional fraction, mandatory offset.
_RFC3339_RE = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})"
)

# Optional string fields and their maximum lengths.
_OPTIONAL_STRINGS: dict[str, int] = {
    "customer_id": 128,
    "session_id": 128,
    "payment_method": 64,
    "store_id": 64,
    "device": 64,
}
_KNOWN = frozenset(
    {
        "event_id", "merchant_id", "event_type", "occurred_at", "amount", "currency",
        "status", "country", "channel", "decline_code", "attributes", "@timestamp",
        *_OPTIONAL_STRINGS,
    }
)  # fmt: skip


class InvalidEvent(ValueError):
    """One contract violation; ``reason`` is the machine-readable code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a message was refused; goes to the DLQ together with the original bytes."""

    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class Event:
    """One valid event. Times are epoch milliseconds (UTC); money in integer thousandths."""

    event_id: str
    merchant_id: str
    event_type: str
    occurred_at_ms: int
    shipped_at_ms: int | None = None
    customer_id: str | None = None
    session_id: str | None = None
    amount_milli: int | None = None
    currency: str | None = None
    status: str | None = None
    payment_method: str | None = None
    store_id: str | None = None
    country: str | None = None
    channel: str | None = None
    device: str | None = None
    decline_code: str | None = None
    attributes: dict[str, str] = field(default_factory=dict)

    @property
    def doc_id(self) -> str:
        return document_id(self.merchant_id, self.event_id)

    def to_doc(self, ingested_at_ms: int) -> dict[str, Any]:
        """The raw-index document (field names match ilm's strict mapping)."""
        doc: dict[str, Any] = {
            "event_id": self.event_id,
            "merchant_id": self.merchant_id,
            "event_type": self.event_type,
            "occurred_at": self.occurred_at_ms,
            "ingested_at": ingested_at_ms,
        }
        optional = (
            ("shipped_at", self.shipped_at_ms), ("customer_id", self.customer_id),
            ("session_id", self.session_id), ("amount_milli", self.amount_milli),
            ("currency", self.currency), ("status", self.status),
            ("payment_method", self.payment_method), ("store_id", self.store_id),
            ("country", self.country), ("channel", self.channel), ("device", self.device),
            ("decline_code", self.decline_code),
        )  # fmt: skip
        for key, value in optional:
            if value is not None:
                doc[key] = value
        if self.customer_id is not None:
            doc["customer_hash"] = customer_hash(self.customer_id)
        if self.attributes:
            doc["attributes"] = self.attributes
        return doc


def document_id(merchant_id: str, event_id: str) -> str:
    """Deterministic _id: the dedupe key is (merchant_id, event_id), hashed to 22 characters."""
    digest = hashlib.blake2b(f"{merchant_id}\x1f{event_id}".encode(), digest_size=16).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def customer_hash(customer_id: str) -> int:
    """A signed 64-bit hash of the customer id, for unique counts and HLL sketches."""
    digest = hashlib.blake2b(customer_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def parse_message(raw: bytes) -> Event | Rejection:
    """Decode and validate one message; never raises for bad input."""
    if len(raw) > MAX_MESSAGE_BYTES:
        return Rejection("too_large", f"{len(raw)} bytes > {MAX_MESSAGE_BYTES}")
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        reason = "invalid_utf8" if "UTF-8" in str(exc) else "invalid_json"
        return Rejection(reason, str(exc)[:200])
    if not isinstance(obj, dict):
        return Rejection("not_an_object", f"top-level JSON is {type(obj).__name__}")
    try:
        return validate(obj)
    except InvalidEvent as exc:
        return Rejection(exc.reason, exc.detail)


def validate(obj: dict[str, Any]) -> Event:
    """Validate one decoded event object; raises InvalidEvent with a reason code."""
    optional = {k: _opt_string(obj, k, n) for k, n in _OPTIONAL_STRINGS.items()}
    return Event(
        event_id=_req_string(obj, "event_id", 128),
        merchant_id=_merchant(obj),
        event_type=_req_string(obj, "event_type", 64),
        occurred_at_ms=_occurred_at(obj),
        shipped_at_ms=_shipped_at(obj.get("@timestamp")),
        amount_milli=_amount(obj.get("amount")),
        currency=_pattern(obj, "currency", _CURRENCY_RE),
        status=_enum(obj, "status", STATUSES),
        country=_pattern(obj, "country", _COUNTRY_RE),
        channel=_enum(obj, "channel", CHANNELS),
        decline_code=_decline_code(obj),
        attributes=_attributes(obj),
        **optional,
    )


def _req_string(obj: dict[str, Any], key: str, max_len: int) -> str:
    if key not in obj or obj[key] is None:
        raise InvalidEvent(f"missing:{key}", f"{key} is required")
    value = obj[key]
    if not isinstance(value, str):
        raise InvalidEvent(f"wrong_type:{key}", f"{key} must be a string")
    if not value.strip():
        raise InvalidEvent(f"empty:{key}", f"{key} must not be empty")
    if len(value) > max_len:
        raise InvalidEvent(f"too_long:{key}", f"{key} is {len(value)} chars > {max_len}")
    return value


def _opt_string(obj: dict[str, Any], key: str, max_len: int) -> str | None:
    if obj.get(key) is None:
        return None
    return _req_string(obj, key, max_len)


def _merchant(obj: dict[str, Any]) -> str:
    value = _req_string(obj, "merchant_id", 64)
    if not _MERCHANT_RE.fullmatch(value):
        raise InvalidEvent("bad_format:merchant_id", "merchant_id allows [A-Za-z0-9_.-] only")
    return value


def _pattern(obj: dict[str, Any], key: str, pattern: re.Pattern[str]) -> str | None:
    value = _opt_string(obj, key, 8)
    if value is not None and not pattern.fullmatch(value):
        raise InvalidEvent(f"bad_format:{key}", f"{key} {value!r} is not {pattern.pattern}")
    return value


def _decline_code(obj: dict[str, Any]) -> str | None:
    value = _opt_string(obj, "decline_code", 64)
    if value is not None and not _DECLINE_CODE_RE.fullmatch(value):
        raise InvalidEvent("bad_format:decline_code", "decline_code allows [a-z0-9_] only")
    return value


def _enum(obj: dict[str, Any], key: str, allowed: frozenset[str]) -> str | None:
    value = _opt_string(obj, key, 32)
    if value is not None and value not in allowed:
        raise InvalidEvent(f"bad_value:{key}", f"{key} must be one of {sorted(allowed)}")
    return value


def _occurred_at(obj: dict[str, Any]) -> int:
    if obj.get("occurred_at") is None:
        raise InvalidEvent("missing:occurred_at", "occurred_at is required")
    return parse_instant(obj["occurred_at"], "occurred_at")


def parse_instant(value: Any, key: str) -> int:
    """RFC 3339 with an offset, or integer epoch milliseconds -> epoch milliseconds."""
    if isinstance(value, bool):
        raise InvalidEvent(f"wrong_type:{key}", f"{key} must be RFC 3339 or epoch millis")
    if isinstance(value, int):
        if not 0 <= value < MAX_EPOCH_MS:
            raise InvalidEvent(f"out_of_range:{key}", f"{key} epoch millis out of range")
        return value
    if not isinstance(value, str):
        raise InvalidEvent(f"wrong_type:{key}", f"{key} must be RFC 3339 or epoch millis")
    if not _RFC3339_RE.fullmatch(value):
        raise InvalidEvent(f"bad_format:{key}", f"{key} must be RFC 3339 with an offset")
    try:
        parsed = datetime.fromisoformat(_trim_fraction(value.replace("z", "Z")))
    except ValueError as exc:
        raise InvalidEvent(f"bad_format:{key}", str(exc)) from None
    return int(parsed.timestamp() * 1000) if parsed.microsecond == 0 else _millis(parsed)


def _millis(parsed: datetime) -> int:
    seconds = int(parsed.replace(microsecond=0).timestamp())
    return seconds * 1000 + parsed.microsecond // 1000


def _trim_fraction(value: str) -> str:
    """datetime.fromisoformat takes at most 6 fraction digits; RFC 3339 allows more."""
    dot = value.find(".")
    if dot < 0:
        return value
    end = dot + 1
    while end < len(value) and value[end].isdigit():
        end += 1
    return value[: min(end, dot + 7)] + value[end:]


def _shipped_at(value: Any) -> int | None:
    """Fluent Bit's @timestamp: iso8601 (microseconds, Z) or the default double epoch seconds."""
    if value is None:
        return None
    if isinstance(value, float | int) and not isinstance(value, bool):
        if not math.isfinite(value) or value < 0:
            raise InvalidEvent("out_of_range:@timestamp", "@timestamp must be a finite epoch")
        # Bounded like epoch millis in parse_instant: beyond it the millis need not even fit
        # in 64 bits (a document no encoder or engine takes).
        millis = int(value * 1000)
        if millis >= MAX_EPOCH_MS:
            raise InvalidEvent("out_of_range:@timestamp", "@timestamp epoch seconds out of range")
        return millis
    return parse_instant(value, "@timestamp")


def _amount(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidEvent("wrong_type:amount", "amount must be a number")
    try:
        exact = Decimal(str(value))
    except InvalidOperation:
        raise InvalidEvent("wrong_type:amount", "amount must be a finite number") from None
    if not exact.is_finite() or exact < 0 or exact > MAX_AMOUNT:
        raise InvalidEvent("out_of_range:amount", f"amount must be in [0, {MAX_AMOUNT}]")
    milli = exact * AMOUNT_SCALE
    if milli != milli.to_integral_value():
        raise InvalidEvent("precision:amount", "amount has more than 3 decimal places")
    return int(milli)


def _attributes(obj: dict[str, Any]) -> dict[str, str]:
    attrs = obj.get("attributes")
    if attrs is None:
        attrs = {}
    if not isinstance(attrs, dict):
        raise InvalidEvent("wrong_type:attributes", "attributes must be an object")
    out: dict[str, str] = {}
    for key, value in attrs.items():
        if not isinstance(value, str):
            raise InvalidEvent("wrong_type:attributes", f"attributes.{key} must be a string")
        out[key] = value
    for key, value in obj.items():
        if key not in _KNOWN and key not in out:
            out[key] = _extra_value(key, value)
    _check_attribute_sizes(out)
    return out


def _extra_value(key: str, value: Any) -> str:
    if isinstance(value, dict | list):
        raise InvalidEvent("unknown_field", f"unknown field {key!r} holds an object or array")
    if isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


def _check_attribute_sizes(attrs: dict[str, str]) -> None:
    if len(attrs) > MAX_ATTRIBUTES:
        raise InvalidEvent("too_many:attributes", f"{len(attrs)} attributes > {MAX_ATTRIBUTES}")
    for key, value in attrs.items():
        if not key or len(key) > MAX_ATTRIBUTE_KEY or len(value) > MAX_ATTRIBUTE_VALUE:
            raise InvalidEvent("too_long:attributes", f"attribute {key[:40]!r} too long or empty")


def epoch_ms_now() -> int:
    return int(datetime.now(tz=UTC).timestamp() * 1000)


def fluent_bit_timestamp(now: datetime | None = None) -> str:
    """@timestamp exactly as out_kafka writes it with Timestamp_Format iso8601."""
    now = now or datetime.now(tz=UTC)
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def to_kafka_message(event: dict[str, Any], now: datetime | None = None) -> bytes:
    """Encode an event the way Fluent Bit's kafka output does: @timestamp packed first."""
    return orjson.dumps({"@timestamp": fluent_bit_timestamp(now), **event})
