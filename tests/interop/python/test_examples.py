"""The embedding examples of `examples/`, run as their users would run them.

- `embedded_gateway`: the runtime as a library with a broker adapter of its own (a made-up
  feed), served by `tickwire_gateway::run`; Python `websockets` subscribes on `/ws` and
  receives the feed's prices, and a stop (SIGINT) closes the client with 1001.
- `gex_client`: the Rust client of the GEX hubs, against the session's server on its demo
  data: negotiate, protobuf subprotocol, join, five decoded records.

The binaries are those of `cargo build --workspace --examples` (or `$TICKWIRE_EXAMPLES_DIR`).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
from pathlib import Path
from typing import Iterator

import pytest
import websockets

from interop_support import DEMO_KEY, REPO_ROOT, WAIT_SECONDS, TickwireServer


def example(name: str) -> Path:
    """The built example `name`."""
    base = os.environ.get("TICKWIRE_EXAMPLES_DIR")
    path = Path(base) if base else REPO_ROOT / "target" / "debug" / "examples"
    binary = path / name
    if not binary.is_file():
        pytest.fail(f"{binary} not found: cargo build -p tickwire-examples --examples")
    return binary


def clean_env() -> dict[str, str]:
    """The environment without the caller's `TICKWIRE_*` settings."""
    return {k: v for k, v in os.environ.items() if not k.startswith("TICKWIRE_")}


class Embedded:
    """The `embedded_gateway` example on a free port, read from the line it prints."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [str(example("embedded_gateway")), "127.0.0.1:0"],
            cwd=REPO_ROOT,
            env=clean_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # printed once the listener is bound
        found = re.match(r"listening on http://(\S+)", line)
        if not found:
            self.stop()
            pytest.fail(f"embedded_gateway printed {line!r}, exit {self.proc.poll()}")
        self.ws = f"ws://{found.group(1)}/ws"

    def interrupt(self) -> int:
        """Ctrl-C, as a user stops it; its exit status."""
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(timeout=WAIT_SECONDS)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=WAIT_SECONDS)


@pytest.fixture
def embedded() -> Iterator[Embedded]:
    gateway = Embedded()
    try:
        yield gateway
    finally:
        gateway.stop()


async def next_json(ws: websockets.WebSocketClientProtocol, kind: str) -> dict:
    """The next message of type `kind` (others, such as `server_status`, are skipped)."""
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), WAIT_SECONDS))
        if message.get("type") == kind:
            return message


def test_an_embedded_gateway_serves_its_own_adapter(embedded: Embedded) -> None:
    async def run() -> None:
        async with websockets.connect(embedded.ws) as ws:
            # The made-up instrument is known from the adapter's list before its first tick,
            # and an unknown one is refused as the /ws document says.
            await ws.send(json.dumps({"type": "subscribe", "symbols": ["widget", "gadget"]}))
            error = await next_json(ws, "error")
            assert error["code"] == "invalid_symbol", error
            assert "gadget" in json.dumps(error), error
            prices = [await next_json(ws, "price_update") for _ in range(4)]
            assert {p["symbol"] for p in prices} == {"widget"}, prices
            assert all(90 < p["price"] < 110 for p in prices), prices
            stamps = [p["timestamp"] for p in prices]
            assert stamps == sorted(stamps) and len(set(stamps)) == 4, stamps
            # The feed moves: the four prices are not all the same.
            assert len({p["price"] for p in prices}) > 1, prices

            # Stopping the embedding process closes its clients as the gateway promises.
            status = await asyncio.to_thread(embedded.interrupt)
            with pytest.raises(websockets.ConnectionClosed) as closed:
                while True:
                    await asyncio.wait_for(ws.recv(), WAIT_SECONDS)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001, closed.value
            assert status == 0, status

    asyncio.run(run())


def test_the_gex_client_example_decodes_records(server: TickwireServer) -> None:
    env = clean_env() | {"TICKWIRE_URL": server.http, "TICKWIRE_KEY": DEMO_KEY}
    done = subprocess.run(
        [str(example("gex_client")), "blue_SPX_state_gex_zero"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=3 * WAIT_SECONDS,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("connected as "), lines
    assert lines[1] == 'ack 1: success=true None', lines
    records = [line for line in lines if " SPX spot=" in line]
    assert len(records) == 5, lines
    for record in records:
        type_url, _, spot = record.partition(" SPX spot=")
        assert type_url == "proto.gex", record  # the state_gex hub's records
        assert float(spot) > 0, record


def test_the_gex_client_example_reports_a_refused_key(server: TickwireServer) -> None:
    env = clean_env() | {"TICKWIRE_URL": server.http, "TICKWIRE_KEY": "not-a-key"}
    done = subprocess.run(
        [str(example("gex_client"))],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=WAIT_SECONDS,
    )
    assert done.returncode != 0
    assert "negotiate failed: HTTP/1.1 401" in done.stderr, done.stderr
