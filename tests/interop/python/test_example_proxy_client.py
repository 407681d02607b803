"""The example `examples/proxy_client.rs` (the Rust client of `tickwire-proxy`) against the server.

The example binary is TICKWIRE_EXAMPLE_PROXY_CLIENT, by default
target/debug/examples/proxy_client of this workspace (`cargo build -p tickwire-examples
--examples`). Each test runs it, bounded in time, against the session's server at `/proxy` of the
main listener (the documented reply style), with the demo key, and reads what it prints: one
stdout line per `market_data` message, `EXCHANGE:SYMBOL MODE key=value ...`, and on stderr the
subscription outcomes and, when it fails, why. The data is the synthetic market's.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from interop_support import DEMO_KEY, REPO_ROOT, TickwireServer

# Upper bound of one run of the example, in seconds (it gives up itself after 10 quiet seconds).
RUN_SECONDS = 60


def example_binary() -> Path:
    """The example: `$TICKWIRE_EXAMPLE_PROXY_CLIENT`, else the debug build of the workspace."""
    override = os.environ.get("TICKWIRE_EXAMPLE_PROXY_CLIENT")
    default = REPO_ROOT / "target" / "debug" / "examples" / "proxy_client"
    binary = Path(override) if override else default
    if not binary.is_file():
        pytest.fail(
            f"{binary} not found: run `cargo build -p tickwire-examples --examples` "
            "or set TICKWIRE_EXAMPLE_PROXY_CLIENT"
        )
    return binary


def run(
    server: TickwireServer, *args: str, key: str = DEMO_KEY, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Runs the example with `args`, the server's `/proxy` URL and `key`; the caller's own
    `TICKWIRE_*` variables are not passed on."""
    run_env = {k: v for k, v in os.environ.items() if not k.startswith("TICKWIRE_")}
    run_env.update(TICKWIRE_PROXY_URL=f"{server.ws}/proxy", TICKWIRE_KEY=key, **(env or {}))
    return subprocess.run(
        [str(example_binary()), *args],
        env=run_env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=RUN_SECONDS,
        check=False,
    )


def market_data(result: subprocess.CompletedProcess[str]) -> list[tuple[str, str, dict[str, str]]]:
    """The `market_data` lines printed: (instrument, mode, figures)."""
    lines = []
    for line in result.stdout.splitlines():
        instrument, mode, *pairs = line.split()
        lines.append((instrument, mode, dict(pair.split("=", 1) for pair in pairs)))
    return lines


def positive(figure: str) -> float:
    value = float(figure)
    assert value > 0, figure
    return value


def succeeded(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"


def test_ltp_of_one_instrument(server: TickwireServer) -> None:
    result = run(server, "NSE:RELIANCE", env={"TICKWIRE_COUNT": "4"})
    succeeded(result)
    assert "subscribed NSE:RELIANCE in LTP" in result.stderr
    lines = market_data(result)
    assert len(lines) == 4, result.stdout
    for instrument, mode, figures in lines:
        assert (instrument, mode) == ("NSE:RELIANCE", "LTP")
        positive(figures["ltp"])
        assert int(figures["ts"]) > 1_000_000_000_000  # milliseconds


def test_quote_of_two_instruments(server: TickwireServer) -> None:
    result = run(server, "--mode", "quote", "--count", "6", "NSE:RELIANCE", "NSE:TCS")
    succeeded(result)
    lines = market_data(result)
    assert len(lines) == 6, result.stdout
    for instrument, mode, figures in lines:
        assert instrument in ("NSE:RELIANCE", "NSE:TCS") and mode == "Quote", (instrument, mode)
        positive(figures["ltp"])
        assert positive(figures["bid"]) <= positive(figures["ask"]), figures
        assert float(figures["volume"]) >= 0


def test_depth_from_the_environment(server: TickwireServer) -> None:
    result = run(server, "NSE:INFY", env={"TICKWIRE_MODE": "Depth", "TICKWIRE_COUNT": "3"})
    succeeded(result)
    lines = market_data(result)
    assert len(lines) == 3, result.stdout
    for instrument, mode, figures in lines:
        assert (instrument, mode) == ("NSE:INFY", "Depth")
        if figures["ltp"] != "-":  # a Depth message has an ltp once a price arrived
            positive(figures["ltp"])
        buy, sell = (int(n) for n in figures["levels"].split("/"))
        assert 0 < buy <= 5 and 0 < sell <= 5, figures  # 5 levels, the default depth
        assert positive(figures["best_bid"]) < positive(figures["best_ask"]), figures


def test_default_count_and_instrument(server: TickwireServer) -> None:
    result = run(server)
    succeeded(result)
    lines = market_data(result)
    assert len(lines) == 5, result.stdout
    assert {(instrument, mode) for instrument, mode, _ in lines} == {("NSE:RELIANCE", "LTP")}


def test_a_bad_key_prints_the_servers_error(server: TickwireServer) -> None:
    result = run(server, "NSE:RELIANCE", key="not-a-key")
    assert result.returncode != 0
    assert result.stdout == ""
    assert "AUTHENTICATION_ERROR: Invalid API key" in result.stderr, result.stderr


def test_an_invalid_instrument_is_refused(server: TickwireServer) -> None:
    result = run(server, "NSE:" + "X" * 70)
    assert result.returncode != 0
    assert result.stdout == ""
    assert "refused: Invalid symbol: longer than 64 bytes" in result.stderr, result.stderr
    assert "no instrument subscribed" in result.stderr


def test_an_unknown_instrument_is_reported(server: TickwireServer) -> None:
    # The ZeroMQ bus may carry any instrument, so the server accepts the subscription; no data
    # comes, and the example says so after its 10 quiet seconds.
    result = run(server, "NSE:TICKWIRE_NO_SUCH_SYMBOL")
    assert result.returncode != 0
    assert result.stdout == ""
    assert "NSE:TICKWIRE_NO_SUCH_SYMBOL" in result.stderr, result.stderr
    assert "0 of 5 market_data messages" in result.stderr, result.stderr
