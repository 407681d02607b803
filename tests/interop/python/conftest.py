"""Fixtures of the Python interop suite: generated protobuf modules and the servers it runs."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

from interop_support import FAST_FEEDS_CONFIG, TickwireServer, generate_protos

# The test modules import the generated `*_pb2` modules at import time, so generate them
# while this conftest is imported, before collection, into a folder removed at exit.
_GENERATED = Path(tempfile.mkdtemp(prefix="tickwire-interop-pb2-"))
generate_protos(_GENERATED)

_SERVERS: list[TickwireServer] = []


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(_GENERATED, ignore_errors=True)


def _run_server(work_dir: Path, **kwargs) -> Iterator[TickwireServer]:
    srv = TickwireServer(work_dir, **kwargs)
    _SERVERS.append(srv)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TickwireServer]:
    """A running tickwire-server with the test configuration, stopped after the session.

    The proxy answers in its default, documented reply style.
    """
    yield from _run_server(tmp_path_factory.mktemp("tickwire-server"), extra_config=FAST_FEEDS_CONFIG)


@pytest.fixture(scope="module")
def quiet_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TickwireServer]:
    """A server of the module's own, so that what it counts is the module's clients only."""
    yield from _run_server(tmp_path_factory.mktemp("tickwire-server-quiet"), extra_config=FAST_FEEDS_CONFIG)


@pytest.fixture(scope="session")
def openalgo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TickwireServer]:
    """A second server whose proxy answers as the reference server does, for the `openalgo` SDK.

    The reply style is set the way an operator would, through the environment.
    """
    yield from _run_server(
        tmp_path_factory.mktemp("tickwire-server-openalgo"),
        env={"TICKWIRE_PROXY__REPLY_STYLE": "openalgo"},
    )


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    """On failure, show the end of the server logs: they usually say what went wrong."""
    if exitstatus == 0:
        return
    for srv in _SERVERS:
        terminalreporter.section(f"tickwire-server log ({srv.log_path})")
        terminalreporter.write_line(srv.log_tail())
