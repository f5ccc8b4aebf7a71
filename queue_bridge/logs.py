"""JSON log lines, one object per line, for the worker and the front door alike: a message with quotes, a field
of any type or a traceback still makes one valid JSON document per line."""
from __future__ import annotations

import json
import logging
import sys
import time
import traceback

LOG = logging.getLogger("sonicflow.bridge")
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {"ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
                "level": record.levelname.lower(), "logger": record.name, "msg": record.getMessage()}
        line.update({k: v for k, v in vars(record).items() if k not in _STANDARD})  # the fields given to log()
        if record.exc_info:
            line["stack"] = "".join(traceback.format_exception(*record.exc_info))
        return json.dumps(line, default=str)


def setup_logging(level: str = "INFO", stream=None) -> None:
    """Every `sonicflow.*` logger (bridge, front door) and the libraries' warnings, as JSON lines on stderr."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("sonicflow").setLevel(level)


def log(event: str, level: int = logging.INFO, exc_info=None, **fields) -> None:
    LOG.log(level, event, extra={"event": event, **fields}, exc_info=exc_info)


def read_events(path: str) -> list[dict]:
    """The events (lines with an "event") of a log this module wrote; other output in the file is skipped."""
    out = []
    with open(path, errors="replace") as f:
        for line in f:
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if isinstance(doc, dict) and "event" in doc:
                out.append(doc)
    return out
