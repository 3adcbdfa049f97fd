"""identity_hub.logs: quoting a stranger's bytes, the JSON formatter, the request-id filter, and
the filter that turns aiohttp's malformed-request tracebacks into one access line."""

from __future__ import annotations

import io
import json
import logging
import sys

import pytest
from aiohttp.http_exceptions import BadStatusLine, LineTooLong

from identity_hub import logs


@pytest.mark.parametrize("value", [
    "a\nb\rc\x00d\x1b[2Je\x07\u2028f\x7f",
    b"a\nb\x00\x1b[31m\xff\xfe",
])
def test_quote_escapes_every_control_character(value: str | bytes) -> None:
    out = logs.quote(value)
    assert out.isprintable() and "\x1b" not in out and "\n" not in out


def test_quote_caps_its_output_and_marks_the_cut() -> None:
    assert logs.quote("short") == "'short'"
    long = logs.quote("\x00" * 10_000)
    assert len(long) == logs.QUOTE_LIMIT + 1 and long.endswith("…")
    assert logs.quote(b"x" * 500, 10) == "'xxxxxxxxx…"  # the repr is cut at 10, then marked


def _record(msg: str, *args: object, exc: BaseException | None = None,
            level: int = logging.ERROR) -> logging.LogRecord:
    exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    return logging.LogRecord("aiohttp.server", level, __file__, 1, msg, args, exc_info)


def test_client_fault_filter_replaces_a_parser_traceback_by_one_access_line(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="identity_hub.access")
    fault = BadStatusLine("GET\x1b[2J /\x00CANARY" * 100)
    kept = logs.ClientFaultFilter().filter(_record("Error handling request from %s", "1.2.3.4",
                                                   exc=fault))
    assert kept is False
    [line] = [r for r in caplog.records if r.name == "identity_hub.access"]
    fields = line.access  # type: ignore[attr-defined]
    assert fields["status"] == 400 and fields["error_code"] == "malformed_http"
    assert fields["reason"] == "BadStatusLine" and len(fields["detail"]) <= 65
    assert "\x1b" not in caplog.text and "\x00" not in caplog.text
    assert line.exc_info is None and "1.2.3.4" not in caplog.text


def test_client_fault_filter_keeps_server_faults_and_their_traceback() -> None:
    f = logs.ClientFaultFilter()
    try:
        raise RuntimeError("a bug")
    except RuntimeError as exc:
        assert f.filter(_record("Error handling request from %s", "x", exc=exc)) is True
    assert f.filter(_record("Error handling request", exc=LineTooLong("h", "8190"),
                            level=logging.ERROR)) is False
    # debug records the filter lets through only at the root logger's level
    assert f.filter(_record("Ignored premature client disconnection", level=logging.DEBUG)) \
        is (logging.getLogger().getEffectiveLevel() <= logging.DEBUG)


def test_json_formatter_puts_access_fields_and_request_id_on_the_line() -> None:
    record = logging.LogRecord("identity_hub.access", logging.INFO, __file__, 1, "%s",
                               ("status=200",), None)
    record.access = {"status": 200, "error_code": None}
    record.request_id = "abc"
    entry = json.loads(logs.JsonFormatter().format(record))
    assert entry["status"] == 200 and entry["error_code"] is None
    assert entry["request_id"] == "abc" and entry["msg"] == "status=200"


def test_request_id_filter_uses_the_current_request() -> None:
    token = logs.REQUEST_ID.set("feedbeef")
    try:
        record = _record("x")
        logs.RequestIdFilter().filter(record)
        assert record.request_id == "feedbeef"  # type: ignore[attr-defined]
    finally:
        logs.REQUEST_ID.reset(token)


def test_setup_logging_json_sends_warnings_as_json_and_refuses_unknown_formats(
        monkeypatch: pytest.MonkeyPatch) -> None:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    try:
        logs.setup_logging("INFO", "json")
        assert logs.json_logging()
        import warnings

        warnings.warn("something old", DeprecationWarning, stacklevel=1)
        logging.getLogger("identity_hub.test").info("hello %s", "there")
    finally:
        logging.captureWarnings(False)
        root.handlers[:], _ = saved[0], root.setLevel(saved[1])
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert any("something old" in e["msg"] for e in lines)
    assert any(e["msg"] == "hello there" for e in lines)
    with pytest.raises(ValueError, match="text or json"):
        logs.setup_logging("INFO", "yaml")
