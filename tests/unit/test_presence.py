"""Presence without sockets: the policy fields, the identity rules, the grace window, the lease and the reaper,
on the embedded store and fleet (the same rules the Redis store keeps; the integration tests run those)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from fleetcast.auth.principal import ANONYMOUS, BadClaims, Grants, Principal, principal_from_claims
from fleetcast.broker.fleet import MemoryFleet
from fleetcast.broker.memory import MemoryBroker
from fleetcast.broker.presence import MemoryPresence
from fleetcast.contract.heartbeat import Heartbeat
from fleetcast.contract.policy import ChannelPolicy
from fleetcast.contract.presence import Entry, dead_after, field
from fleetcast.core import messages
from fleetcast.core.messages import ProtocolError
from fleetcast.errors import BadRequest, RateLimited
from fleetcast.hub.hub import Hub
from fleetcast.hub.notice import Notice
from fleetcast.session.access import Access
from fleetcast.session.policies import PolicyBook
from fleetcast.session.presence import Presence, client_id
from fleetcast.session.publisher import Publisher
from fleetcast.session.session import Limits, Session
from tests.unit.test_session import RecordingCodec, RecordingWire

GRACE = 0.2


@dataclass
class FakeSession:
    """What the registry reads of a session."""

    principal: Principal
    client_id: str | None = None
    presence_conn: str | None = None
    presence_client: str | None = None


def user(sub: str, client: str | None = None) -> FakeSession:
    return FakeSession(Principal("token", sub=sub), client)


class Log:
    def __init__(self) -> None:
        self.said: list[tuple[str, str, str | None]] = []

    def __call__(self, channel: str, kind: str, record: bytes) -> None:
        raw = json.loads(record)
        self.said.append((kind, raw["client"], raw["sub"]))


@pytest.fixture
async def setup() -> AsyncIterator[tuple[Presence, MemoryPresence, Log, MemoryFleet]]:
    log = Log()
    store = MemoryPresence(log)
    fleet = MemoryFleet(pod="p1")
    presence = Presence(store, fleet, pod="p1", grace=GRACE, tick=0.01)
    await presence.start()
    yield presence, store, log, fleet
    await presence.close()


async def settle(seconds: float = 0.05) -> None:
    await asyncio.sleep(seconds)


def test_policy_reads_and_writes_presence_and_refuses_join_leave_without_it() -> None:
    """``presence`` round-trips through the spec; joinLeave without enabled is refused with the reason."""
    policy = ChannelPolicy.from_spec({"presence": {"enabled": True, "joinLeave": True}})
    assert (policy.presence_enabled, policy.presence_join_leave) == (True, True)
    assert ChannelPolicy.from_spec(policy.to_spec()) == policy
    assert ChannelPolicy().to_spec()["presence"] == {"enabled": False, "joinLeave": False}
    with pytest.raises(ValueError, match=r"joinLeave needs presence\.enabled"):
        ChannelPolicy.from_spec({"presence": {"joinLeave": True}})
    with pytest.raises(ValueError, match="enabled must be true or false"):
        ChannelPolicy.from_spec({"presence": {"enabled": "yes"}})


def test_fields_of_different_identities_never_collide() -> None:
    """The length prefix keeps ``sub`` and client id apart: ("a", "b1") and ("ab", "1") differ, as do anonymous."""
    assert field("a", "b1234567") != field("ab", "1234567")
    assert field(None, "x" * 8) != field("x", "x" * 7)
    entry = Entry("c", "client-1", "ann", {"n": 1}, "p1", "p1.x.1", 1.0)
    assert Entry.from_json("c", entry.to_json()) == entry
    assert set(entry.public()) == {"client", "sub", "info", "since"}


def test_client_ids_and_info_are_bounded() -> None:
    """A client id is 8-64 safe characters; an ``info`` claim over 1 KiB makes the token unusable, saying why."""
    assert client_id("abcdefgh") == "abcdefgh"
    assert client_id(None) is None
    for bad in ("short", "x" * 65, "has space!", "{brace}12"):
        with pytest.raises(BadRequest, match="'client' must be"):
            client_id(bad)
    assert principal_from_claims({"sub": "a", "info": {"name": "Ann"}}).info == {"name": "Ann"}
    with pytest.raises(BadClaims, match="'info' must be at most 1024 bytes"):
        principal_from_claims({"sub": "a", "info": "x" * 1100})


def test_presence_ops_parse_strictly() -> None:
    """``presence`` takes an optional cursor and limit (1-1000); ``presence_stats`` only a channel."""
    assert messages.parse({"op": "presence", "channel": "c", "ref": 1}) == messages.PresenceRead("c", 0, 100, 1)
    assert messages.parse({"op": "presence_stats", "channel": "c"}) == messages.PresenceStats("c", None)
    for bad in ({"cursor": -1}, {"limit": 0}, {"limit": 1001}, {"cursor": True}):
        with pytest.raises(ProtocolError):
            messages.parse({"op": "presence", "channel": "c", **bad})


def test_notice_is_encoded_once_per_format_and_shows_no_pod() -> None:
    """One notice, three encodings, each built once; none carries the pod or the connection id."""
    record = Entry("room", "cl-000001", "ann", None, "pod-a", "pod-a.x.1", 1.0).to_json().encode()
    notice = Notice("room", "join", record)
    assert notice.ws() is notice.ws()
    assert notice.sse() == b'event: fleetcast.join\ndata: {"client":"cl-000001","sub":"ann","info":null}\n\n'
    assert b'"channel":"room"' in notice.mux()
    assert b"pod-a" not in notice.ws() + notice.sse() + notice.mux()
    with pytest.raises(ValueError, match="join or leave"):
        Notice("room", "wave", record)


async def test_a_rejoin_within_the_grace_window_announces_nothing(
    setup: tuple[Presence, MemoryPresence, Log, MemoryFleet],
) -> None:
    """Same sub and client id back before the grace ends (new connection): no leave, no second join; the entry
    now carries the new connection. A leave past the grace is announced once."""
    presence, store, log, _ = setup
    first = user("ann", "tab-00000001")
    entry = presence.join(first, "room")  # type: ignore[arg-type]
    await settle()
    assert log.said == [("join", "tab-00000001", "ann")]
    presence.leave(entry)
    again = user("ann", "tab-00000001")
    presence.join(again, "room")  # type: ignore[arg-type]
    await settle(GRACE + 0.1)
    assert log.said == [("join", "tab-00000001", "ann")]
    listed, _ = await presence.page("room", 0, 10)
    assert [c["client"] for c in listed] == ["tab-00000001"]
    entries, _ = await store.page("room", 0, 10)
    assert entries[0].conn == again.presence_conn
    presence.leave(entries[0])
    await settle(GRACE + 0.1)
    assert log.said[-1] == ("leave", "tab-00000001", "ann")
    assert (await presence.stats("room")).clients == 0


async def test_anonymous_and_subless_connections_cannot_choose_their_identity(
    setup: tuple[Presence, MemoryPresence, Log, MemoryFleet],
) -> None:
    """Without a ``sub`` the client id is ignored: two anonymous clients claiming one id get two entries."""
    presence, _, _, _ = setup
    for _ in range(2):
        presence.join(FakeSession(ANONYMOUS, "same-id-0001"), "room")  # type: ignore[arg-type]
        presence.join(FakeSession(Principal("token"), "same-id-0001"), "room")  # type: ignore[arg-type]
    await settle()
    listed, _ = await presence.page("room", 0, 10)
    assert len(listed) == 4
    assert "same-id-0001" not in {c["client"] for c in listed}
    stats = await presence.stats("room")
    assert (stats.clients, stats.users) == (4, 0)


async def test_the_lease_a_dead_pod_is_reaped_with_leaves_and_a_lost_record_is_written_again(
    setup: tuple[Presence, MemoryPresence, Log, MemoryFleet],
) -> None:
    """A pod whose heartbeat is older than the lease allows is filtered, then reaped (one leave per entry, its
    record removed); this pod, finding its own record new, writes its entries again."""
    presence, store, log, fleet = setup
    presence.join(user("ann", "tab-00000001"), "room")  # type: ignore[arg-type]
    await settle()
    stale = time.time() - dead_after(presence.lease) - 1
    await fleet.write_heartbeat(Heartbeat(pod="p0", gateway="default", timestamp=stale))
    ghost = Entry("room", "ghost-0001", "gus", None, "p0", "p0.x.1", stale)
    await store.apply("p0", [ghost], [], [])
    await fleet.write_heartbeat(Heartbeat(pod="p1", gateway="default", timestamp=time.time()))
    await presence.renew(record_was_new=False)
    assert presence.dead_pods == frozenset({"p0"})
    assert ("leave", "ghost-0001", "gus") in log.said
    assert "p0" not in await fleet.heartbeats()
    listed, _ = await presence.page("room", 0, 10)
    assert [c["client"] for c in listed] == ["tab-00000001"]
    await store.close()  # the store lost everything, like a Redis restart without persistence
    await presence.renew(record_was_new=True)
    await settle()
    listed, _ = await presence.page("room", 0, 10)
    assert [c["client"] for c in listed] == ["tab-00000001"]


async def test_only_the_first_live_pod_reaps(setup: tuple[Presence, MemoryPresence, Log, MemoryFleet]) -> None:
    """With a live pod whose name sorts first, this pod leaves the dead pod's entries to it."""
    presence, store, log, fleet = setup
    stale = time.time() - 60
    await fleet.write_heartbeat(Heartbeat(pod="p9", gateway="default", timestamp=stale))
    await fleet.write_heartbeat(Heartbeat(pod="p0", gateway="default", timestamp=time.time()))
    await store.apply("p9", [Entry("room", "ghost-0001", "gus", None, "p9", "p9.x.1", stale)], [], [])
    await presence.renew(record_was_new=False)
    assert ("leave", "ghost-0001", "gus") not in log.said
    listed, _ = await presence.page("room", 0, 10)
    assert listed == []  # filtered all the same: p9 is not alive


class PresenceCodec(RecordingCodec):
    def presence(self, notice: Notice) -> bytes:
        public = notice.public()
        return (json.dumps([notice.kind, public["client"], public["sub"]]) + "\n").encode()


async def test_a_session_hears_joins_in_order_and_a_first_token_makes_its_entry_the_users() -> None:
    """A real session on the embedded broker: subscribing to a presence channel registers it and it hears its own
    join; a first token after anonymous subscribes replaces the anonymous entry by the user's (with the client
    id the connection sent): a join of the user, the anonymous leave after the grace; unsubscribing leaves."""
    broker = MemoryBroker()
    hub = Hub(broker)
    await broker.start(hub.deliver)
    store = MemoryPresence(hub.presence)
    presence = Presence(store, MemoryFleet(pod="p1"), pod="p1", grace=GRACE, tick=0.01)
    await presence.start()
    policy = ChannelPolicy(subscribe_anonymous=True, presence_enabled=True, presence_join_leave=True)
    wire = RecordingWire()
    session = Session(hub=hub, broker=broker, access=Access(PolicyBook(policy)), publisher=Publisher(broker),
                      wire=wire, codec=PresenceCodec(), limits=Limits(), presence=presence,
                      client_id="page-0000001")  # fmt: skip
    try:
        await session.subscribe("room", None)
        await settle()
        anonymous = wire.records[-1]
        assert anonymous[0] == "join"
        assert anonymous[1] != "page-0000001"  # not taken without a sub
        assert anonymous[2] is None
        session.authenticate(Principal("token", sub="ann", subscribe=Grants(everything=True)))
        await settle(GRACE + 0.1)
        assert wire.records[-2:] == [("join", "page-0000001", "ann"), ("leave", anonymous[1], None)]
        listed, _ = await presence.page("room", 0, 10)
        assert [(c["client"], c["sub"]) for c in listed] == [("page-0000001", "ann")]
        session.unsubscribe("room")
        await settle(GRACE + 0.1)
        assert (await presence.stats("room")).clients == 0
    finally:
        session.release()
        await presence.close()
        await broker.close()


async def test_presence_reads_over_a_websocket_are_rate_limited_per_connection() -> None:
    """20 reads at once pass, the next is refused with the rate (each may scan 1,000 entries); the refusal needs
    no rights, the rights are checked on every read that passes."""
    broker = MemoryBroker()
    hub = Hub(broker)
    policy = ChannelPolicy(subscribe_anonymous=True, presence_enabled=True)
    session = Session(hub=hub, broker=broker, access=Access(PolicyBook(policy)), publisher=Publisher(broker),
                      wire=RecordingWire(), codec=PresenceCodec(), limits=Limits())  # fmt: skip
    for _ in range(20):
        assert session.read_presence("room") is not None
    with pytest.raises(RateLimited, match="presence reads per second"):
        session.read_presence("room")
