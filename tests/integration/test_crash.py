"""kill -9 during a message flow: nothing acknowledged is lost, nothing is
delivered twice to an application, per-sender order holds (DESIGN.md
section 4; reliability anchors D1, D2).

Every message carries its sequence number in the payload; FlowChecker
classifies each as lost / duplicated / reordered / unexpected and the test
passes only when all four are empty. Publishes whose outcome is unknown
(in flight when a process died) may or may not arrive ("recovered").
"""
import hashlib
import os
import random
import secrets
import time

import pytest

from dxbharness import (E_OK, T_WELCOME, FlowChecker, HarnessError, make_envelope,
                        parse_seq_payload, seq_payload, wait_until)

DATASET = "seq.test"


class Publisher:
    """An application publishing numbered messages through an agent's API,
    keeping up to `window` requests open. Records every outcome."""

    def __init__(self, agent, recipients, checker, run, window=64):
        self.agent = agent
        self.recipients = recipients
        self.checker = checker
        self.run = run
        self.window = window
        self.next_seq = 1
        self.open = {}  # req -> seq
        self.client = agent.client()
        self.refused = {}

    def reconnect(self):
        self.client.close()
        self.client = self.agent.client()

    def abandon(self):
        """The agent died: open requests have an unknown outcome."""
        self.open.clear()

    def pump(self, until_seq, timeout=0.02):
        while self.next_seq <= until_seq and len(self.open) < self.window:
            seq = self.next_seq
            self.next_seq += 1
            self.checker.attempt(self.agent.node, seq)
            req = self.client.publish_async(DATASET, self.recipients, f"m{seq:06d}",
                                            seq_payload(self.run, self.agent.node, seq))
            self.open[req] = seq
        self.client.collect(timeout)
        for req in [r for r in self.open if r in self.client.results]:
            code, _, text = self.client.results.pop(req)
            seq = self.open.pop(req)
            if code == E_OK:
                self.checker.acked(self.agent.node, seq)
            else:
                self.refused[seq] = (code, text)

    def finish(self, timeout=60):
        wait_until(lambda: (self.pump(self.next_seq - 1, 0.05), not self.open)[1], timeout,
                   interval=0.0, what="results of every open publish")


class Consumer:
    """An application subscribed on an agent's API; acks after recording."""

    def __init__(self, agent, checker, run):
        self.agent = agent
        self.checker = checker
        self.run = run
        self.client = agent.client()
        self.client.subscribe(DATASET)
        self.unexpected = []

    def pump(self, timeout=0.0):
        self.client.collect(timeout)
        for m in self.client.messages:
            run, sender, seq = parse_seq_payload(m["payload"])
            if run != self.run or sender != m["sender"]:
                self.unexpected.append(m)
            else:
                self.checker.deliver(sender, seq)
            self.client.ack(m["msg_id"])
        self.client.messages.clear()

    def distinct(self):
        return len(set(self.checker.delivered))


def _wait_all_acked_delivered(checker, consumer, timeout, stall_s=20.0):
    """Waits until every acknowledged message was delivered. Gives up after
    timeout, or sooner when nothing new arrived for stall_s; then fails with
    the checker's classification (lost, duplicated, ...)."""
    deadline = time.monotonic() + timeout
    last_count, last_progress = -1, time.monotonic()
    while True:
        consumer.pump(0.05)
        want = {k for k, v in checker.sent.items() if v == "ok"}
        if want <= set(checker.delivered):
            return
        now = time.monotonic()
        if len(checker.delivered) != last_count:
            last_count, last_progress = len(checker.delivered), now
        if now >= deadline or now - last_progress >= stall_s:
            checker.assert_clean()
            raise HarnessError(f"acked messages missing after {timeout}s: {checker.report()}")


def _flow_setup(h):
    a, c = h.keygen("sq.hrss"), h.keygen("sq.civil")
    b = h.broker([a, c])
    sender = h.agent(a, b)
    receiver = h.agent(c, b, datasets=[{"id": DATASET, "recipients": ["sq.hrss"],
                                        "inbound": "api"}])
    h.wait_connected("sq.hrss")
    h.wait_connected("sq.civil")
    return b, sender, receiver


@pytest.mark.agent
def test_broker_sigkill_five_times_during_5000_messages_loses_nothing_acked(h):
    b, sender, receiver = _flow_setup(h)
    checker, run = FlowChecker(), secrets.token_hex(4)
    pub = Publisher(sender, ["sq.civil"], checker, run)
    con = Consumer(receiver, checker, run)
    total, kills = 5000, 5
    rng = random.Random(run)
    marks = sorted(rng.sample(range(500, total - 300), kills))
    for mark in marks:
        wait_until(lambda: (pub.pump(mark), con.pump(), checker.acked_count() >= mark)[2], 60,
                   interval=0.0, what=f"{mark} publishes acked")
        b.kill9()
        # The agents keep taking publishes while the broker is gone.
        t_end = time.monotonic() + rng.uniform(0.0, 0.3)
        while time.monotonic() < t_end:
            pub.pump(mark + 100)
        b.start()
    pub.pump(total)
    wait_until(lambda: (pub.pump(total), con.pump(), pub.next_seq > total and not pub.open)[2],
               120, interval=0.0, what="all 5000 publishes answered")
    assert not pub.refused, f"publishes refused: {list(pub.refused.items())[:5]}"
    _wait_all_acked_delivered(checker, con, 180)
    h.wait_queue("sq.civil", 0, timeout=30)
    con.pump(0.5)
    report = checker.assert_clean()
    print(f"flow report: { {k: (len(v) if isinstance(v, list) else v) for k, v in report.items()} }")
    assert report["acked"] == total
    assert not con.unexpected
    assert b.starts == kills + 1


@pytest.mark.agent
def test_sending_agent_sigkill_five_times_loses_nothing_acked_and_keeps_order(h):
    b, sender, receiver = _flow_setup(h)
    checker, run = FlowChecker(), secrets.token_hex(4)
    pub = Publisher(sender, ["sq.civil"], checker, run)
    con = Consumer(receiver, checker, run)
    total, kills = 5000, 5
    rng = random.Random(run)
    marks = sorted(rng.sample(range(500, total - 300), kills))
    for mark in marks:
        wait_until(lambda: (pub.pump(mark + 64), con.pump(), checker.acked_count() >= mark)[2],
                   60, interval=0.0, what=f"{mark} publishes acked")
        sender.kill9()  # with up to 64 API requests open
        pub.abandon()
        sender.start()
        pub.reconnect()
        h.wait_connected("sq.hrss", timeout=20)
    wait_until(lambda: (pub.pump(total), con.pump(), pub.next_seq > total and not pub.open)[2],
               120, interval=0.0, what="all publishes answered")
    assert not pub.refused, f"publishes refused: {list(pub.refused.items())[:5]}"
    _wait_all_acked_delivered(checker, con, 180)
    h.wait_queue("sq.civil", 0, timeout=30)
    con.pump(0.5)
    report = checker.assert_clean()
    print(f"flow report: { {k: (len(v) if isinstance(v, list) else v) for k, v in report.items()} }")
    assert report["acked"] >= total - kills * pub.window
    assert not con.unexpected
    assert sender.starts == kills + 1


@pytest.mark.agent
def test_receiving_agent_sigkill_leaves_no_partial_or_duplicate_files(h):
    a, c = h.keygen("sq.hrss"), h.keygen("sq.civil")
    b = h.broker([a, c])
    sender = h.agent(a, b, datasets=[{"id": "hr.files", "recipients": ["sq.civil"]}])
    receiver = h.agent(c, b)
    files = {f"r{i:04d}.bin": secrets.token_bytes(random.randint(1, 20000)) for i in range(500)}
    for name, data in files.items():
        sender.drop("hr.files", name, data)
    for k in range(3):
        wait_until(lambda: receiver.inbox_count("hr.files") >= 100 * (k + 1), 60,
                   what=f"{100 * (k + 1)} files received")
        receiver.kill9()
        receiver.start()
    got = wait_until(lambda: (lambda r: r if len(r) >= len(files) else None)(
        receiver.received("hr.files")), 120, interval=0.2, what="all 500 files")
    h.wait_queue("sq.civil", 0, timeout=30)
    names = [n for n in os.listdir(receiver.inbox("hr.files"))
             if not n.startswith(".")]
    expected = set(files) | {n + ".dxbmeta" for n in files}
    extra = sorted(set(names) - expected)
    assert not extra, f"{len(extra)} extra files (a delivery written twice?): {extra[:10]}"
    assert len(names) == len(expected)
    for name, (data, meta) in got.items():
        assert data == files[name], f"{name}: content differs"
        assert meta["size"] == len(data) and meta["sha256"] == hashlib.sha256(data).hexdigest()


@pytest.mark.smoke
def test_broker_sigkill_loses_no_acked_publish_wire_level(h):
    """The broker alone, driven by raw wire peers: five kill -9 during 2,000
    messages. Every PUBACK'd envelope is delivered (at least once on the wire;
    the first deliveries in order); publishes in flight at a kill are resent
    from the oldest, as PROTOCOL.md 7.2.5 asks of agents."""
    a, c = h.keygen("sq.hrss"), h.keygen("sq.civil")
    b = h.broker([a, c])
    total, per_frame, kills = 2000, 10, 5
    rng = random.Random(7)
    envs = [make_envelope("sq.hrss", DATASET, ["sq.civil"], seq=i, body=secrets.token_bytes(100))
            for i in range(1, total + 1)]
    seq_of = {bytes(e[0][0]): e[0][4] for e in envs}
    checker = FlowChecker()
    pending = list(envs)  # not yet acked, oldest first
    wire_dups = 0
    first_seen = set()

    def connect():
        s, r = h.raw_peer(a, b), h.raw_peer(c, b)
        assert s.hello()[1] == T_WELCOME and r.hello()[1] == T_WELCOME
        return s, r

    def receive(r):
        nonlocal wire_dups
        got = r.take_deliveries()
        for env in got:
            mid = bytes(env[0][0])
            if mid in first_seen:
                wire_dups += 1
            else:
                first_seen.add(mid)
                checker.deliver("sq.hrss", seq_of[mid])
        if got:
            r.dack([e[0][0] for e in got])

    sender, receiver = connect()
    kill_at = sorted(rng.sample(range(20, total // per_frame - 20), kills))
    frame_no = 0
    while pending:
        frame_no += 1
        batch = pending[:per_frame]
        for e in batch:
            checker.attempt("sq.hrss", e[0][4])
        if kill_at and frame_no == kill_at[0]:
            kill_at.pop(0)
            sender.send([1, 3, batch])  # in flight when the broker dies
            time.sleep(rng.uniform(0, 0.005))
            b.kill9()
            sender.close()
            receiver.close()
            b.start()
            sender, receiver = connect()
            continue
        results = sender.publish(batch)
        if not isinstance(results, dict):
            raise HarnessError(f"no PUBACK for frame {frame_no}: {results}")
        for e in batch:
            if results[bytes(e[0][0])] == E_OK:
                checker.acked("sq.hrss", e[0][4])
        pending = [e for e in pending if checker.sent.get(("sq.hrss", e[0][4])) != "ok"]
        receive(receiver)
    wait_until(lambda: (receive(receiver), len(first_seen) >= total)[1], 60, interval=0.02,
               what="all envelopes delivered")
    h.wait_queue("sq.civil", 0)
    report = checker.assert_clean()
    assert report["acked"] == total
    assert b.starts == kills + 1
    print(f"wire-level duplicates after {kills} kills: {wire_dups}")
