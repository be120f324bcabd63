"""configure_logging: one JSON line per record, exceptions as structured tracebacks without locals."""

from __future__ import annotations

import io
import logging

import orjson
import pytest
import structlog

from mcloud_common.logs import configure_logging, get_logger


@pytest.fixture
def log_stream():
    """configure_logging into a StringIO; the root logger and structlog are restored afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    saved = structlog.get_config()
    stream = io.StringIO()
    try:
        yield stream
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        structlog.configure(**saved)
        structlog.contextvars.clear_contextvars()


def _lines(stream: io.StringIO) -> list[dict]:
    return [orjson.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def _fail(email: str) -> None:
    traits = {"email": email, "plan": "gold"}  # a local that must never reach the logs
    raise ValueError(f"cannot score profile with {len(traits)} traits")


@pytest.mark.parametrize("from_structlog", [True, False])
def test_exceptions_are_structured_tracebacks_without_locals(log_stream, from_structlog):
    configure_logging("test", stream=log_stream)
    logger = get_logger("test.logs") if from_structlog else logging.getLogger("test.logs.stdlib")
    try:
        _fail("rachel@example.com")
    except ValueError:
        logger.exception("scoring failed")

    [line] = _lines(log_stream)
    assert line["event"] == "scoring failed"
    assert line["level"] == "error"
    assert line["service"] == "test"
    assert "exc_info" not in line
    [stack] = line["exception"]
    assert stack["exc_type"] == "ValueError"
    assert stack["exc_value"] == "cannot score profile with 2 traits"
    functions = [frame["name"] for frame in stack["frames"]]
    assert functions[-1] == "_fail"
    assert all(frame["lineno"] > 0 and frame["filename"] for frame in stack["frames"])
    assert all("locals" not in frame for frame in stack["frames"])
    assert "rachel@example.com" not in log_stream.getvalue()
    assert "gold" not in log_stream.getvalue()


def test_plain_records_have_no_exception_field(log_stream):
    configure_logging("test", stream=log_stream)
    get_logger("test.logs").info("hello", profile_id="p-1")
    [line] = _lines(log_stream)
    assert line["event"] == "hello"
    assert line["profile_id"] == "p-1"
    assert "exception" not in line
