"""Native TLS (`[tls]`) with a certificate generated for the test by `trustme`: Python
`websockets` over `wss://` on the main listener (`/ws`, `/stream`) and on the proxy's own,
`/negotiate` over `https://` handing out `wss://` URLs, and what happens to a client that
speaks plain TCP to a TLS port, or does not trust the certificate: it fails, and the server
and everyone else carry on.
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
from pathlib import Path
from typing import Iterator

import pytest
import requests
import trustme
import websockets

from interop_support import DEMO_KEY, FAST_FEEDS_CONFIG, WAIT_SECONDS, TickwireServer


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory, ca: trustme.CA) -> Iterator[TickwireServer]:
    work = tmp_path_factory.mktemp("tickwire-server-tls")
    cert = ca.issue_cert("127.0.0.1", "localhost")
    chain, key, ca_file = work / "cert.pem", work / "key.pem", work / "ca.pem"
    cert.cert_chain_pems[0].write_to_path(str(chain))
    for extra in cert.cert_chain_pems[1:]:
        extra.write_to_path(str(chain), append=True)
    cert.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(ca_file))
    srv = TickwireServer(work, extra_config=FAST_FEEDS_CONFIG, tls=(chain, key, ca_file))
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def client_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


async def first_price(uri: str, context: ssl.SSLContext, **kwargs) -> dict:
    async with websockets.connect(uri, ssl=context, **kwargs) as ws:
        await ws.send(json.dumps({"type": "subscribe", "symbols": ["btc"], "channels": ["price"]}))
        while True:
            msg = json.loads(await asyncio.wait_for(ws.recv(), WAIT_SECONDS))
            if msg["type"] == "price_update":
                return msg


def test_websockets_receive_over_wss(tls_server: TickwireServer, ca: trustme.CA) -> None:
    assert tls_server.ws.startswith("wss://")
    msg = asyncio.run(first_price(f"{tls_server.ws}/ws", client_context(ca)))
    assert msg["symbol"] == "btc" and msg["price"] > 0, msg

    async def stream() -> dict:
        async with websockets.connect(
            f"{tls_server.ws}/stream",
            ssl=client_context(ca),
            extra_headers={"Authorization": f"Bearer {DEMO_KEY}"},
        ) as ws:
            await ws.send(json.dumps({"type": "subscribe", "symbols": ["BTC/USD"]}))
            while True:
                msg = json.loads(await asyncio.wait_for(ws.recv(), WAIT_SECONDS))
                if msg["type"] == "price_update":
                    return msg

    assert asyncio.run(stream())["symbol"] == "BTC/USD"


def test_the_proxy_listener_speaks_tls_too(tls_server: TickwireServer, ca: trustme.CA) -> None:
    async def run() -> dict:
        async with websockets.connect(tls_server.proxy_ws, ssl=client_context(ca)) as ws:
            await ws.send(json.dumps({"action": "authenticate", "api_key": DEMO_KEY}))
            return json.loads(await asyncio.wait_for(ws.recv(), WAIT_SECONDS))

    reply = asyncio.run(run())
    assert reply.get("status") == "success" or reply.get("type") == "auth", reply


def test_negotiate_over_https_hands_out_wss_urls(tls_server: TickwireServer, ca: trustme.CA) -> None:
    with ca.cert_pem.tempfile() as ca_file:
        resp = requests.get(
            f"{tls_server.http}/negotiate",
            headers={"Authorization": f"Basic {DEMO_KEY}"},
            verify=ca_file,
            timeout=WAIT_SECONDS,
        )
        assert resp.status_code == 200, resp.text
        urls = resp.json()["websocket_urls"]
        assert all(u.startswith(f"wss://127.0.0.1:{tls_server.port}/ws/") for u in urls.values()), urls
        metrics = requests.get(f"{tls_server.http}/metrics", verify=ca_file, timeout=WAIT_SECONDS)
        assert metrics.status_code == 200 and "tickwire_connections" in metrics.text


def test_plain_tcp_and_untrusting_clients_fail_and_the_server_carries_on(
    tls_server: TickwireServer, ca: trustme.CA
) -> None:
    # Plain HTTP to the TLS port: no answer a client could take for HTTP.
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"http://127.0.0.1:{tls_server.port}/healthz", timeout=WAIT_SECONDS)
    # A handshake record of garbage: the server answers at most an alert and closes (EOF
    # before the timeout), holding nothing.
    with socket.create_connection(("127.0.0.1", tls_server.port), timeout=WAIT_SECONDS) as raw:
        raw.sendall(b"\x16\x03\x01\x00\x05hello")
        answer = b""
        while chunk := raw.recv(1024):
            answer += chunk
        assert len(answer) < 64, answer
    # A client that does not trust the certificate refuses it.
    with pytest.raises(ssl.SSLCertVerificationError):
        asyncio.run(first_price(f"{tls_server.ws}/ws", ssl.create_default_context()))
    # Everyone else is served as before.
    assert asyncio.run(first_price(f"{tls_server.ws}/ws", client_context(ca)))["symbol"] == "btc"


def test_check_config_reads_the_certificate_and_key(tls_server: TickwireServer, tmp_path: Path) -> None:
    import subprocess

    from interop_support import server_binary

    tls_section = tls_server.config_path.read_text().split("[tls]")[1].splitlines()
    cert_line = next(line for line in tls_section if line.startswith("cert ="))
    key_line = next(line for line in tls_section if line.startswith("key ="))
    good = tmp_path / "good.toml"
    good.write_text(f"[tls]\n{cert_line}\n{key_line}\n")
    ok = subprocess.run([str(server_binary()), "--check-config", str(good)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    # The certificate given as the key: refused, naming the file.
    swapped = tmp_path / "swapped.toml"
    swapped.write_text(f"[tls]\n{cert_line}\n{cert_line.replace('cert =', 'key =')}\n")
    bad = subprocess.run([str(server_binary()), "--check-config", str(swapped)], capture_output=True, text=True)
    assert bad.returncode == 2 and "tls.key" in bad.stderr, bad.stderr


def test_a_client_that_stalls_in_the_handshake_is_closed(tls_server: TickwireServer, ca: trustme.CA) -> None:
    """A TCP connection that never starts TLS is closed after the handshake timeout (10 s),
    not held; the server serves others meanwhile."""
    import time

    with socket.create_connection(("127.0.0.1", tls_server.port), timeout=WAIT_SECONDS) as raw:
        opened = time.monotonic()
        assert asyncio.run(first_price(f"{tls_server.ws}/ws", client_context(ca)))["symbol"] == "btc"
        assert raw.recv(1024) == b""  # EOF: the server closed it
        elapsed = time.monotonic() - opened
    assert 9 <= elapsed <= 15, elapsed
