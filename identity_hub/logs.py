"""Logging setup: plain text for people, JSON lines for log collectors.

Two rules hold for every line (docs/logs.md):

* No line echoes a stranger's bytes: anything a client sent is passed through `quote()` (an
  escaped, length-capped repr) before it is logged; aiohttp's own complaints about malformed
  requests are rewritten by `ClientFaultFilter` into one access line without a traceback.
* No line names a DID or an object id by default (the access log names the requester only when
  the operator sets `log_requester_dids`).

The request id of the request being handled is kept in a context variable (`REQUEST_ID`), set by
the access-log middleware (transport/accesslog.py); `RequestIdFilter` puts it on every record.
"""

from __future__ import annotations

import contextvars
import json
import logging
import secrets
import sys
import time
from typing import Any

REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
QUOTE_LIMIT = 64
LOG_FORMATS = ("text", "json")

access_logger = logging.getLogger("identity_hub.access")


def new_request_id() -> str:
    return secrets.token_hex(8)


def quote(value: object, limit: int = QUOTE_LIMIT) -> str:
    """A stranger's text or bytes made safe for a log line: its repr (control bytes, newlines
    and escape sequences escaped), at most `limit` characters long, with '…' when cut."""
    if isinstance(value, bytes | bytearray):
        text = bytes(value[:limit]).decode("utf-8", "replace")
        cut = len(value) > limit
    else:
        text = str(value)
        cut = len(text) > limit
        text = text[:limit]
    quoted = repr(text)
    if len(quoted) > limit:
        quoted, cut = quoted[:limit], True
    return quoted + ("…" if cut else "")


class RequestIdFilter(logging.Filter):
    """Adds `request_id` (the current request's, or '-') to every record it sees."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = REQUEST_ID.get()
        return True


class ClientFaultFilter(logging.Filter):
    """On `aiohttp.server`: a request aiohttp could not parse is the client's fault. aiohttp logs
    it with a traceback whose text quotes the request line or header it choked on; this drops
    that record and logs one access line instead (status, the parser's complaint as a class
    name, and a quoted excerpt). Errors that are not the client's fault pass unchanged."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is None or not _is_client_fault(exc):
            # install_filters() lets debug records reach this filter (aiohttp reports a bad
            # method on a connection's first request at debug); the rest keep the root's level.
            return record.levelno >= logging.getLogger().getEffectiveLevel()
        status = int(getattr(exc, "code", 400) or 400)
        fields = {"request_id": new_request_id(), "method": "-", "route": "-", "status": status,
                  "error_code": "malformed_http", "message_type": None, "ms": None,
                  "bytes_in": None, "bytes_out": None, "reason": type(exc).__name__,
                  "detail": quote(getattr(exc, "message", "") or "")}
        log_access(fields, level=logging.INFO)
        return False


def _is_client_fault(exc: BaseException) -> bool:
    from aiohttp.http_exceptions import HttpProcessingError

    return isinstance(exc, HttpProcessingError) and 400 <= int(exc.code or 400) < 500


def log_access(fields: dict[str, Any], level: int = logging.INFO) -> None:
    """Log one access line: `fields` become the JSON keys, and a `key=value` text line."""
    text = " ".join(f"{k}={_text(v)}" for k, v in fields.items() if k != "request_id")
    access_logger.log(level, "%s", text,
                      extra={"access": fields, "request_id": fields["request_id"]})


def _text(value: Any) -> str:
    if value is None:
        return "-"
    return str(value)


class DropFilter(logging.Filter):
    """On `aiohttp.access`: aiohttp's own access log prints the raw path (which may name a DID)
    and the client's address; the hub's access log (transport/accesslog.py) replaces it, so
    whatever runner serves the app (`serve`, a test server, `web.run_app`) it logs nothing."""

    def filter(self, record: logging.LogRecord) -> bool:
        return False


_FILTER_INSTALLED = False


def install_filters() -> None:
    """Put ClientFaultFilter on aiohttp's server logger and DropFilter on its access logger
    (once per process). The server logger is set to DEBUG so that the filter sees every
    malformed request, also those aiohttp reports at debug level; the filter passes other
    records only at the root logger's level."""
    global _FILTER_INSTALLED
    if not _FILTER_INSTALLED:
        logging.getLogger("aiohttp.access").addFilter(DropFilter())
        server = logging.getLogger("aiohttp.server")
        server.addFilter(ClientFaultFilter())
        if server.level == logging.NOTSET:
            server.setLevel(logging.DEBUG)
        _FILTER_INSTALLED = True


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        if not hasattr(record, "request_id"):
            record.request_id = REQUEST_ID.get()
        return super().format(record)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "request_id": getattr(record, "request_id", None) or REQUEST_ID.get(),
            "msg": record.getMessage(),
        }
        fields = getattr(record, "access", None)
        if isinstance(fields, dict):
            entry.update(fields)
        event = getattr(record, "event", None)
        if isinstance(event, dict):
            entry.update(event)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def json_logging() -> bool:
    """Whether setup_logging() made stderr JSON lines (so a command's own messages must be too)."""
    return any(isinstance(h.formatter, JsonFormatter) for h in logging.getLogger().handlers)


def setup_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Send every log line to stderr, as text or (fmt='json') one JSON object per line.

    Python warnings go through logging too, so that in JSON mode nothing else reaches stderr.

    Raises:
        ValueError: fmt is neither 'text' nor 'json'.
    """
    if fmt not in LOG_FORMATS:
        raise ValueError(f"log_format must be text or json, not {quote(fmt)}")
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.captureWarnings(True)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    install_filters()
    if root.level > logging.DEBUG:
        logging.getLogger("alembic").setLevel(logging.WARNING)
