"""Two hosts, one store: kill -9 of one `serve` and one `worker` mid-stream loses nothing.

What it proves (issue #14): with two `jghub serve` and two `jghub worker` processes, each with a
data folder of its own (no file shared between them), on one PostgreSQL database and one
RabbitMQ, everything a host must share is in the store — so one serve and one worker may die
with kill -9 while traffic flows, and the survivors carry on:

- pushes: sender threads post XML case batches to the serves in turn, as a load balancer would;
  a sender whose serve does not answer (refused, reset, no answer) sends the same batch to the
  other serve ("sent again"). The resend is safe: a record the dead serve had published comes
  back "accepted" with its first message id and is not published again (the accepted changes
  are in the store, `adapters.repeats`);
- the outbox: `pull-dept` pulls every penalty case alternately through serve A and serve B and
  acknowledges each lease through the other serve than the one that leased it;
- a poller: both workers poll one paged source (`SimulatedSource`, which logs every page with
  the key of the worker that asked); one worker at a time may hold the channel's lease;
- mid-stream, serve B and the worker that last read the source (the lease holder) are killed.

The tally (printed): every record a sender was told "accepted" reached `national` (the HTTP
sink) and was acknowledged by `pull-dept`, or was dead-lettered — lost 0; every source record
was read once, but for at most one page in flight at the kill (read again by the survivor), and
no worker read a page while the other held the lease; `jghub journal verify` on the store finds
the chain intact and no acknowledged step without its entry; the outbox is empty.

Duplicates at a target are counted and bounded, not forbidden: delivery is at-least-once, and a
message the killed worker had delivered but not yet acked is delivered again by the survivor.
At most the killed worker's unsettled messages can come twice: the prefetch of each of its two
target queues. Skips without PostgreSQL or RabbitMQ (fails under CI=true).
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from fault_pipeline import ECO_KEY, case_batch
from store_support import fresh_store_url, require_postgresql
from two_hosts import PAGE_SIZE, PULL_KEY, PULL_SYSTEM, TwoHosts

from adapters.protocols.outbox import StoredOutbox
from bus.topology import Target
from hub.simulators.clients import OutboxPuller
from store import Store

pytestmark = [pytest.mark.rabbitmq, pytest.mark.postgresql]

SENDERS = 3
BATCH = 10
BEFORE_KILL_S = 5.0
AFTER_KILL_S = 6.0
DRAIN_S = 45.0  # only keeps a broken hub from hanging the suite
SOURCE_PAGE_EVERY_S = 0.3
DUPLICATES_ALLOWED = 2 * Target.model_fields["prefetch"].default
"""The killed worker's unsettled messages: one prefetch for each of its two target queues."""


@dataclass
class Pushes:
    """What the senders were told, and how often they had to send again."""

    accepted: set[str] = field(default_factory=set)
    repeats: int = 0
    sent_again: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def send(hosts: TwoHosts, index: int, pushes: Pushes, stop: threading.Event) -> None:
    """Post batches to the serves in turn until `stop`; a batch a serve did not answer goes
    to the other serve, until one answers every record."""
    serves = itertools.cycle(hosts.serves.values())
    with httpx.Client(timeout=10) as client:
        for batch in itertools.count():
            if stop.is_set():
                return
            first = index * 1_000_000 + batch * BATCH
            attempts = 0
            while True:
                serve = next(serves)
                try:
                    answer = client.post(
                        f"{serve.base}/systems/eco-env-penalty/xml/case_batch",
                        content=case_batch(first, BATCH),
                        headers={"X-Api-Key": ECO_KEY, "Content-Type": "application/xml"},
                    )
                    if answer.status_code == 200 and answer.json()["accepted"] == BATCH:
                        break
                except httpx.TransportError:
                    pass
                attempts += 1
                assert attempts < 50, f"batch {first} was never accepted"
            records = answer.json()["records"]
            with pushes.lock:
                pushes.sent_again += attempts
                pushes.accepted.update(r["message_id"] for r in records)
                pushes.repeats += sum(bool(r.get("repeat")) for r in records)


def feed_source(hosts: TwoHosts, stop: threading.Event) -> None:
    """A live source: one page of newer records every SOURCE_PAGE_EVERY_S."""
    while not stop.wait(SOURCE_PAGE_EVERY_S):
        hosts.source.add(PAGE_SIZE)


def lease_holder(hosts: TwoHosts) -> str:
    """The worker ("A" or "B") that last read new records from the source."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        reads = [read for read in list(hosts.source.reads) if read.new]
        if reads:
            return reads[-1].reader.removeprefix("worker-")
        time.sleep(0.1)
    raise AssertionError(f"no worker read the source: {hosts.crashed()}")


def settled(condition: Callable[[], bool], hosts: TwoHosts) -> bool:
    """Whether `condition` holds within DRAIN_S (the tally then says what is missing)."""
    deadline = time.monotonic() + DRAIN_S
    while not condition():
        if hosts.crashed() or time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def pulled_nothing(puller: OutboxPuller) -> bool:
    """Whether one more pull (acknowledged) found the outbox empty."""
    try:
        return puller.pull_once() == 0
    except httpx.HTTPError:
        return False


@pytest.fixture
def hosts(tmp_path: Path) -> Iterator[TwoHosts]:
    require_postgresql()
    with fresh_store_url("postgresql", tmp_path) as url, TwoHosts(tmp_path, url) as running:
        yield running


@pytest.mark.timeout(240)
def test_two_hosts_lose_nothing_when_one_serve_and_one_worker_are_killed(
    hosts: TwoHosts, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JGHUB_TWOHOSTS_KEY_PULL", PULL_KEY)
    pushes = Pushes()
    stop_sending, stop_pulling = threading.Event(), threading.Event()
    puller = OutboxPuller(
        hosts.config.system(PULL_SYSTEM),
        [host.base for host in hosts.serves.values()],
        interval_s=0.1,
        timeout=10,
    )
    threads = [
        threading.Thread(target=send, args=(hosts, i, pushes, stop_sending), daemon=True)
        for i in range(SENDERS)
    ]
    threads.append(threading.Thread(target=feed_source, args=(hosts, stop_sending), daemon=True))
    pulling = threading.Thread(target=puller.run, args=(stop_pulling,), daemon=True)
    for thread in [*threads, pulling]:
        thread.start()
    try:
        time.sleep(BEFORE_KILL_S)
        holder = lease_holder(hosts)
        survivor = "B" if holder == "A" else "A"
        hosts.kill(hosts.serves["B"])
        hosts.kill(hosts.workers[holder])
        killed_at = time.monotonic()
        time.sleep(AFTER_KILL_S)
        stop_sending.set()
        for thread in threads:
            thread.join(timeout=30)
        records = [r.record_id for feed in hosts.source.feeds.values() for r in feed.records]
        source_valid = hosts.source.counts()["valid"]

        def delivered_everywhere() -> bool:
            at_sink = hosts.sink.ids | hosts.dead_letters("national")
            pulled = puller.acked | hosts.dead_letters(PULL_SYSTEM)
            from_source = sum(s == hosts.source_uri for s in hosts.sink.sources.values())
            return (
                pushes.accepted <= at_sink
                and pushes.accepted <= pulled
                and from_source >= source_valid
            )

        settled(delivered_everywhere, hosts)
        stop_pulling.set()
        pulling.join(timeout=30)
        # Until a pull finds nothing and the store holds nothing unacknowledged: a lease whose
        # pull the killed serve took but never answered is handed out again once it expires.
        outbox = StoredOutbox(Store.open(hosts.database_url))
        outbox_empty = settled(
            lambda: pulled_nothing(puller) and outbox.pending(PULL_SYSTEM) == 0, hosts
        )
    finally:
        stop_sending.set()
        stop_pulling.set()
        pulling.join(timeout=30)
        puller.close()

    # ---------------------------------------------------------------- the tally
    dead_national, dead_pull = hosts.dead_letters("national"), hosts.dead_letters(PULL_SYSTEM)
    lost_national = pushes.accepted - hosts.sink.ids - dead_national
    lost_pull = pushes.accepted - puller.acked - dead_pull
    sink_duplicates = sum(n - 1 for n in hosts.sink.arrivals.values())
    pull_duplicates = sum(n - 1 for n in puller.pulled.values())
    from_source = Counter(hosts.sink.sources.values())[hosts.source_uri]
    pulled_from_source = sum(
        json.loads(item.body).get("source") == hosts.source_uri for item in puller.log.items()
    )

    reads = [read for read in hosts.source.reads if read.new]
    readers: dict[str, list[str]] = {}
    for read in reads:
        for record_id in read.new:
            readers.setdefault(record_id, []).append(read.reader)
    unread = [r for r in records if r not in readers]
    read_again = {r: who for r, who in readers.items() if len(who) > 1}
    before = {read.reader for read in reads if read.at < killed_at}
    after = {read.reader for read in reads if read.at >= killed_at}
    verified = hosts.jghub("journal", "verify")
    # What the store itself holds unacknowledged (leased or not); the puller's last `pending`
    # answer may predate messages that came in after it.
    left_in_outbox = outbox.pending(PULL_SYSTEM)

    rows = [
        ("pushes accepted", len(pushes.accepted)),
        ("  of them answered as repeats", pushes.repeats),
        ("  requests sent again", pushes.sent_again),
        ("national: delivered", len(pushes.accepted & hosts.sink.ids)),
        ("national: dead-lettered", len(dead_national)),
        ("national: lost", len(lost_national)),
        ("national: duplicates", sink_duplicates),
        ("pull-dept: acked", len(pushes.accepted & puller.acked)),
        ("pull-dept: dead-lettered", len(dead_pull)),
        ("pull-dept: lost", len(lost_pull)),
        ("pull-dept: handed out again", pull_duplicates),
        ("pull-dept: acked through the other serve", puller.acked_elsewhere),
        ("pull-dept: pulls failed over", puller.failovers),
        ("pull-dept: unacknowledged in the store", left_in_outbox),
        ("pull-dept: a last pull found nothing", outbox_empty),
        ("source: records (valid)", source_valid),
        ("source: delivered to national / pull-dept", f"{from_source} / {pulled_from_source}"),
        ("source: unread", len(unread)),
        ("source: read again", len(read_again)),
        (f"source: readers before / after kill of worker {holder}", f"{before} / {after}"),
        ("journal verify exit", verified.returncode),
    ]
    width = max(len(name) for name, _ in rows)
    print("\n[two hosts] " + "\n[two hosts] ".join(f"{n:<{width}}  {v}" for n, v in rows))

    checks = {
        "no process died unless killed": not hosts.crashed(),
        "records were accepted, some sent again": bool(pushes.accepted) and pushes.sent_again > 0,
        "lost 0 at national": not lost_national,
        "lost 0 at pull-dept": not lost_pull,
        f"duplicates at national <= {DUPLICATES_ALLOWED}": sink_duplicates <= DUPLICATES_ALLOWED,
        "a lease was acked through the other serve": puller.acked_elsewhere > 0,
        "the outbox is empty": outbox_empty and left_in_outbox == 0,
        "every polled record delivered to both targets": (
            from_source >= source_valid and pulled_from_source >= source_valid
        ),
        "every source record read": not unread,
        # The lease: one reader while it held it, the survivor after.
        "only the lease holder read before the kill": before == {f"worker-{holder}"},
        "only the survivor read after the kill": after <= {f"worker-{survivor}"},
        # Only the page in flight at the kill may be read twice: by the killed worker, then by
        # the survivor.
        "at most the page in flight read twice": len(read_again) <= PAGE_SIZE
        and all(who == [f"worker-{holder}", f"worker-{survivor}"] for who in read_again.values()),
        "journal verify on the store: intact, no gaps": verified.returncode == 0,
    }
    failed = [name for name, ok in checks.items() if not ok]
    assert not failed, (
        f"failed: {failed}; processes: {hosts.crashed()}; lost at national "
        f"{sorted(lost_national)[:3]}, at pull-dept {sorted(lost_pull)[:3]}; read twice "
        f"{dict(list(read_again.items())[:3])}; journal verify: "
        f"{(verified.stdout + verified.stderr)[-1500:]}"
    )
