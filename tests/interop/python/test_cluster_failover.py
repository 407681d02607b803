"""A cluster node killed under the official Python Web PubSub client.

Two `tickwire-server` nodes share a real `nats-server` (Debian's, with JetStream). The
client, `azure-messaging-webpubsubclient`, gets its URL from `/negotiate` (asked of whichever
node answers, as a load balancer in front would), which sends it to the least-loaded node; a
group's numbered messages are published on the other node's publish API and reach it through
NATS. Its node is then killed (SIGKILL: no close frame, no leaving entry in the registry). The
SDK reconnects on its own, asks `/negotiate` again, is sent to the surviving node once the
surviving node (the node answering `/negotiate` asks the one it would hand out whether it is up,
through NATS, which says at once that nobody listens for the dead one any more), joins its
group again, and receives what is published from then on, every message once and in order.
The test prints how long the client went without messages.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import requests
import websocket
from azure.messaging.webpubsubclient import WebPubSubClient, WebPubSubClientCredential
from azure.messaging.webpubsubclient.models import (
    CallbackType,
    OnGroupDataMessageArgs,
    WebPubSubProtocolType,
)

from interop_support import (
    DEMO_KEY,
    WAIT_SECONDS,
    TickwireServer,
    client_access_url,
    free_port,
)

PUBLISH_KEY = "tickwire-cluster-publish-key"
PUBLISH_CONFIG = f"""
[[api_keys]]
name = "cluster-publisher"
key = "{PUBLISH_KEY}"
roles = ["publish"]
"""


def nats_binary() -> str:
    """Debian's `nats-server` (scripts/test installs it), or `$TICKWIRE_NATS_SERVER`."""
    found = (
        os.environ.get("TICKWIRE_NATS_SERVER")
        or shutil.which("nats-server")
        or next((p for p in ("/usr/sbin/nats-server", "/usr/bin/nats-server") if Path(p).is_file()), None)
    )
    assert found, "nats-server not found: install Debian's nats-server (scripts/test does)"
    return found


class Nats:
    """A `nats-server` with JetStream on a free loopback port."""

    def __init__(self, store: Path) -> None:
        self.port = free_port()
        store.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [nats_binary(), "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", str(store)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)  # polling interval of a bounded readiness wait
        raise RuntimeError("nats-server did not listen")

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)


def node(work: Path, nats: Nats, name: str, secret: str) -> TickwireServer:
    (work / name).mkdir()
    srv = TickwireServer(work / name, extra_config=PUBLISH_CONFIG)
    srv.extra_env.update(
        {
            "TICKWIRE_CLUSTER__NATS_URL": nats.url,
            "TICKWIRE_CLUSTER__NODE_NAME": name,
            "TICKWIRE_PUBLIC_URL": srv.http,
            "TICKWIRE_TOKEN_SECRET": secret,
        }
    )
    srv.start()
    return srv


def negotiated_url(nodes: list[TickwireServer]) -> str:
    """`/negotiate` of the first node that answers: the hub URL it hands out."""
    for srv in nodes:
        try:
            resp = requests.get(
                f"{srv.http}/negotiate",
                headers={"Authorization": f"Basic {DEMO_KEY}"},
                timeout=2,
            )
        except requests.RequestException:
            continue
        if resp.status_code == 200:
            return resp.json()["websocket_urls"]["state_gex"]
    raise RuntimeError("no node answers /negotiate")


def wait_until(what: str, condition, seconds: float = WAIT_SECONDS) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"{what} within {seconds}s"
        time.sleep(0.05)  # polling interval of a bounded wait


def test_a_killed_nodes_client_moves_to_another_node_through_negotiate(tmp_path):
    nats = Nats(tmp_path / "nats")
    secret = secrets.token_hex(32)
    a = node(tmp_path, nats, "a", secret)
    b = node(tmp_path, nats, "b", secret)
    nodes = [a, b]
    busy = []
    member = None
    stop_publishing = threading.Event()
    try:
        # b is the busier node, so /negotiate (of either node) sends new clients to a.
        busy = [websocket.create_connection(f"{b.ws}/ws", timeout=10) for _ in range(3)]
        wait_until(
            "both nodes sending new clients to a",
            lambda: all(
                f":{a.port}/" in requests.get(
                    f"{srv.http}/negotiate",
                    headers={"Authorization": f"Basic {DEMO_KEY}"},
                    timeout=2,
                ).json()["websocket_urls"]["state_gex"]
                for srv in nodes
            ),
        )

        handed_out: list[str] = []

        def provider() -> str:
            url = client_access_url(negotiated_url(nodes))
            handed_out.append(url)
            return url

        member = WebPubSubClient(
            WebPubSubClientCredential(client_access_url_provider=provider),
            protocol_type=WebPubSubProtocolType.JSON,
            reconnect_retry_total=20,
            start_timeout=WAIT_SECONDS,
        )
        prefix = requests.get(
            f"{b.http}/negotiate", headers={"Authorization": f"Basic {DEMO_KEY}"}, timeout=5
        ).json()["prefix"]
        group = f"{prefix}_FAIL_state_gex_zero"
        got: list[tuple[int, float]] = []
        arrived = threading.Condition()

        def on_message(msg: OnGroupDataMessageArgs) -> None:
            if msg.group == group:
                with arrived:
                    got.append((int(msg.data), time.monotonic()))
                    arrived.notify_all()

        member.subscribe(CallbackType.GROUP_MESSAGE, on_message)
        stopped = threading.Event()
        member.subscribe(CallbackType.STOPPED, lambda *_: stopped.set())
        member.open()
        member.join_group(group)
        assert f":{a.port}/" in handed_out[-1], handed_out

        published = [0]

        def publish() -> None:
            session = requests.Session()
            while not stop_publishing.is_set():
                published[0] += 1
                body = {"kind": "raw", "group": group, "data_type": "text", "data": str(published[0])}
                resp = session.post(
                    f"{b.http}/api/v1/publish",
                    json=body,
                    headers={"Authorization": f"Bearer {PUBLISH_KEY}"},
                    timeout=5,
                )
                assert resp.status_code == 202, resp.text
                stop_publishing.wait(0.05)  # the publishing rate: 20 a second

        publishing = threading.Thread(target=publish, daemon=True)
        publishing.start()

        def count() -> int:
            with arrived:
                return len(got)

        # Published on b, delivered by a through NATS.
        wait_until("messages from b on a", lambda: count() >= 20)

        a._proc.kill()  # SIGKILL: the node vanishes
        killed_at = time.monotonic()
        last_before = got[-1][0]
        wait_until(
            "messages again after the node was killed",
            lambda: any(n > last_before + 5 and t > killed_at for n, t in list(got)),
            seconds=60,
        )
        first_after = next(t for n, t in got if t > killed_at and n > last_before)
        assert f":{b.port}/" in handed_out[-1], f"sent to the surviving node: {handed_out}"
        assert not stopped.is_set(), "the client never gave up"
        # From the reconnection on, every message once and in order.
        after = [n for n, t in got if t >= first_after]
        assert after == list(range(after[0], after[0] + len(after))), after
        print(
            f"node killed; messages again after {(first_after - killed_at) * 1000:.0f} ms, "
            f"through {len(handed_out)} negotiated URLs"
        )
    finally:
        stop_publishing.set()
        if member is not None:
            member.close()
        for ws in busy:
            ws.close()
        for srv in nodes:
            srv.stop()
        nats.stop()
