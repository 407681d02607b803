"""The official Python client, `azure-messaging-webpubsubclient`, against tickwire-server.

The SDK takes a client access URL (`ws://HOST/client/hubs/HUB?access_token=JWT`) from a
callback, the place where an application calls `/negotiate`; it never negotiates itself. It
speaks `json.reliable.webpubsub.azure.v1` (its default) or `json.webpubsub.azure.v1`.
"""

from __future__ import annotations

import queue
import time
import uuid
from typing import Any, Iterator

import gex_pb2
import pytest
from azure.messaging.webpubsubclient import WebPubSubClient, WebPubSubClientCredential
from azure.messaging.webpubsubclient.models import (
    CallbackType,
    OnConnectedArgs,
    OnGroupDataMessageArgs,
    SendMessageError,
    WebPubSubDataType,
    WebPubSubProtocolType,
)

from interop_support import (
    DEMO_KEY,
    PUBLISHER_KEY,
    WAIT_SECONDS,
    check_gex,
    client_access_url,
    decode_any_bytes,
    negotiate,
)

PROTOCOLS = [WebPubSubProtocolType.JSON_RELIABLE, WebPubSubProtocolType.JSON]
ACK_TIMEOUT_SECONDS = 5.0


class SdkClient:
    """A `WebPubSubClient` whose group messages and connected events land in queues."""

    def __init__(self, server, protocol: WebPubSubProtocolType, key: str, hub: str) -> None:
        self.negotiations = 0

        def provider() -> str:
            self.negotiations += 1
            return client_access_url(negotiate(server, key).urls[hub])

        self.client = WebPubSubClient(
            WebPubSubClientCredential(client_access_url_provider=provider),
            protocol_type=protocol,
            # Fail fast instead of the SDK's 30 s waits and retries. The SDK can miss an ack
            # that arrives before it starts waiting for it (a lost condition-variable
            # wakeup, likely on loopback); it then waits the whole ack_timeout and still
            # reports the ack's outcome, so a short timeout only saves time.
            ack_timeout=ACK_TIMEOUT_SECONDS,
            start_timeout=WAIT_SECONDS,
            message_retry_total=0,
            reconnect_retry_total=0,
        )
        self.prefix = negotiate(server, key).prefix
        self.messages: queue.Queue[OnGroupDataMessageArgs] = queue.Queue()
        self.connected: queue.Queue[OnConnectedArgs] = queue.Queue()
        self.client.subscribe(CallbackType.GROUP_MESSAGE, self.messages.put)
        self.client.subscribe(CallbackType.CONNECTED, self.connected.put)

    def next_message(self, predicate, what: str) -> OnGroupDataMessageArgs:
        """The next group message matching `predicate`, within the suite's bound."""
        deadline = time.monotonic() + WAIT_SECONDS
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                msg = self.messages.get(timeout=remaining)
            except queue.Empty:
                break
            if predicate(msg):
                return msg
        raise AssertionError(f"no {what} within {WAIT_SECONDS}s")

    def drain(self) -> list[OnGroupDataMessageArgs]:
        """The group messages received so far and not yet taken."""
        taken = []
        while True:
            try:
                taken.append(self.messages.get_nowait())
            except queue.Empty:
                return taken


@pytest.fixture
def sdk_client(server) -> Iterator[Any]:
    """Factory of opened SDK clients, all closed at the end of the test."""
    opened: list[SdkClient] = []

    def make(protocol: WebPubSubProtocolType, key: str = DEMO_KEY, hub: str = "state_gex"):
        wrapper = SdkClient(server, protocol, key, hub)
        wrapper.client.open()
        opened.append(wrapper)
        return wrapper

    yield make
    for wrapper in opened:
        wrapper.client.close()


@pytest.mark.parametrize("protocol", PROTOCOLS, ids=lambda p: p.value)
def test_sdk_connects_and_reports_its_connection(sdk_client, protocol):
    c = sdk_client(protocol)
    assert c.client.is_connected()
    connected = c.connected.get(timeout=WAIT_SECONDS)
    assert connected.connection_id
    assert c.negotiations == 1


@pytest.mark.parametrize("protocol", PROTOCOLS, ids=lambda p: p.value)
def test_sdk_receives_replayed_records(sdk_client, protocol):
    c = sdk_client(protocol)
    group = f"{c.prefix}_SPX_state_gex_zero"
    c.client.join_group(group)
    sequence_ids = []
    for _ in range(2):
        msg = c.next_message(lambda m: m.group == group, f"data message of {group}")
        assert msg.data_type == WebPubSubDataType.BINARY
        assert isinstance(msg.data, memoryview)
        record = decode_any_bytes(bytes(msg.data), "proto.gex", gex_pb2.Gex)
        check_gex(record, "SPX")
        sequence_ids.append(msg.sequence_id)
    if protocol == WebPubSubProtocolType.JSON_RELIABLE:
        assert sequence_ids[0] >= 1 and sequence_ids[1] == sequence_ids[0] + 1
    else:
        assert sequence_ids == [None, None]


@pytest.mark.parametrize("protocol", PROTOCOLS, ids=lambda p: p.value)
def test_sdk_send_to_group_round_trip_and_no_echo(sdk_client, protocol):
    c = sdk_client(protocol, key=PUBLISHER_KEY)
    group = f"{c.prefix}_NDX_state_gex_one"
    c.client.join_group(group)
    tag = str(uuid.uuid4())

    def own(m: OnGroupDataMessageArgs) -> bool:
        return m.group == group and m.data_type != WebPubSubDataType.BINARY

    # Messages of one connection arrive in order: once the echoed message that was sent
    # second has arrived, the no_echo one sent first would have arrived before it.
    c.client.send_to_group(group, f"{tag}-silent", WebPubSubDataType.TEXT, no_echo=True)
    c.client.send_to_group(group, f"{tag}-text", WebPubSubDataType.TEXT)
    c.client.send_to_group(group, {"tag": tag, "n": 1}, WebPubSubDataType.JSON)
    c.client.send_to_group(group, memoryview(b"\x00\x01" + tag.encode()), WebPubSubDataType.BINARY)

    first = c.next_message(own, "the echoed text")
    assert first.data_type == WebPubSubDataType.TEXT
    assert first.data == f"{tag}-text", "the no_echo message came back to its sender"

    second = c.next_message(own, "the echoed JSON")
    assert second.data_type == WebPubSubDataType.JSON
    assert second.data == {"tag": tag, "n": 1}

    third = c.next_message(
        lambda m: m.group == group
        and m.data_type == WebPubSubDataType.BINARY
        and bytes(m.data).startswith(b"\x00\x01"),
        "the echoed bytes",
    )
    assert bytes(third.data) == b"\x00\x01" + tag.encode()


@pytest.mark.parametrize("protocol", PROTOCOLS, ids=lambda p: p.value)
def test_sdk_publishing_reaches_another_sdk_client(sdk_client, protocol):
    publisher = sdk_client(protocol, key=PUBLISHER_KEY)
    member = sdk_client(WebPubSubProtocolType.JSON_RELIABLE)
    group = f"{publisher.prefix}_SPX_state_gex_one"
    member.client.join_group(group)
    tag = str(uuid.uuid4())
    publisher.client.send_to_group(group, tag, WebPubSubDataType.TEXT, no_echo=True)
    msg = member.next_message(
        lambda m: m.group == group and m.data_type == WebPubSubDataType.TEXT, "the text"
    )
    assert msg.data == tag


@pytest.mark.parametrize("protocol", PROTOCOLS, ids=lambda p: p.value)
def test_sdk_send_without_the_send_role_is_forbidden(sdk_client, protocol):
    c = sdk_client(protocol, key=DEMO_KEY)
    group = f"{c.prefix}_SPX_state_gex_zero"
    with pytest.raises(SendMessageError) as err:
        c.client.send_to_group(group, "nope", WebPubSubDataType.TEXT)
    assert err.value.error_detail is not None
    assert err.value.error_detail.name == "Forbidden"


@pytest.mark.parametrize("protocol", PROTOCOLS, ids=lambda p: p.value)
def test_sdk_join_of_a_wrong_group_raises(sdk_client, protocol):
    c = sdk_client(protocol)
    with pytest.raises(SendMessageError) as err:
        c.client.join_group(f"{c.prefix}_SPX_orderflow_orderflow")
    assert err.value.error_detail is not None and err.value.error_detail.name
    # The connection survives a refused join.
    c.client.join_group(f"{c.prefix}_SPX_state_gex_zero")
    assert c.client.is_connected()


def test_sdk_group_messages_name_their_sender(sdk_client):
    c = sdk_client(WebPubSubProtocolType.JSON_RELIABLE, key=PUBLISHER_KEY)
    group = f"{c.prefix}_SPX_state_gex_zero"
    c.client.join_group(group)
    tag = str(uuid.uuid4())
    c.client.send_to_group(group, tag, WebPubSubDataType.TEXT)
    msg = c.next_message(lambda m: m.group == group and m.data == tag, "the echoed text")
    # The service names the publishing user (the API key's name) in `fromUserId`.
    assert msg.from_user_id == "interop-publisher"


def test_sdk_leave_stops_the_data(sdk_client):
    c = sdk_client(WebPubSubProtocolType.JSON_RELIABLE, key=PUBLISHER_KEY)
    replay = f"{c.prefix}_SPX_state_gex_full"
    other = f"{c.prefix}_NDX_state_gex_full"
    c.client.join_group(replay)
    c.next_message(lambda m: m.group == replay, f"data of {replay}")
    c.client.leave_group(replay)
    # The SDK handles frames in order on one thread, so whatever preceded the leave's ack
    # is in the queue by now.
    c.drain()
    c.client.join_group(other)
    marker = str(uuid.uuid4())
    c.client.send_to_group(other, marker, WebPubSubDataType.TEXT)
    between = []
    while True:
        msg = c.next_message(lambda m: True, "the marker")
        if msg.group == other and msg.data == marker:
            break
        between.append(msg.group)
    assert replay not in between, f"data of {replay} after leaving it"
