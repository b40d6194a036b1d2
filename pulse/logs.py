"""Structured JSON logs on stderr (python-json-logger over the standard logging module)."""

from __future__ import annotations

import logging
import sys

from pythonjsonlogger.json import JsonFormatter


class EngineRequestFilter(logging.Filter):
    """opensearch-py's warning for a failed request, made quiet where the caller decides.

    The client logs every non-2xx answer (and every connection failure, with its traceback)
    before raising to the caller. A 404 is an answer callers handle (a state document not
    written yet), so it is dropped; other failures stay, as one line without the traceback:
    the exception reaches the caller, which handles or logs it (docs/decisions/0150).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 4 and "[status:" in str(record.msg):
            if args[2] == 404:
                return False
            record.exc_info = None
        return True


def configure_logging(level: str = "INFO", json_logs: bool = True) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if json_logs:
        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s",
                rename_fields={"asctime": "ts", "levelname": "level", "name": "logger"},
            )
        )
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("kafka", "opensearch", "urllib3", "apscheduler"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    engine = logging.getLogger("opensearch")
    if not any(isinstance(f, EngineRequestFilter) for f in engine.filters):
        engine.addFilter(EngineRequestFilter())
