"""Crash and pause faults under continuous load, judged by a history checker
(reliability anchors (a.2) and (c): D1, D2, D3).

Two sending applications publish numbered messages through the local API of
their own agents (one dataset each) to one receiving agent whose datasets are
`inbound: api`. Every event goes into a JSONL history (histlib.History) and
histlib.check() classifies every message as lost, duplicated, reordered,
unexpected or recovered. The checker is unit-tested first, with histories
that must pass and histories that must fail.

The receiving application de-duplicates nothing. It records each
API_MESSAGE, then API_ACKs it. API_ACK has no answer, so every ~250 ms it
sends an API_SUBSCRIBE on the same connection: its API_RESULT proves that
the agent processed (committed) every earlier ack ("confirmed"). A message
offered again with the same msg_id and no confirmed ack before it is a
legitimate re-offer (PROTOCOL.md section 9: unacknowledged API messages are
offered again to a new subscription); any other repeat is a duplicate. The
rule is in histlib's docstring.

The barrier is an API_SUBSCRIBE, not an API_PUBLISH: an API_PUBLISH and an
API_ACK drained in the same pass deadlock the agent (agt_api.c: the publish's
write transaction is open when s_ack begins a second one).
"""
import os
import random
import secrets
import signal
import time

import pytest
import zmq

import histlib
from dxbharness import (E_OK, T_API_MESSAGE, T_API_RESULT, T_API_SUBSCRIBE, HarnessError, pack,
                        parse_seq_payload, seq_payload, unpack)

RECEIVER = "sq.civil"
SENDERS = {"sq.hrss": "hr.seq", "sq.pop": "pop.seq"}


# ---- the checker, on synthetic histories ------------------------------------

def _ev(node, op, id_, outcome="ok", **kw):
    return dict(t=0.0, node=node, op=op, id=id_, outcome=outcome, **kw)


def _flow(*seqs, acked=True):
    """send (+ ack ok) of the given seqs of sq.a:ds.a."""
    out = []
    for s in seqs:
        out.append(_ev("sq.a", "send", f"sq.a:ds.a:{s}", "unknown"))
        if acked:
            out.append(_ev("sq.a", "ack", f"sq.a:ds.a:{s}", "ok"))
    return out


def _dlv(seq, mid, sender="sq.a", dataset="ds.a"):
    return _ev("sq.b", "deliver", f"{sender}:{dataset}:{seq}", "ok", msg_id=mid)


def _app_ack(seq, mid, outcome="ok"):
    return _ev("sq.b", "ack", f"sq.a:ds.a:{seq}", outcome, msg_id=mid)


def test_checker_passes_a_clean_history_with_recovered_and_reoffered(tmp_path):
    hist = histlib.History(str(tmp_path / "h.jsonl"))
    for e in _flow(1, 2, 3):
        hist.record(e["node"], e["op"], e["id"], e["outcome"])
    hist.record("sq.a", "send", "sq.a:ds.a:4", "unknown")
    hist.record("sq.a", "error", "sq.a:ds.a:4", "unknown", detail="agent killed")
    hist.record("sq.a", "send", "sq.a:ds.a:5", "unknown")  # unknown, never delivered
    hist.record("sq.a", "send", "sq.a:ds.a:6", "unknown")
    hist.record("sq.a", "ack", "sq.a:ds.a:6", "fail", detail="EFULL")  # refused, not delivered
    for s, mid in ((1, "m1"), (2, "m2"), (3, "m3"), (4, "m4")):
        hist.record("sq.b", "deliver", f"sq.a:ds.a:{s}", "ok", msg_id=mid)
    hist.record("sq.b", "ack", "sq.a:ds.a:1", "ok", msg_id="m1")
    hist.record("sq.b", "ack", "sq.a:ds.a:2", "unknown", msg_id="m2")  # agent died
    # re-offered after a restart: m2 (ack unknown) and m3 (never acked)
    hist.record("sq.b", "deliver", "sq.a:ds.a:2", "ok", msg_id="m2")
    hist.record("sq.b", "deliver", "sq.a:ds.a:3", "ok", msg_id="m3")
    hist.close()
    r = histlib.check(histlib.load(hist.path))
    assert r.ok, r.describe()
    c = r.counts()
    assert (c["acked"], c["delivered"], c["recovered"], c["unknown"], c["refused"],
            c["reoffered"]) == (3, 4, 1, 2, 1, 2), c


def test_checker_fails_on_a_lost_message():
    r = histlib.check(_flow(1, 2, 3) + [_dlv(1, "m1"), _dlv(3, "m3")])
    assert not r.ok and r.lost == ["sq.a:ds.a:2"], r.describe()
    assert not (r.duplicated or r.reordered or r.unexpected)


def test_checker_fails_on_a_duplicate_after_a_confirmed_ack():
    r = histlib.check(_flow(1, 2) + [_dlv(1, "m1"), _app_ack(1, "m1"), _dlv(2, "m2"),
                                     _dlv(1, "m1")])
    assert not r.ok and [d[0] for d in r.duplicated] == ["sq.a:ds.a:1"], r.describe()
    assert not (r.lost or r.reordered or r.unexpected)


def test_checker_fails_on_a_duplicate_under_a_new_msg_id():
    # never acked by the application, but a second msg_id means the message
    # was sent twice, which no re-offer explains
    r = histlib.check(_flow(1) + [_dlv(1, "m1"), _dlv(1, "m1bis")])
    assert not r.ok and r.duplicated == [("sq.a:ds.a:1", "m1bis", "under a new msg_id")]


def test_checker_fails_on_a_reorder():
    r = histlib.check(_flow(1, 2, 3) + [_dlv(1, "m1"), _dlv(3, "m3"), _dlv(2, "m2")])
    assert not r.ok and r.reordered == [("sq.a:ds.a:2", 3)], r.describe()
    assert not (r.lost or r.duplicated or r.unexpected)


def test_checker_keeps_order_per_sender_and_dataset():
    hist = _flow(1, 2) + [_ev("sq.c", "send", "sq.c:ds.c:1", "unknown"),
                          _ev("sq.c", "ack", "sq.c:ds.c:1", "ok")]
    hist += [_dlv(2, "m2"), _dlv(1, "x1", "sq.c", "ds.c"), _dlv(1, "m1")]
    r = histlib.check(hist)
    assert [x[0] for x in r.reordered] == ["sq.a:ds.a:1"] and not r.lost and not r.duplicated


def test_checker_fails_on_an_unexpected_message():
    r = histlib.check(_flow(1) + [_dlv(1, "m1"), _dlv(7, "m7")])
    assert not r.ok and r.unexpected == ["sq.a:ds.a:7"], r.describe()
    # a refused publish that is delivered anyway is unexpected too
    r = histlib.check([_ev("sq.a", "send", "sq.a:ds.a:1", "unknown"), _dlv(1, "m1"),
                       _ev("sq.a", "ack", "sq.a:ds.a:1", "fail")])
    assert r.unexpected == ["sq.a:ds.a:1"], r.describe()


# ---- the applications --------------------------------------------------------

class Publisher:
    """A sending application: numbered publishes, up to `window` open."""

    def __init__(self, h, agent, dataset, hist, run, window=32, rate=100.0):
        self.h, self.agent, self.dataset, self.hist, self.run = h, agent, dataset, hist, run
        # Publishes per second at most: the agents accept far faster than a
        # receiver drains under faults, and the backlog must drain in time.
        self.rate = rate
        self.t0 = time.monotonic()
        self.node = agent.node
        self.window = window
        self.next_seq = 1
        self.open = {}  # req -> id
        self.acked = set()
        self.client = agent.client()

    def pump(self, new=True):
        budget = int((time.monotonic() - self.t0) * self.rate) + 1
        while new and len(self.open) < self.window and self.next_seq <= budget:
            seq = self.next_seq
            self.next_seq += 1
            id_ = histlib.make_id(self.node, self.dataset, seq)
            self.hist.record(self.node, "send", id_, "unknown")
            req = self.client.publish_async(self.dataset, [RECEIVER], f"m{seq:06d}",
                                            seq_payload(self.run, self.node, seq, 120))
            self.open[req] = id_
        self.client.collect(0)
        for req in [r for r in self.open if r in self.client.results]:
            code, _, text = self.client.results.pop(req)
            id_ = self.open.pop(req)
            if code == E_OK:
                self.hist.record(self.node, "ack", id_, "ok")
                self.acked.add(id_)
            else:
                self.hist.record(self.node, "ack", id_, "fail", detail=f"code={code} {text}")

    def burst(self):
        """Opens the whole window at once, past the rate: a kill that follows
        leaves publishes of unknown outcome."""
        self.t0 -= self.window / self.rate
        self.pump()

    def agent_died(self):
        self.pump(new=False)  # answers that came before the kill
        for id_ in self.open.values():
            self.hist.record(self.node, "error", id_, "unknown", detail="agent killed")
        self.open.clear()
        self.client.close()

    def agent_back(self):
        self.client = self.agent.client()


class Consumer:
    """The receiving application: records each delivery, then API_ACKs it;
    confirms acks with an API_SUBSCRIBE barrier (see the module docstring)."""

    BARRIER_S = 0.25

    def __init__(self, h, agent, hist, run):
        self.h, self.agent, self.hist, self.run = h, agent, hist, run
        self.node = agent.node
        self.delivered = set()
        self.unconfirmed = {}  # msg_id -> id: acks sent, not yet confirmed
        self.barrier = None  # (req, {msg_id: id})
        self.last_barrier = 0.0
        self.subscribe_errors = []
        self.stray = []  # frames that are neither deliveries nor barrier answers
        self.client = None
        self.agent_back()

    def agent_back(self):
        """(Re)subscribes; the subscription's answer is a barrier too."""
        self.client = self.agent.client()
        self._barrier()

    def _barrier(self):
        self.client.req += 1
        self.client.sock.send(pack([1, T_API_SUBSCRIBE, self.client.req, ""]))
        self.barrier = (self.client.req, self.unconfirmed)
        self.unconfirmed = {}
        self.last_barrier = time.monotonic()

    def _id_of(self, payload, sender, dataset):
        try:
            run, p_sender, seq = parse_seq_payload(payload)
        except (ValueError, KeyError, IndexError, UnicodeDecodeError):
            return histlib.make_id("garbage", dataset, 0)
        if run != self.run or p_sender != sender:
            return histlib.make_id("foreign." + p_sender.replace(":", "_"), dataset, seq)
        return histlib.make_id(sender, dataset, seq)

    def pump(self):
        """Handles the agent's frames strictly in arrival order, so that a
        barrier's confirmation and the deliveries around it keep their order
        in the history."""
        sock = self.client.sock
        while sock.poll(0):
            f = unpack(sock.recv())
            if f[1] == T_API_MESSAGE:
                mid = bytes(f[2]).hex()
                id_ = self._id_of(bytes(f[8]), f[3], f[4])
                self.hist.record(self.node, "deliver", id_, "ok", msg_id=mid)
                self.delivered.add(id_)
                self.client.ack(mid)
                self.unconfirmed[mid] = id_
            elif f[1] == T_API_RESULT and self.barrier is not None and f[2] == self.barrier[0]:
                if f[3] != E_OK:
                    self.subscribe_errors.append((f[3], f[5]))
                for mid, id_ in self.barrier[1].items():
                    self.hist.record(self.node, "ack", id_, "ok", msg_id=mid)
                self.barrier = None
            else:
                self.stray.append(f)
        if self.barrier is None and self.unconfirmed and \
                time.monotonic() - self.last_barrier >= self.BARRIER_S:
            self._barrier()

    def all_confirmed(self):
        return not self.unconfirmed and self.barrier is None

    def agent_died(self):
        self.pump()  # what the agent sent before it died
        pending = dict(self.unconfirmed)
        if self.barrier is not None:
            pending.update(self.barrier[1])
        for mid, id_ in pending.items():
            self.hist.record(self.node, "ack", id_, "unknown", msg_id=mid)
        self.unconfirmed, self.barrier = {}, None
        self.client.close()


class World:
    def __init__(self, h, pubs, con):
        self.h, self.pubs, self.con = h, pubs, con
        self.publishing = True

    def step(self, wait_s=0.005):
        for p in self.pubs:
            p.pump(self.publishing)
        self.con.pump()
        poller = zmq.Poller()
        for c in [p.client for p in self.pubs] + [self.con.client]:
            poller.register(c.sock, zmq.POLLIN)
        poller.poll(int(wait_s * 1000))

    def run_for(self, seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.step()

    def run_until(self, cond, timeout, what):
        deadline = time.monotonic() + timeout
        while not cond():
            if time.monotonic() >= deadline:
                raise HarnessError(f"timed out after {timeout}s waiting for {what}")
            self.step(0.02)

    def acked(self):
        return set().union(*(p.acked for p in self.pubs))


def _plan(rng):
    """50 kills (25 broker, 15 sending agents, 10 receiving agent) and 6
    pauses (3 of the broker, 3 of an agent), in random order."""
    steps = ["kill:broker"] * 25 + ["kill:sender"] * 15 + ["kill:receiver"] * 10
    steps += ["pause:broker"] * 3 + ["pause:sender", "pause:receiver", "pause:sender"]
    rng.shuffle(steps)
    return steps


@pytest.mark.agent
def test_fifty_sigkills_and_six_pauses_under_load_lose_duplicate_and_reorder_nothing(h):
    seed = int(os.environ.get("DXB_FAULT_SEED") or secrets.randbits(32))
    rng = random.Random(seed)
    run = secrets.token_hex(4)
    print(f"\nfault-history seed={seed} run={run} dir={h.dir}")
    keys = {n: h.keygen(n) for n in list(SENDERS) + [RECEIVER]}
    b = h.broker(list(keys.values()))
    senders = {n: h.agent(keys[n], b) for n in SENDERS}
    receiver = h.agent(keys[RECEIVER], b, inbound="api")
    for n in keys:
        h.wait_connected(n)
    hist = histlib.History(os.path.join(h.dir, "history.jsonl"))
    h.track(hist)
    pubs = [Publisher(h, senders[n], ds, hist, run) for n, ds in SENDERS.items()]
    con = Consumer(h, receiver, hist, run)
    world = World(h, pubs, con)
    log = []
    t0 = time.monotonic()
    world.run_for(0.5)
    for step in _plan(rng):
        world.run_for(rng.uniform(0.05, 0.8))
        action, who = step.split(":")
        if who == "broker":
            target = b
        elif who == "receiver":
            target = receiver
        else:
            target = senders[rng.choice(sorted(SENDERS))]
        log.append(f"{time.monotonic() - t0:7.2f}s {action} {target.name}")
        if action == "kill":
            if target in senders.values():
                next(p for p in pubs if p.agent is target).burst()
            target.kill9()
            if target is receiver:
                con.agent_died()
            elif target is not b:
                pub = next(p for p in pubs if p.agent is target)
                pub.agent_died()
            target.start()
            if target is receiver:
                con.agent_back()
            elif target is not b:
                pub.agent_back()
        else:
            target.signal(signal.SIGSTOP)
            try:
                world.run_for(rng.uniform(1.5, 2.5))  # > heartbeat timeout (1 s)
            finally:
                target.signal(signal.SIGCONT)
    t_load = time.monotonic() - t0
    # Stop the load, then wait for every answer and every acked delivery.
    world.publishing = False
    world.run_until(lambda: not any(p.open for p in pubs), 60, "answers to open publishes")
    acked = world.acked()
    world.run_until(lambda: acked <= con.delivered, 120,
                    f"delivery of all {len(acked)} acked messages "
                    f"({len(acked - con.delivered)} missing)")
    world.run_until(lambda: h.queues().get(RECEIVER, {}).get("msgs") == 0, 60,
                    "broker queue of the receiver empty")
    world.run_until(con.all_confirmed, 30, "application acks confirmed")
    world.run_for(1.0)  # a last look for stray re-deliveries
    world.run_until(con.all_confirmed, 30, "application acks confirmed")
    hist.close()

    report = histlib.check(histlib.load(hist.path))
    counts = report.counts()
    print(f"fault-history load {t_load:.1f}s, total {time.monotonic() - t0:.1f}s; "
          f"starts broker={b.starts} " + " ".join(f"{a.name}={a.starts}" for a in
                                                  list(senders.values()) + [receiver]))
    print(f"fault-history report: {counts}")
    if not report.ok:
        print("fault steps:\n  " + "\n  ".join(log))
    assert report.ok, f"history check failed (history {hist.path}): {report.describe()}"
    assert not con.subscribe_errors, con.subscribe_errors
    assert not con.stray, f"unexpected frames on the API: {con.stray[:5]}"
    assert counts["acked"] >= 1000, f"too little load to prove anything: {counts}"
    assert sum(d.starts for d in [b, receiver, *senders.values()]) == 50 + 4
    dlq = h.dxbctl("dlq", "list")
    assert not dlq, f"dead letters: {dlq[:5]}"
    # The pauses outlasted the heartbeat timeout: both sides noticed.
    silent = sum(a.log_count("no answer from broker within") for a in [receiver, *senders.values()])
    assert silent >= 3, f"agents noticed a paused broker only {silent} times"
    assert b.log_count("reason=heartbeat-timeout") >= 3
    for d in [b, receiver, *senders.values()]:
        assert d.alive(), f"{d.name} died"
        text = d.log_text()
        for bad in ("MDB_CORRUPTED", "AGT-APIACK"):
            assert bad not in text, f"{bad} in {d.name}.log"
