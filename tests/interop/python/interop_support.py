"""Shared pieces of the Python interop suite.

- `generate_protos` compiles `proto/*.proto` with the protoc bundled in grpcio-tools, so the
  suite needs no system protoc, and makes the generated `*_pb2` modules importable.
- `TickwireServer` starts one `tickwire-server` process on a free loopback port with a test
  configuration, waits until it answers, and stops it again.
- `negotiate`, `client_access_url` and `RawClient` are the smallest real clients of the
  `/negotiate` endpoint and of the Azure Web PubSub client subprotocols, written the way the
  protocol document's Python example is.

Every wait here is bounded by `WAIT_SECONDS`; nothing sleeps to assert.
"""

from __future__ import annotations

import base64
import importlib
import importlib.resources
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import requests
import websocket
import zstandard

REPO_ROOT = Path(__file__).resolve().parents[3]
PROTO_DIR = REPO_ROOT / "proto"

# The key every default configuration ships: may join and leave groups, may not publish.
DEMO_KEY = "tickwire-demo-key"
# A key the test configuration adds, allowed to publish to groups as well.
PUBLISHER_KEY = "tickwire-interop-publisher-key"
# A key with the admin role (the admin API) that may also publish.
OPERATOR_KEY = "tickwire-interop-operator-key"

# Upper bound of every wait of the suite, in seconds.
WAIT_SECONDS = 20.0

HUBS = ("orderflow", "classic", "state_gex", "state_greeks_zero", "state_greeks_one")

PROTOBUF = "protobuf.webpubsub.azure.v1"
PROTOBUF_RELIABLE = "protobuf.reliable.webpubsub.azure.v1"
JSON = "json.webpubsub.azure.v1"
JSON_RELIABLE = "json.reliable.webpubsub.azure.v1"
SUBPROTOCOLS = (PROTOBUF, PROTOBUF_RELIABLE, JSON, JSON_RELIABLE)


def generate_protos(out_dir: Path) -> None:
    """Compile every `proto/*.proto` into Python modules in `out_dir` and import-enable them."""
    from grpc_tools import protoc  # imported late: only the generation step needs it

    well_known = importlib.resources.files("grpc_tools") / "_proto"
    sources = sorted(p.name for p in PROTO_DIR.glob("*.proto"))
    if not sources:
        raise RuntimeError(f"no .proto files in {PROTO_DIR}")
    out_dir.mkdir(parents=True, exist_ok=True)
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_DIR}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        *sources,
    ]
    status = protoc.main(args)
    if status != 0:
        raise RuntimeError(f"protoc failed with status {status}: {' '.join(args)}")
    sys.path.insert(0, str(out_dir))
    importlib.invalidate_caches()


def free_port() -> int:
    """A TCP port of 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_binary() -> Path:
    """The server executable: `$TICKWIRE_BIN`, else the debug build of the workspace."""
    override = os.environ.get("TICKWIRE_BIN")
    if override:
        return Path(override)
    return REPO_ROOT / "target" / "debug" / "tickwire-server"


TEST_CONFIG = f"""\
# Written by the interop suite: the demo key plus a key that may publish.
[[api_keys]]
name = "demo"
key = "{DEMO_KEY}"
roles = ["webpubsub.joinLeaveGroup"]

[[api_keys]]
name = "interop-publisher"
key = "{PUBLISHER_KEY}"
roles = ["webpubsub.joinLeaveGroup", "webpubsub.sendToGroup"]

[[api_keys]]
name = "interop-operator"
key = "{OPERATOR_KEY}"
roles = ["admin", "publish"]
"""

# Short periods, so that what the JSON feeds send every few seconds arrives within a test:
# signals of the synthetic market every second, `server_status` on /ws every second, the
# automatic `pong` of /stream every second. It is appended after the key tables, so it
# holds tables only (a top-level key there would land in the last table).
FAST_FEEDS_CONFIG = """
[synthetic]
signal_interval_ms = 1000
book_interval_ms = 500

[ws]
status_interval_secs = 1

[stream]
heartbeat_secs = 1
"""


class TickwireServer:
    """One `tickwire-server` process on 127.0.0.1, started from the repository root.

    Every listener is on a free loopback port: the main one (`http`, `ws`), the market-data
    proxy's own (`proxy_ws`, `--proxy-listen`) and the ZeroMQ bus the server binds
    (`zmq_endpoint`, `--zmq-bind`). `extra_config` is appended to the test configuration;
    `env` adds `TICKWIRE_*` variables (the caller's own are never passed on). With `tls`
    (certificate chain, key and the CA that issued them, PEM files), every listener speaks TLS
    and the URLs are `https://` and `wss://`.
    """

    def __init__(
        self,
        work_dir: Path,
        extra_config: str = "",
        env: dict[str, str] | None = None,
        tls: tuple[Path, Path, Path] | None = None,
    ) -> None:
        self.work_dir = work_dir
        self.extra_config = extra_config
        self.extra_env = dict(env or {})
        self.tls = tls
        if tls is not None:
            cert, key, _ = tls
            self.extra_config += f'\n[tls]\ncert = "{cert}"\nkey = "{key}"\n'
        self.port = free_port()
        self.proxy_port = free_port()
        self.zmq_port = free_port()
        http, ws = ("https", "wss") if tls else ("http", "ws")
        self.http = f"{http}://127.0.0.1:{self.port}"
        self.ws = f"{ws}://127.0.0.1:{self.port}"
        self.proxy_ws = f"{ws}://127.0.0.1:{self.proxy_port}"
        self.zmq_endpoint = f"tcp://127.0.0.1:{self.zmq_port}"
        self.log_path = work_dir / "tickwire-server.log"
        self.config_path = work_dir / "tickwire-interop.toml"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = server_binary()
        if not binary.is_file():
            raise RuntimeError(
                f"server binary {binary} not found: run `cargo build -p tickwire-server` "
                "or set TICKWIRE_BIN"
            )
        self.config_path.write_text(TEST_CONFIG + self.extra_config, encoding="utf-8")
        # The server reads TICKWIRE_* variables as configuration: keep the caller's out.
        env = {k: v for k, v in os.environ.items() if not k.startswith("TICKWIRE_")}
        env.update(self.extra_env)
        env.setdefault("RUST_LOG", "info")
        cmd = [
            str(binary),
            "--config",
            str(self.config_path),
            "--listen",
            f"127.0.0.1:{self.port}",
            "--proxy-listen",
            f"127.0.0.1:{self.proxy_port}",
            "--zmq-bind",
            self.zmq_endpoint,
        ]
        with open(self.log_path, "wb") as log:
            self._proc = subprocess.Popen(
                cmd,
                cwd=REPO_ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + WAIT_SECONDS
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"tickwire-server exited with {self._proc.returncode} before it was ready:\n"
                    + self.log_tail()
                )
            try:
                verify = str(self.tls[2]) if self.tls else True
                resp = requests.get(f"{self.http}/healthz", timeout=1.0, verify=verify)
                if resp.status_code == 200:
                    return
                last_error = RuntimeError(f"/healthz answered {resp.status_code}")
            except requests.RequestException as err:
                last_error = err
            time.sleep(0.1)  # polling interval of a bounded readiness wait
        raise RuntimeError(
            f"tickwire-server not ready within {WAIT_SECONDS}s ({last_error}):\n" + self.log_tail()
        )

    @property
    def pid(self) -> int:
        """The server's process id (while it runs)."""
        assert self._proc is not None, "not started"
        return self._proc.pid

    def rss_kib(self) -> int:
        """The server's resident memory now, in KiB (Linux `/proc`)."""
        for line in Path(f"/proc/{self.pid}/status").read_text(encoding="utf-8").splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no server log)"
        return "\n".join(text.splitlines()[-lines:])


# --- /negotiate --------------------------------------------------------------------------


@dataclass(frozen=True)
class Negotiated:
    """The answer of `/negotiate`."""

    urls: dict[str, str]
    prefix: str


def negotiate(server: TickwireServer, key: str = DEMO_KEY) -> Negotiated:
    """`GET /negotiate` with `Authorization: Basic <key>`, exactly as the protocol document does."""
    resp = requests.get(
        f"{server.http}/negotiate",
        headers={"Authorization": f"Basic {key}"},
        timeout=WAIT_SECONDS,
    )
    assert resp.status_code == 200, f"/negotiate answered {resp.status_code}: {resp.text}"
    data = resp.json()
    return Negotiated(urls=data["websocket_urls"], prefix=data["prefix"])


def client_access_url(ws_url: str) -> str:
    """Turn `ws://HOST/ws/HUB?access_token=T` into the SDKs' `ws://HOST/client/hubs/HUB?...`."""
    parts = urllib.parse.urlsplit(ws_url)
    segments = parts.path.strip("/").split("/")
    assert len(segments) == 2 and segments[0] == "ws", f"unexpected hub URL {ws_url}"
    return urllib.parse.urlunsplit(
        (parts.scheme, parts.netloc, f"/client/hubs/{segments[1]}", parts.query, "")
    )


# --- A link that breaks ------------------------------------------------------------------


class Relay:
    """Forwards TCP bytes between clients and the server until told to cut them."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.pairs: list[tuple[socket.socket, socket.socket]] = []
        self.dead = False
        self.swallowed = 0
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self.lock:
                self.pairs.append((client, upstream))
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                return
            if not data:
                self._close_pair(src)
                return
            if self.dead:
                self.swallowed += len(data)
                continue
            try:
                dst.sendall(data)
            except OSError:
                return

    def _close_pair(self, either: socket.socket) -> None:
        with self.lock:
            for pair in list(self.pairs):
                if either in pair:
                    self.pairs.remove(pair)
                    for s in pair:
                        s.close()

    def reset(self) -> None:
        """Resets every connection through the relay, both sides."""
        with self.lock:
            pairs, self.pairs = self.pairs, []
        for pair in pairs:
            for s in pair:
                try:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def dead_link(self, seconds: float) -> None:
        """Swallows every byte for `seconds`, then resets the connections."""
        self.dead = True
        time.sleep(seconds)  # the length of the simulated outage, not a wait for a result
        self.reset()
        self.dead = False

    def close(self) -> None:
        self.closed = True
        self.listener.close()
        self.reset()


# --- Records ------------------------------------------------------------------------------


def zstd_decompress(payload: bytes) -> bytes:
    """Decompress one record as a plain client would: a one-shot `decompress()`.

    That call needs the frame header to carry the content size, as the Go reference
    server's `EncodeAll` writes it.
    """
    size = zstandard.frame_content_size(payload)
    assert size >= 0, "zstd frame header carries no content size; one-shot decompress() fails"
    return zstandard.ZstdDecompressor().decompress(payload)


def unwrap_any(any_msg: Any, type_url: str, record_cls: type) -> Any:
    """Check an `Any`'s type URL, zstd-decompress its value and parse the record."""
    assert any_msg.type_url == type_url
    record = record_cls()
    record.ParseFromString(zstd_decompress(any_msg.value))
    return record


def decode_any_bytes(raw: bytes, type_url: str, record_cls: type) -> Any:
    """Parse the bytes of an encoded `google.protobuf.Any` and unwrap its record."""
    from google.protobuf import any_pb2

    any_msg = any_pb2.Any()
    any_msg.ParseFromString(raw)
    return unwrap_any(any_msg, type_url, record_cls)


def assert_plausible_price(scaled: int, what: str) -> None:
    """A price scaled x100 between 1 and 1,000,000."""
    assert 100 <= scaled <= 100_000_000, f"{what} = {scaled} (x100) is not a plausible price"


def assert_plausible_timestamp(ts: int) -> None:
    """Unix seconds between 2001 and 2286."""
    assert 1_000_000_000 <= ts < 10_000_000_000, f"timestamp {ts} is not Unix seconds"


def check_gex(record: Any, ticker: str) -> None:
    assert record.ticker == ticker
    assert_plausible_timestamp(record.timestamp)
    assert_plausible_price(record.spot, "spot")
    assert len(record.strikes) > 0, "a GEX chain without strikes"
    prices = [s.strike_price for s in record.strikes]
    for price in prices:
        assert_plausible_price(price, "strike_price")
    assert min(prices) <= record.spot <= max(prices), "the chain does not straddle the spot"


def check_option_profile(record: Any, ticker: str) -> None:
    assert record.ticker == ticker
    assert_plausible_timestamp(record.timestamp)
    assert_plausible_price(record.spot, "spot")
    assert len(record.mini_contracts) > 0, "a profile without contracts"
    strikes = [c.strike for c in record.mini_contracts]
    for strike in strikes:
        assert_plausible_price(strike, "strike")
    assert min(strikes) <= record.spot <= max(strikes), "the profile does not straddle the spot"


def check_orderflow(record: Any, ticker: str) -> None:
    assert record.ticker == ticker
    assert_plausible_timestamp(record.timestamp)
    assert_plausible_price(record.spot, "spot")


# --- A raw client ------------------------------------------------------------------------


class RawClient:
    """A `websocket-client` connection speaking one Web PubSub subprotocol by hand."""

    # Unmatched messages kept for later waits, at most this many.
    STASH_LIMIT = 1000

    def __init__(self, url: str, subprotocol: str | None) -> None:
        self.subprotocol = subprotocol
        self._stash: list[Any] = []
        self.ws = websocket.create_connection(
            url,
            subprotocols=[subprotocol] if subprotocol else None,
            timeout=WAIT_SECONDS,
        )

    def close(self) -> None:
        self.ws.close()

    def __enter__(self) -> "RawClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def is_json(self) -> bool:
        return self.subprotocol is not None and self.subprotocol.startswith("json.")

    def accepted_subprotocol(self) -> str | None:
        return self.ws.getsubprotocol()

    def recv_frame(self, deadline: float) -> tuple[int, bytes]:
        """The next data frame as (opcode, payload), within `deadline` (monotonic)."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("deadline passed")
        self.ws.settimeout(remaining)
        opcode, payload = self.ws.recv_data()
        return opcode, payload

    # protobuf

    def send_pb(self, upstream: Any) -> None:
        self.ws.send(upstream.SerializeToString(), opcode=websocket.ABNF.OPCODE_BINARY)

    def recv_pb(self, deadline: float) -> Any:
        import webpubsub_messages_pb2 as wps

        opcode, payload = self.recv_frame(deadline)
        assert opcode == websocket.ABNF.OPCODE_BINARY, f"expected a binary frame, got {opcode}"
        msg = wps.DownstreamMessage()
        msg.ParseFromString(payload)
        return msg

    def recv_pb_until(self, predicate: Callable[[Any], bool], what: str) -> Any:
        return self._until(self.recv_pb, predicate, what)

    # JSON

    def send_json(self, message: dict[str, Any]) -> None:
        self.ws.send(json.dumps(message))

    def recv_json(self, deadline: float) -> dict[str, Any]:
        opcode, payload = self.recv_frame(deadline)
        assert opcode == websocket.ABNF.OPCODE_TEXT, f"expected a text frame, got {opcode}"
        return json.loads(payload.decode("utf-8"))

    def recv_json_until(self, predicate: Callable[[dict[str, Any]], bool], what: str) -> dict:
        return self._until(self.recv_json, predicate, what)

    def _until(self, recv: Callable[[float], Any], predicate: Callable[[Any], bool], what: str):
        """The first message, stashed or new, that matches `predicate`.

        Messages that do not match stay stashed, in order, for later calls: the order of an
        ack and the data its message caused (an echo, say) is not specified.
        """
        for i, msg in enumerate(self._stash):
            if predicate(msg):
                return self._stash.pop(i)
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            try:
                msg = recv(deadline)
            except (TimeoutError, websocket.WebSocketTimeoutException) as err:
                raise AssertionError(f"no {what} within {WAIT_SECONDS}s") from err
            if predicate(msg):
                return msg
            if len(self._stash) >= self.STASH_LIMIT:
                self._stash.pop(0)  # the oldest replay record: nobody waits for it
            self._stash.append(msg)


def b64decode(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(server: TickwireServer) -> Samples:
    """Every sample of `/metrics`, by name and labels, parsed as OpenMetrics."""
    from prometheus_client.openmetrics.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"{server.http}/metrics", timeout=WAIT_SECONDS) as resp:
        assert resp.headers["Content-Type"].startswith("application/openmetrics-text"), resp.headers
        text = resp.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)
