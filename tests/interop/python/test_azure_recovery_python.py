"""Reliable-session recovery with the official Python client, `azure-messaging-webpubsubclient`.

A steady stream of numbered messages to a group, and the member's connection cut five
times through a TCP relay the test controls: resets, and dead links of seconds (every byte
swallowed both ways, as a broken network does) that end in a reset. The SDK reconnects with
`awps_connection_id` and `awps_reconnection_token` (its default subprotocol is
`json.reliable.webpubsub.azure.v1`); the application must see every message once, in order.
"""

from __future__ import annotations

import threading
import time

from azure.messaging.webpubsubclient import WebPubSubClient, WebPubSubClientCredential
from azure.messaging.webpubsubclient.models import (
    CallbackType,
    OnGroupDataMessageArgs,
    WebPubSubDataType,
    WebPubSubProtocolType,
)

from interop_support import (
    DEMO_KEY,
    PUBLISHER_KEY,
    WAIT_SECONDS,
    Relay,
    client_access_url,
    negotiate,
)

TOTAL = 600
RATE_PER_SECOND = 50
CUTS = ["reset", "dead", "reset", "dead", "reset"]
DEAD_SECONDS = 3.0


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
