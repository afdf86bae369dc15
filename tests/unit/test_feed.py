"""The feed state machine (``core/feed.py``): every transition, as plain calls, with no hub, broker or loop."""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest

from fleetcast.core.feed import CLOSED, IGNORE, LIVE, PARK, PARKED, REPLAYING, Feed, Gap, park_offset


@dataclass(frozen=True)
class Ev:
    id: str


def evs(*ms: int) -> list[Ev]:
    return [Ev(f"{m}-0") for m in ms]


def ids_of(events: list[Ev]) -> list[str]:
    return [e.id for e in events]


def replaying(since: str | None = "1-0", limit: int = 100, parks: bool = False) -> Feed[Ev]:
    return Feed(buffer_limit=limit, last=since, parks=parks)


def live_feed(last: str = "5-0", parks: bool = False) -> Feed[Ev]:
    feed = replaying(last, parks=parks)
    assert feed.go_live() == []
    feed.live(evs(6))  # past the floor the replay left
    return feed


# -- REPLAYING ------------------------------------------------------------------------------------------------


def test_a_feed_starts_replaying_and_buffers_live_events() -> None:
    """Live events arriving before the replay ends are held back, not delivered."""
    feed = replaying()
    assert feed.state is REPLAYING
    assert feed.live(evs(5, 6)) == IGNORE
    assert feed.buffered == 2


def test_history_pages_advance_last_and_say_whether_to_read_again() -> None:
    """A full page asks for another read; a short one ends the replay; an empty page keeps the last id."""
    feed = replaying("1-0")
    assert feed.read_from() == "1-0"
    assert feed.history(evs(2, 3), full=True) is True
    assert feed.last == "3-0"
    assert feed.read_from() == "3-0"
    assert feed.history([], full=False) is False
    assert feed.last == "3-0"


def test_replay_racing_live_releases_only_what_the_read_did_not_cover() -> None:
    """Live events appended while a page is read: those the page holds are dropped, the rest released in order."""
    feed = replaying("1-0")
    feed.read_from()
    feed.live(evs(4))  # appended before the read was answered: the page holds it too
    feed.live(evs(5, 6))  # appended after
    assert feed.history(evs(2, 3, 4), full=False) is False
    released = feed.go_live()
    assert ids_of(released) == ["5-0", "6-0"]
    assert feed.state is LIVE
    assert feed.live(released) == 0  # handed to live like any batch: delivered whole
    assert feed.last == "6-0"
    assert feed.live(evs(7)) == 0


def test_go_live_with_nothing_fresh_sets_a_floor_for_late_live_batches() -> None:
    """A live batch carrying events the replay read is cut at the floor; below it nothing is delivered."""
    feed = replaying("1-0")
    feed.read_from()
    feed.history(evs(2, 3, 4), full=False)
    assert feed.go_live() == []
    assert feed.live(evs(3, 4)) == IGNORE
    assert feed.live(evs(4, 5, 6)) == 1  # deliver from offset 1: 5-0, 6-0
    assert feed.last == "6-0"
    # The floor is gone once passed: later batches are not parsed again (and a live source is ordered).
    assert feed.live(evs(3)) == 0


def test_go_live_without_a_last_id_releases_everything_buffered() -> None:
    """A subscription without ``since`` has no replay: what arrived while it answered is delivered as is."""
    feed = replaying(None)
    feed.live(evs(3))
    feed.live(evs(4))
    assert ids_of(feed.go_live()) == ["3-0", "4-0"]
    assert feed.state is LIVE


def test_go_live_with_a_position_found_elsewhere_releases_what_follows_it() -> None:
    """A watch learns its stream position after subscribing: buffered events up to it are dropped."""
    feed = replaying(None)
    feed.live(evs(3, 4, 5))
    assert ids_of(feed.go_live("4-0")) == ["5-0"]
    assert feed.last == "4-0"


def test_overflow_during_replay_empties_the_buffer_and_asks_for_another_read() -> None:
    """Past the bound the buffer is dropped (the stream still has it) and a short page no longer ends the replay."""
    feed = replaying("1-0", limit=3)
    feed.read_from()
    feed.live(evs(5, 6))
    assert feed.live(evs(7, 8)) == IGNORE
    assert feed.buffered == 0
    assert feed.overflowed
    assert feed.history(evs(2, 3, 4, 5), full=False) is True
    assert feed.read_from() == "5-0"
    assert not feed.overflowed
    assert feed.history(evs(6, 7, 8), full=False) is False
    assert feed.go_live() == []


def test_overflow_before_a_read_is_covered_by_that_read() -> None:
    """An overflow before a read is sent costs no extra read: that read holds what was dropped."""
    feed = replaying("1-0", limit=1)
    feed.live(evs(2, 3))
    assert feed.overflowed
    feed.read_from()
    assert feed.history(evs(2, 3), full=False) is False


def test_lost_history_while_replaying_rereads_instead_of_reporting() -> None:
    """The replay's next read applies the gap rule, so the gap comes in order; the buffer is dropped."""
    feed = replaying("1-0")
    feed.read_from()
    feed.live(evs(9))
    assert feed.lost() is Gap.NONE
    assert feed.buffered == 0
    assert feed.history(evs(2), full=False) is True


def test_rewind_restarts_from_the_beginning_of_the_stream() -> None:
    """After lost history the position is 0-0: a recreated stream's lower ids are delivered, not dropped."""
    feed = replaying("900-0")
    feed.read_from()
    feed.live(evs(3))
    feed.rewind()
    assert feed.history([], full=False) is False
    assert ids_of(feed.go_live()) == ["3-0"]


def test_history_needs_a_replaying_feed_with_a_position() -> None:
    """Driver mistakes fail loudly instead of corrupting the position."""
    with pytest.raises(RuntimeError, match="no last id"):
        replaying(None).read_from()
    feed = live_feed()
    with pytest.raises(RuntimeError, match="while live"):
        feed.read_from()
    with pytest.raises(RuntimeError, match="while live"):
        feed.history(evs(9), full=False)
    with pytest.raises(RuntimeError, match="from live"):
        feed.go_live()
    with pytest.raises(ValueError, match="parked"):
        Feed(buffer_limit=1, state=PARKED)


# -- LIVE and PARKED -------------------------------------------------------------------------------------------


def test_live_delivers_whole_batches_and_tracks_the_last_id() -> None:
    """The hot path answers 0 (share the batch) and remembers where the consumer stands."""
    feed = live_feed()
    assert feed.live(evs(7, 8)) == 0
    assert feed.last == "8-0"


def test_a_lagging_consumer_is_written_to_when_the_policy_does_not_park() -> None:
    """``disconnect`` policy: lag does not park; the driver writes and judges the bytes."""
    feed = live_feed(parks=False)
    assert feed.live(evs(7), writable=False) == 0
    assert feed.state is LIVE


def test_a_lagging_consumer_parks_and_unparks() -> None:
    """``dropOldest``/``conflate``: lag parks the batch (last stays), later batches park, unpark goes live."""
    feed = live_feed(parks=True)
    assert feed.live(evs(7), writable=False) == PARK
    assert park_offset(PARK) == 0
    assert feed.state is PARKED
    assert feed.last == "6-0"
    assert feed.live(evs(8), writable=True) == PARK
    feed.unpark("8-0")
    assert feed.state is LIVE
    assert feed.last == "8-0"
    assert feed.live(evs(9)) == 0


def test_unpark_with_an_empty_backlog_keeps_the_last_id() -> None:
    """A backlog that held nothing (all conflated away) leaves the position where it was."""
    feed = live_feed(parks=True)
    feed.live(evs(7), writable=False)
    feed.unpark(None)
    assert (feed.state, feed.last) == (LIVE, "6-0")
    feed.unpark("99-0")  # not parked: no effect
    assert feed.last == "6-0"


def test_parking_a_batch_that_straddles_the_floor_parks_only_the_fresh_events() -> None:
    """Right after a replay, a lagging client parks only events above the last replayed id."""
    feed = replaying("1-0", parks=True)
    feed.read_from()
    feed.history(evs(2, 3), full=False)
    feed.go_live()
    answer = feed.live(evs(3, 4, 5), writable=False)
    assert answer < PARK
    assert park_offset(answer) == 1


def test_lost_history_is_told_now_when_live_and_after_the_backlog_when_parked() -> None:
    """A live consumer hears of the gap at once; a parked one after the events parked before the hole."""
    feed = live_feed(parks=True)
    assert feed.lost() is Gap.NOW
    feed.live(evs(7), writable=False)
    assert feed.lost() is Gap.AFTER_BACKLOG


@pytest.mark.parametrize("parked", [False, True])
def test_resync_goes_back_to_replaying_from_the_last_delivered_id(parked: bool) -> None:
    """A reconnect of the live source: buffer afresh from the last id, floor forgotten."""
    feed = live_feed(parks=True)
    if parked:
        feed.live(evs(7), writable=False)
    feed.resync()
    assert feed.state is REPLAYING
    assert feed.read_from() == "6-0"
    feed.live(evs(8))
    feed.history(evs(7), full=False)
    assert ids_of(feed.go_live()) == ["8-0"]


# -- CLOSED ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("start", ["replaying", "live", "parked"])
def test_a_closed_feed_ignores_everything_and_stays_closed(start: str) -> None:
    """Unsubscribed or unwatched: live events, gaps and reconnects change nothing any more."""
    feed = replaying("1-0", parks=True) if start == "replaying" else live_feed(parks=True)
    if start == "parked":
        feed.live(evs(7), writable=False)
    feed.live(evs(8)) if start == "replaying" else None
    feed.close()
    assert feed.state is CLOSED
    assert feed.buffered == 0
    assert feed.live(evs(9)) == IGNORE
    assert feed.lost() is Gap.NONE
    with pytest.raises(RuntimeError, match="closed"):
        feed.resync()
    with pytest.raises(RuntimeError):
        feed.go_live()


# -- The whole algorithm under random interleavings ------------------------------------------------------------


@pytest.mark.parametrize("seed", range(40))
def test_replay_then_live_delivers_the_stream_exactly_once_in_order(seed: int) -> None:
    """Random publishes, page sizes, buffer bounds and read latencies: the consumer gets every id once, in order."""
    rng = random.Random(seed)
    page, limit = rng.randint(1, 5), rng.randint(1, 8)
    stream: list[Ev] = [Ev(f"{m}-0") for m in range(1, rng.randint(1, 20))]
    since = rng.randint(0, len(stream))
    feed: Feed[Ev] = Feed(buffer_limit=limit, last=f"{since}-0")
    got: list[str] = []

    def publish(n: int) -> None:
        batch = [Ev(f"{len(stream) + i + 1}-0") for i in range(n)]
        stream.extend(batch)
        answer = feed.live(batch)
        if answer >= 0:
            got.extend(ids_of(batch[answer:]))

    more, reads = True, 0
    while more:
        reads += 1
        after = int(feed.read_from().split("-")[0])
        snapshot = [e for e in stream if int(e.id.split("-")[0]) > after][:page]  # the read is answered here
        if reads < 10:  # (a publisher faster than the replay forever would keep it replaying forever)
            publish(rng.randint(0, 3))  # ...but its answer arrives after these live batches
        got.extend(ids_of(snapshot))
        more = feed.history(snapshot, full=len(snapshot) == page)
    released = feed.go_live()
    if released:
        assert feed.live(released) == 0
        got.extend(ids_of(released))
    for _ in range(3):
        publish(rng.randint(1, 3))
    assert got == [e.id for e in stream[since:]]
