"""RFC 6455 conformance: the Autobahn|Testsuite's fuzzing client against an echo server built from
tickwire's core and WebSocket codec (`examples/autobahn_echo.rs`), every case but 12.* and 13.*
(permessage-deflate, which tickwire does not negotiate).

The cases are Autobahn's own, run by `kosoku` (the classic `wstest` needs Python 2.7). Every case
must end OK, NON-STRICT or INFORMATIONAL, and the fail-fast UTF-8 cases 6.4.* must be OK. The
reports are written to target/autobahn/.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import pytest
from kosoku import FailureError, run_fuzzingclient
from kosoku._report import write_reports

from interop_support import REPO_ROOT

ACCEPTED = {"OK", "NON-STRICT", "INFORMATIONAL"}


def echo_binary() -> Path:
    """The echo server: `$TICKWIRE_AUTOBAHN_ECHO`, else the workspace's debug build of it."""
    override = os.environ.get("TICKWIRE_AUTOBAHN_ECHO")
    if override:
        return Path(override)
    return REPO_ROOT / "target" / "debug" / "examples" / "autobahn_echo"


@pytest.fixture(scope="module")
def echo_address():
    binary = echo_binary()
    if not binary.exists():
        pytest.fail(
            f"{binary} not found: cargo build -p tickwire-examples --example autobahn_echo, "
            "or set TICKWIRE_AUTOBAHN_ECHO"
        )
    # Standard input stays open while the server should run: closing it stops the server.
    proc = subprocess.Popen(
        [str(binary), "127.0.0.1:0"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        first = proc.stdout.readline().strip()
        assert first.startswith("listening on "), f"unexpected first line {first!r}"
        yield first.removeprefix("listening on ")
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_every_autobahn_case_passes(echo_address: str) -> None:
    async def run():
        try:
            return await run_fuzzingclient(echo_address, None, ["12.*", "13.*"], concurrency=2)
        except FailureError as failure:
            return failure.results

    results = asyncio.run(asyncio.wait_for(run(), timeout=600))
    write_reports(results, str(REPO_ROOT / "target" / "autobahn"))
    ids = {r.case_id for r in results}
    # The whole suite but 12.* and 13.*: 301 cases in sections 1 to 7, 9 and 10 (there is no 8).
    assert len(results) >= 300, f"only {len(results)} cases ran"
    assert {i.split(".")[0] for i in ids} == {"1", "2", "3", "4", "5", "6", "7", "9", "10"}
    bad = [
        f"{r.case_id}: {r.behavior.value}/{r.behavior_close.value}: {r.result} {r.result_close}"
        for r in results
        if r.behavior.value not in ACCEPTED or r.behavior_close.value not in ACCEPTED
    ]
    assert not bad, "\n".join(bad)
    fail_fast = {r.case_id: r.behavior.value for r in results if r.case_id.startswith("6.4.")}
    assert len(fail_fast) == 4, fail_fast
    assert set(fail_fast.values()) == {"OK"}, fail_fast
    counts: dict[str, int] = {}
    for r in results:
        counts[r.behavior.value] = counts.get(r.behavior.value, 0) + 1
    print(f"autobahn: {len(results)} cases, {counts}")
