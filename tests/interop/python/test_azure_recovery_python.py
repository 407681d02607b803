"""Reliable-session recovery with the official Python client, `azure-messaging-webpubsubclient`.

A steady stream of numbered messages to a group, and the member's connection cut five
times through a TCP relay the test controls: resets, and dead links of seconds (every byte
swallowed both ways, as a broken network does) that end in a reset. The SDK reconnects with
`awps_connection_id` and `awps_reconnection_token` (its default subprotocol is
`json.reliable.webpubsub.azure.v1`); the application must see every message once, in order.
"""

from __future__ import annotations

import socket
import struct
import threading
import time

from azure.messaging.webpubsubclient import WebPubSubClient, WebPubSubClientCredential
from azure.messaging.webpubsubclient.models import (
    CallbackType,
    OnGroupDataMessageArgs,
    WebPubSubDataType,
    WebPubSubProtocolType,
)

from interop_support import DEMO_KEY, PUBLISHER_KEY, WAIT_SECONDS, client_access_url, negotiate

TOTAL = 600
RATE_PER_SECOND = 50
CUTS = ["reset", "dead", "reset", "dead", "reset"]
DEAD_SECONDS = 3.0


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


def test_a_reliable_client_loses_nothing_across_five_cuts(server):
    relay = Relay(server.port)
    prefix = negotiate(server, DEMO_KEY).prefix
    group = f"{prefix}_RCVR_state_gex_zero"

    def via_relay() -> str:
        url = client_access_url(negotiate(server, DEMO_KEY).urls["state_gex"])
        return url.replace(f":{server.port}/", f":{relay.port}/")

    member = WebPubSubClient(
        WebPubSubClientCredential(client_access_url_provider=via_relay),
        protocol_type=WebPubSubProtocolType.JSON_RELIABLE,
        # A failed recovery must show, not be papered over by a new connection.
        reconnect_retry_total=0,
        start_timeout=WAIT_SECONDS,
    )
    got: list[int] = []
    arrived = threading.Condition()

    def on_message(msg: OnGroupDataMessageArgs) -> None:
        if msg.group == group:
            with arrived:
                got.append(int(msg.data))
                arrived.notify_all()

    member.subscribe(CallbackType.GROUP_MESSAGE, on_message)
    stopped = threading.Event()
    member.subscribe(CallbackType.STOPPED, lambda *_: stopped.set())
    member.open()
    member.join_group(group)

    publisher = WebPubSubClient(
        WebPubSubClientCredential(
            client_access_url_provider=lambda: client_access_url(
                negotiate(server, PUBLISHER_KEY).urls["state_gex"]
            )
        ),
        protocol_type=WebPubSubProtocolType.JSON_RELIABLE,
        start_timeout=WAIT_SECONDS,
    )
    publisher.open()

    def publish() -> None:
        for n in range(1, TOTAL + 1):
            publisher.send_to_group(group, str(n), WebPubSubDataType.TEXT, no_echo=True, ack=False)
            time.sleep(1 / RATE_PER_SECOND)  # the publishing rate

    publishing = threading.Thread(target=publish, daemon=True)
    publishing.start()

    def wait_for(count: int, seconds: float = 60.0) -> None:
        with arrived:
            assert arrived.wait_for(lambda: len(got) >= count, timeout=seconds), (
                f"{count} messages within {seconds}s (have {len(got)}, stopped: {stopped.is_set()})"
            )

    resumes = []
    try:
        for i, cut in enumerate(CUTS):
            wait_for((i + 1) * 80)
            if cut == "reset":
                relay.reset()
            else:
                relay.dead_link(DEAD_SECONDS)
            cut_at = time.monotonic()
            before = len(got)
            wait_for(before + 1)
            resumes.append((cut, time.monotonic() - cut_at))
        publishing.join(timeout=60)
        wait_for(TOTAL)
        time.sleep(0.5)  # room for a duplicate after the last message to show
        assert got == list(range(1, TOTAL + 1)), "every message once, in order"
        assert not stopped.is_set(), "the client never gave up"
        for cut, seconds in resumes:
            print(f"resumed after a {cut}: first message {seconds * 1000:.0f} ms after the cut")
        print(f"the relay swallowed {relay.swallowed} bytes during dead links")
    finally:
        member.close()
        publisher.close()
        relay.close()
