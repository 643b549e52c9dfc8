"""Logging: plain text for people, or one JSON object per line for log pipelines.

Nothing here logs events' contents: modules log counts, reasons and upstream statuses, and
the sender redacts upstream messages, so neither secrets nor raw PII reach the logs.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Final

THROTTLE_SECONDS: Final = 10.0  # a repeated line (`Throttled`) at most this often
TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"
STANDARD_ATTRIBUTES: Final = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(
            (key, value) for key, value in vars(record).items() if key not in STANDARD_ATTRIBUTES
        )
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure_logging(log_format: str, level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # httpx logs every request at INFO; the sender's own logs and metrics say what matters.
    logging.getLogger("httpx").setLevel(max(level, logging.WARNING))


class Throttled:
    """A log line that may repeat once per request (a store outage refusing every request):
    written the first time, then at most once every `interval` seconds, saying how many more
    times it happened in between, so an outage cannot flood the log."""

    def __init__(
        self,
        logger: logging.Logger,
        level: int,
        interval: float = THROTTLE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger, self.level, self.interval, self.clock = logger, level, interval, clock
        self._last = -float("inf")
        self._held = 0

    def log(self, message: str, *args: object) -> None:
        now = self.clock()
        if now - self._last < self.interval:
            self._held += 1
            return
        if self._held:
            message += f" (and {self._held:,} more like it in the last {now - self._last:.0f} s)"
        self.logger.log(self.level, message, *args)
        self._last, self._held = now, 0
