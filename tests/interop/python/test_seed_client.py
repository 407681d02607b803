"""The protocol document's own Python client, against a running tickwire-server.

The client is the document's example made whole: `requests` for `/negotiate`,
`websocket-client` with a subprotocol, protobuf messages built with classes generated from
`proto/`, records unwrapped Any -> zstd -> protobuf. The same flow runs over the JSON
subprotocols (base64 data) and the reliable variants, plus the error paths.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import gex_pb2
import option_profile_pb2
import orderflow_pb2
import pytest
import requests
import webpubsub_messages_pb2 as wps
import websocket

from interop_support import (
    DEMO_KEY,
    HUBS,
    JSON,
    JSON_RELIABLE,
    PROTOBUF,
    PROTOBUF_RELIABLE,
    PUBLISHER_KEY,
    SUBPROTOCOLS,
    WAIT_SECONDS,
    RawClient,
    b64decode,
    check_gex,
    check_option_profile,
    check_orderflow,
    decode_any_bytes,
    negotiate,
    unwrap_any,
)

Up = wps.UpstreamMessage
Down = wps.DownstreamMessage


@dataclass(frozen=True)
class Feed:
    """One hub, one group of it, and what its records must look like."""

    hub: str
    group_suffix: str  # the group name after "{prefix}_"
    ticker: str
    type_url: str
    record_cls: type
    check: object

    def __str__(self) -> str:
        return f"{self.hub}:{self.group_suffix}"


FEEDS = [
    Feed("state_gex", "SPX_state_gex_zero", "SPX", "proto.gex", gex_pb2.Gex, check_gex),
    Feed("classic", "ES_SPX_classic_gex_full", "ES_SPX", "proto.gex", gex_pb2.Gex, check_gex),
    Feed(
        "orderflow",
        "SPX_orderflow_orderflow",
        "SPX",
        "proto.orderflow",
        orderflow_pb2.Orderflow,
        check_orderflow,
    ),
    Feed(
        "state_greeks_zero",
        "SPX_state_gamma_zero",
        "SPX",
        "proto.greek",
        option_profile_pb2.OptionProfile,
        check_option_profile,
    ),
    Feed(
        "state_greeks_one",
        "NDX_state_vanna_one",
        "NDX",
        "proto.greek",
        option_profile_pb2.OptionProfile,
        check_option_profile,
    ),
]


def build_join_group_message(group: str, ack_id: int) -> bytes:
    """The document's `build_join_group_message`, with the generated classes."""
    msg = Up(join_group_message=Up.JoinGroupMessage(group=group, ack_id=ack_id))
    return msg.SerializeToString()


def pb_join(client: RawClient, group: str, ack_id: int) -> Down.AckMessage:
    client.ws.send(build_join_group_message(group, ack_id), opcode=websocket.ABNF.OPCODE_BINARY)
    msg = client.recv_pb_until(
        lambda m: m.WhichOneof("message") == "ack_message" and m.ack_message.ack_id == ack_id,
        f"ack {ack_id}",
    )
    return msg.ack_message


def pb_connected(client: RawClient) -> Down.SystemMessage.ConnectedMessage:
    msg = client.recv_pb_until(lambda m: True, "connected message")
    assert msg.WhichOneof("message") == "system_message", msg
    assert msg.system_message.WhichOneof("message") == "connected_message", msg
    connected = msg.system_message.connected_message
    assert connected.connection_id, "connected message without connectionId"
    return connected


def json_connected(client: RawClient) -> dict:
    msg = client.recv_json_until(lambda m: True, "connected message")
    assert msg.get("type") == "system" and msg.get("event") == "connected", msg
    assert msg.get("connectionId"), msg
    return msg


def json_ack(client: RawClient, ack_id: int) -> dict:
    return client.recv_json_until(
        lambda m: m.get("type") == "ack" and m.get("ackId") == ack_id, f"ack {ack_id}"
    )


def pb_data_messages(client: RawClient, group: str, count: int) -> list:
    found = []
    while len(found) < count:
        msg = client.recv_pb_until(
            lambda m: m.WhichOneof("message") == "data_message", f"data message of {group}"
        )
        found.append(msg.data_message)
    return found


# --- /negotiate --------------------------------------------------------------------------


def test_negotiate_returns_a_url_per_hub_and_the_prefix(server):
    neg = negotiate(server)
    assert set(neg.urls) == set(HUBS)
    for hub, url in neg.urls.items():
        assert url.startswith(f"ws://127.0.0.1:{server.port}/ws/{hub}?access_token="), url
        assert len(url.split("access_token=", 1)[1]) > 0
    assert neg.prefix, "empty prefix"


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Basic not-a-key"}, {"Authorization": f"Bearer {DEMO_KEY}"}],
    ids=["no-key", "wrong-key", "not-basic"],
)
def test_negotiate_without_a_valid_key_is_401(server, headers):
    resp = requests.get(f"{server.http}/negotiate", headers=headers, timeout=WAIT_SECONDS)
    assert resp.status_code == 401, resp.text


@pytest.mark.parametrize("query", ["", "?access_token=", "?access_token=not.a.jwt"])
def test_hub_without_a_valid_token_is_401(server, query):
    url = f"ws://127.0.0.1:{server.port}/ws/state_gex{query}"
    with pytest.raises(websocket.WebSocketBadStatusException) as err:
        websocket.create_connection(url, subprotocols=[PROTOBUF], timeout=WAIT_SECONDS)
    assert err.value.status_code == 401


# --- Handshake ----------------------------------------------------------------------------


@pytest.mark.parametrize("subprotocol", SUBPROTOCOLS)
@pytest.mark.parametrize("path", ["ws", "client/hubs"])
def test_handshake_echoes_the_subprotocol(server, subprotocol, path):
    url = negotiate(server).urls["state_gex"].replace("/ws/", f"/{path}/", 1)
    with RawClient(url, subprotocol) as client:
        assert client.accepted_subprotocol() == subprotocol
        if client.is_json:
            connected = json_connected(client)
            has_token = "reconnectionToken" in connected
        else:
            connected = pb_connected(client)
            has_token = connected.HasField("reconnection_token")
        assert has_token == ("reliable" in subprotocol)


def test_no_subprotocol_means_protobuf(server):
    with RawClient(negotiate(server).urls["state_gex"], None) as client:
        pb_connected(client)


def test_first_supported_subprotocol_is_chosen(server):
    url = negotiate(server).urls["state_gex"]
    client = websocket.create_connection(
        url, subprotocols=["mqtt", JSON, PROTOBUF], timeout=WAIT_SECONDS
    )
    try:
        assert client.getsubprotocol() == JSON
    finally:
        client.close()


# --- The document's flow, protobuf ----------------------------------------------------------


@pytest.mark.parametrize("feed", FEEDS, ids=str)
def test_protobuf_client_receives_records(server, feed):
    neg = negotiate(server)
    group = f"{neg.prefix}_{feed.group_suffix}"
    with RawClient(neg.urls[feed.hub], PROTOBUF) as client:
        pb_connected(client)
        ack = pb_join(client, group, ack_id=1)
        assert ack.success, ack
        records = []
        for data in pb_data_messages(client, group, count=2):
            assert data.group == group
            assert getattr(data, "from") in ("server", "group")
            assert not data.HasField("sequence_id"), "sequenceId on a non-reliable protocol"
            assert data.data.WhichOneof("data") == "protobuf_data", data
            record = unwrap_any(data.data.protobuf_data, feed.type_url, feed.record_cls)
            feed.check(record, feed.ticker)
            records.append(record)
        # One record per group per interval: two messages are two different records.
        assert records[0].timestamp != records[1].timestamp


def test_protobuf_reliable_numbers_data_messages_from_one(server):
    neg = negotiate(server)
    group = f"{neg.prefix}_SPX_state_gex_zero"
    with RawClient(neg.urls["state_gex"], PROTOBUF_RELIABLE) as client:
        connected = pb_connected(client)
        assert connected.reconnection_token
        assert pb_join(client, group, ack_id=7).success
        ids = [d.sequence_id for d in pb_data_messages(client, group, count=3)]
        assert ids == [1, 2, 3]
        client.send_pb(Up(sequence_ack_message=Up.SequenceAckMessage(sequence_id=3)))
        ids = [d.sequence_id for d in pb_data_messages(client, group, count=1)]
        assert ids == [4]


def test_protobuf_ping_is_answered_with_pong(server):
    with RawClient(negotiate(server).urls["classic"], PROTOBUF) as client:
        pb_connected(client)
        client.send_pb(Up(ping_message=Up.PingMessage()))
        client.recv_pb_until(lambda m: m.WhichOneof("message") == "pong_message", "pong")


def test_protobuf_join_of_a_group_of_another_hub_is_refused(server):
    neg = negotiate(server)
    with RawClient(neg.urls["state_gex"], PROTOBUF) as client:
        pb_connected(client)
        ack = pb_join(client, f"{neg.prefix}_SPX_orderflow_orderflow", ack_id=1)
        assert not ack.success
        ack = pb_join(client, "not-a-group", ack_id=2)
        assert not ack.success
        # Still usable after the refusals.
        assert pb_join(client, f"{neg.prefix}_SPX_state_gex_one", ack_id=3).success


def test_protobuf_leave_always_succeeds(server):
    neg = negotiate(server)
    with RawClient(neg.urls["state_gex"], PROTOBUF) as client:
        pb_connected(client)
        msg = Up(leave_group_message=Up.LeaveGroupMessage(group="never-joined", ack_id=5))
        client.send_pb(msg)
        ack = client.recv_pb_until(
            lambda m: m.WhichOneof("message") == "ack_message", "ack 5"
        ).ack_message
        assert ack.ack_id == 5 and ack.success


# --- The same flow over JSON ----------------------------------------------------------------


@pytest.mark.parametrize("subprotocol", [JSON, JSON_RELIABLE])
@pytest.mark.parametrize("feed", [FEEDS[0], FEEDS[2], FEEDS[3]], ids=str)
def test_json_client_receives_base64_records(server, subprotocol, feed):
    neg = negotiate(server)
    group = f"{neg.prefix}_{feed.group_suffix}"
    reliable = subprotocol == JSON_RELIABLE
    with RawClient(neg.urls[feed.hub], subprotocol) as client:
        json_connected(client)
        client.send_json({"type": "joinGroup", "group": group, "ackId": 1})
        ack = json_ack(client, 1)
        assert ack["success"] is True, ack
        seen = []
        while len(seen) < 2:
            msg = client.recv_json_until(lambda m: m.get("type") == "message", "data message")
            assert msg["from"] == "group"
            assert msg["group"] == group
            assert msg["dataType"] == "binary"
            record = decode_any_bytes(b64decode(msg["data"]), feed.type_url, feed.record_cls)
            feed.check(record, feed.ticker)
            seen.append(msg.get("sequenceId"))
        if reliable:
            assert seen == [1, 2]
        else:
            assert seen == [None, None]


def test_json_ping_is_answered_with_pong(server):
    with RawClient(negotiate(server).urls["orderflow"], JSON) as client:
        json_connected(client)
        client.send_json({"type": "ping"})
        client.recv_json_until(lambda m: m.get("type") == "pong", "pong")


def test_json_join_of_a_wrong_group_is_refused_with_an_error(server):
    neg = negotiate(server)
    with RawClient(neg.urls["state_greeks_zero"], JSON) as client:
        json_connected(client)
        client.send_json(
            {"type": "joinGroup", "group": f"{neg.prefix}_SPX_state_gex_zero", "ackId": 1}
        )
        ack = json_ack(client, 1)
        assert ack["success"] is False
        assert isinstance(ack.get("error"), dict) and ack["error"].get("name"), ack


def test_json_repeated_ack_id_is_a_duplicate(server):
    neg = negotiate(server)
    group = f"{neg.prefix}_SPX_state_gex_zero"
    with RawClient(neg.urls["state_gex"], JSON) as client:
        json_connected(client)
        client.send_json({"type": "joinGroup", "group": group, "ackId": 1})
        assert json_ack(client, 1)["success"] is True
        client.send_json({"type": "joinGroup", "group": group, "ackId": 1})
        ack = json_ack(client, 1)
        assert ack["success"] is False
        assert ack["error"]["name"] == "Duplicate", ack


def test_json_unknown_fields_are_ignored(server):
    neg = negotiate(server)
    group = f"{neg.prefix}_SPX_state_gex_zero"
    with RawClient(neg.urls["state_gex"], JSON) as client:
        json_connected(client)
        client.send_json(
            {"type": "joinGroup", "group": group, "ackId": 9, "metadata": {"x": 1}, "future": 2}
        )
        assert json_ack(client, 9)["success"] is True


# --- Publishing -------------------------------------------------------------------------------


def test_send_to_group_needs_the_send_role(server):
    neg = negotiate(server, DEMO_KEY)
    group = f"{neg.prefix}_SPX_state_gex_zero"
    with RawClient(neg.urls["state_gex"], JSON) as client:
        json_connected(client)
        client.send_json(
            {"type": "sendToGroup", "group": group, "ackId": 3, "dataType": "text", "data": "x"}
        )
        ack = json_ack(client, 3)
        assert ack["success"] is False
        assert ack["error"]["name"] == "Forbidden", ack


def test_send_to_group_reaches_members_in_every_format(server):
    neg = negotiate(server, PUBLISHER_KEY)
    group = f"{neg.prefix}_NDX_state_gex_one"
    text = f"hello-{uuid.uuid4()}"
    with (
        RawClient(neg.urls["state_gex"], JSON) as publisher,
        RawClient(neg.urls["state_gex"], JSON_RELIABLE) as json_member,
        RawClient(neg.urls["state_gex"], PROTOBUF) as pb_member,
    ):
        for client in (publisher, json_member):
            json_connected(client)
            client.send_json({"type": "joinGroup", "group": group, "ackId": 1})
            assert json_ack(client, 1)["success"] is True
        pb_connected(pb_member)
        assert pb_join(pb_member, group, ack_id=1).success

        publisher.send_json(
            {"type": "sendToGroup", "group": group, "ackId": 2, "dataType": "text", "data": text}
        )
        assert json_ack(publisher, 2)["success"] is True

        def is_text(m: dict) -> bool:
            return m.get("type") == "message" and m.get("dataType") == "text"

        for client in (publisher, json_member):
            msg = client.recv_json_until(is_text, "the published text")
            assert msg["from"] == "group" and msg["group"] == group and msg["data"] == text

        def is_pb_text(m) -> bool:
            return (
                m.WhichOneof("message") == "data_message"
                and m.data_message.data.WhichOneof("data") == "text_data"
            )

        data = pb_member.recv_pb_until(is_pb_text, "the published text").data_message
        assert data.group == group and data.data.text_data == text
