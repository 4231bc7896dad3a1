"""Where the package's log lines go in a Ray process (``cvmatch_ray.logs``)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from cvmatch_ray.logs import APP_LOGGER, route_app_logs


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def app_logger() -> Iterator[logging.Logger]:
    """The package logger, restored after the test (routing changes it for the process)."""
    app = logging.getLogger(APP_LOGGER)
    saved = (app.handlers[:], app.level, app.propagate)
    yield app
    app.handlers[:], app.level, app.propagate = saved


def test_module_records_reach_the_target_logger_once(app_logger: logging.Logger) -> None:
    target = logging.getLogger("test.serve_like")
    target.propagate = False
    collect = _Collect()
    target.addHandler(collect)
    try:
        route_app_logs("test.serve_like")
        route_app_logs("test.serve_like")  # a second replica __init__ in the same process
        logging.getLogger("cvmatch_ray.serve.service").info("upload %s accepted (%d bytes)", "ab" * 16, 10)
        logging.getLogger("cvmatch_ray.serve.service").debug("not at INFO")
    finally:
        target.removeHandler(collect)
    assert [r.getMessage() for r in collect.records] == [f"upload {'ab' * 16} accepted (10 bytes)"]
    assert collect.records[0].name == "cvmatch_ray.serve.service"
