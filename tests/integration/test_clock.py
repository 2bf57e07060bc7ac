"""Wall-clock jumps (NTP steps, an operator's `date -s`, a VM resumed days
later) while messages flow.

The daemons run under libfaketime (LD_PRELOAD) with a relative offset read
from a file that the test rewrites while they run, so their wall clock
(CLOCK_REALTIME: time(), gettimeofday, clock_gettime) jumps forward by days
and back by hours. FAKETIME_DONT_FAKE_MONOTONIC=1 leaves CLOCK_MONOTONIC
alone, as a real clock step does. What must hold:

- nothing acknowledged is lost, nothing is delivered twice;
- TTL follows the wall clock (PROTOCOL.md 7.3, conf/broker.yaml
  default_ttl_s): a jump forward past a message's TTL dead-letters it with
  reason "ttl", audited, not dropped silently;
- heartbeats, session timeouts and redelivery run on CLOCK_MONOTONIC: a wall
  jump neither cuts a session nor resends anything early.

Every test first checks that the jump really reached the daemon that matters
(the broker's nodes.last_seen_ms, the agents' created_ms/received_ms
sidecar fields), so a libfaketime that silently does nothing fails the test
instead of letting it pass. Without libfaketime the tests skip.
"""
import glob
import os
import subprocess
import time

import pytest

import faultlib
from dxbharness import (E_OK, T_DELIVER, T_WELCOME, FlowChecker, make_envelope,
                        parse_seq_payload, seq_payload, wait_until)

DAY_S = 86400
HOUR_S = 3600
FORWARD_S = 3 * DAY_S  # < default_ttl_s (7 d) and the dedup windows (7 d)
BACK_S = 5 * HOUR_S
TOLERANCE_S = 30  # a daemon's clock offset as seen from outside, +-
RATE = 100  # messages a second in the flow test

_LIB_PATTERNS = ("/usr/lib/*/faketime/libfaketimeMT.so.1", "/usr/lib/faketime/libfaketimeMT.so.1",
                 "/usr/local/lib/faketime/libfaketimeMT.so.1")


def _faketime_env(lib, rc_path):
    # The MT variant: the daemons are multi-threaded (libzmq I/O threads).
    # Cache 1 s: a jump reaches a daemon within a second of the file change.
    asan = os.environ.get("ASAN_OPTIONS", "")
    return ["env", f"LD_PRELOAD={lib}", f"FAKETIME_TIMESTAMP_FILE={rc_path}",
            "FAKETIME_CACHE_DURATION=1", "FAKETIME_DONT_FAKE_MONOTONIC=1",
            # An ASan build insists on coming first in the preload order.
            "ASAN_OPTIONS=" + ":".join(x for x in (asan, "verify_asan_link_order=0") if x)]


def _require_faketime(h):
    """Path of libfaketimeMT; skips when it is missing or has no effect here."""
    lib = next((p for pat in _LIB_PATTERNS for p in sorted(glob.glob(pat))), None)
    if lib is None:
        pytest.skip("libfaketime is not installed (apt-get install libfaketime faketime)")
    rc_path = os.path.join(h.dir, "probe.faketime")
    with open(rc_path, "w", encoding="ascii") as f:
        f.write(f"+{DAY_S}\n")
    probe = "import time; print(time.time(), time.monotonic())"
    try:
        out = subprocess.run(_faketime_env(lib, rc_path) + ["/usr/bin/python3", "-c", probe],
                             capture_output=True, text=True, timeout=30)
        wall, mono = (float(x) for x in out.stdout.split())
    except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"libfaketime ({lib}) does not run here: {exc}")
    if abs(wall - time.time() - DAY_S) > 60 or abs(mono - time.monotonic()) > 60:
        pytest.skip(f"libfaketime ({lib}) has no effect here (wall {wall - time.time():+.0f}s, "
                    f"monotonic {mono - time.monotonic():+.0f}s; preload refused?)")
    return lib


class WallClock:
    """A fake wall clock: the offset file that libfaketime reads in every
    daemon started under it (one host's clock)."""

    def __init__(self, h, lib, name="clock"):
        self.lib = lib
        self.path = os.path.join(h.dir, name + ".faketime")
        self.offset_s = 0
        self._write()

    def _write(self):
        tmp = self.path + ".tmp"
        with open(tmp, "w", encoding="ascii") as f:
            f.write(f"{self.offset_s:+d}\n")
        os.replace(tmp, self.path)  # a reader never sees half a file

    def jump(self, delta_s):
        self.offset_s += delta_s
        self._write()

    def run(self, daemon):
        """The daemon's next start() runs under this clock (env execs it: same pid)."""
        return faultlib.wrap(daemon, _faketime_env(self.lib, self.path))


def _broker_offset_s(h, node):
    """The broker's wall clock minus ours, from the last frame of a node that
    pings (nodes.last_seen_ms is the broker's dxb_now_ms() at that frame)."""
    row = h.nodes().get(node)
    assert row and row.get("connected"), \
        f"{node} is no longer connected at the broker: a session was cut (at a clock jump?)"
    return row["last_seen_ms"] / 1000.0 - time.time()


def _wait_broker_clock(h, clock, node, timeout=15.0):
    """Waits until the broker's wall clock shows the clock's offset; fails at
    once when the node that carries it was disconnected."""
    deadline = time.monotonic() + timeout
    while abs(_broker_offset_s(h, node) - clock.offset_s) >= TOLERANCE_S:
        assert time.monotonic() < deadline, \
            f"the broker's wall clock did not reach {clock.offset_s:+d}s within {timeout:.0f}s " \
            f"(libfaketime not in effect?)"
        time.sleep(0.1)


def _phase_of(offset_s, phases):
    """Index of the phase offset that offset_s is within tolerance of, or None."""
    for i, p in enumerate(phases):
        if abs(offset_s - p) < TOLERANCE_S:
            return i
    return None


@pytest.mark.agent
def test_messages_flow_exactly_once_while_the_wall_clock_jumps(h):
    """A sender agent, the broker and a receiver agent share one host clock
    that jumps forward 3 days and then back 5 hours while files flow."""
    lib = _require_faketime(h)
    clock = WallClock(h, lib)
    a, c = h.keygen("sq.hrss"), h.keygen("sq.civil")
    # Generous timeouts: nothing here should come near them on the monotonic
    # clock, while a wall-clock timer would fire on a jump of hours or days.
    b = clock.run(h.broker([a, c], start=False,
                           delivery={"redeliver_ms": 15000, "max_attempts": 50},
                           heartbeat={"interval_ms": 200, "timeout_ms": 5000}))
    b.start()
    link = {"heartbeat_ms": 200, "timeout_ms": 5000}
    sender = clock.run(h.agent(a, b, start=False, link=link,
                               datasets=[{"id": "hr.employees", "recipients": [c.node]}]))
    receiver = clock.run(h.agent(c, b, start=False, link=link))
    sender.start()
    receiver.start()
    h.wait_connected(a.node)
    h.wait_connected(c.node)
    connects = b.log_count("BRK-CONNECT")

    api = sender.client()
    flow = FlowChecker()
    published_at = {}  # seq -> our wall time (s) at the publish
    phases = [0, FORWARD_S, FORWARD_S - BACK_S]
    seq = 0

    def publish_for(seconds):
        """Publishes bursts of 1 to 4 for `seconds`, about RATE a second."""
        nonlocal seq
        first, start = seq, time.monotonic()
        end = start + seconds
        while time.monotonic() < end:
            ahead = (seq - first) / RATE - (time.monotonic() - start)
            if ahead > 0:
                # Pace by waiting on the API socket (a negative timeout would block).
                api.collect(max(0.0, min(ahead, end - time.monotonic())))
                continue
            burst = []
            for _ in range(1 + seq % 4):
                seq += 1
                flow.attempt(a.node, seq)
                published_at[seq] = time.time()
                burst.append((seq, api.publish_async("hr.employees", [c.node], f"m-{seq:05d}.txt",
                                                     seq_payload("clock", a.node, seq))))
            for s, req in burst:
                code, _, text = api.wait_result(req, 30)
                assert code == E_OK, f"publish {s} refused: {code} {text}"
                flow.acked(a.node, s)

    publish_for(2.0)
    clock.jump(FORWARD_S)  # forward by days, mid-flow
    publish_for(1.5)
    _wait_broker_clock(h, clock, a.node)
    publish_for(2.0)
    clock.jump(-BACK_S)  # back by hours, mid-flow
    publish_for(1.5)
    _wait_broker_clock(h, clock, a.node)
    publish_for(2.0)

    wait_until(lambda: receiver.inbox_count("hr.employees") >= seq, 60, interval=0.2,
               what=f"{seq} files in the inbox")
    h.wait_queue(c.node, 0, timeout=30)
    got = receiver.received("hr.employees")
    seen_phases = {"sender": set(), "receiver": set()}
    for name, (data, meta) in sorted(got.items()):
        _run, sender_id, s = parse_seq_payload(data)
        flow.deliver(sender_id, s)
        # Each agent's wall clock minus ours at the publish (placement follows
        # within seconds): the clock phase the sender and receiver were in.
        for side, field in (("sender", "created_ms"), ("receiver", "received_ms")):
            phase = _phase_of(meta[field] / 1000.0 - published_at[s], phases)
            assert phase is not None, f"{name}: {field} is at none of the clock's offsets: {meta}"
            seen_phases[side].add(phase)
    report = flow.assert_clean()
    assert report["acked"] == seq and report["delivered"] == seq, report
    assert len(got) == seq, f"{len(got)} files for {seq} messages: a message was placed twice"
    # The jumps reached both agents while files flowed (else this proves nothing).
    for side, got_phases in seen_phases.items():
        assert got_phases == {0, 1, 2}, \
            f"the {side} handled messages in clock phases {sorted(got_phases)}, want 0, 1 and 2"
    assert h.dxbctl("dlq", "list") == [], "a message went to the DLQ (3 days < the 7-day TTL)"
    assert b.log_count("BRK-OFFLINE") == 0, "a wall-clock jump cut a session at the broker"
    assert b.log_count("BRK-CONNECT") == connects, "a session was re-established during the jumps"
    assert b.log_count("BRK-REDELIVER") == 0, "a wall-clock jump triggered redelivery"
    for d in (sender, receiver):
        assert d.log_count("AGT-LINKDOWN") == 0, f"{d.name} lost its link during a jump"
    print(f"clock: {seq} messages exactly once across {phases[1]:+d}s and {-BACK_S:+d}s jumps")


def test_forward_jump_past_ttl_dead_letters_with_reason_ttl(h):
    """TTL is wall-clock time (expires = broker receive time + ttl_s): a jump
    of a day moves the 6-hour messages of an offline node to the DLQ with
    reason ttl, audited; the 7-day ones stay and are delivered once. The
    jump back by hours afterwards expires nothing more and revives nothing."""
    lib = _require_faketime(h)
    clock = WallClock(h, lib)
    a, c = h.keygen("sq.hrss"), h.keygen("sq.civil")
    b = clock.run(h.broker([a, c], start=False))
    b.start()
    sender = h.raw_peer(a, b)
    assert sender.hello()[1] == T_WELCOME
    short = [make_envelope(a.node, "hr.employees", [c.node], ttl_s=6 * HOUR_S, seq=i)
             for i in (1, 2, 3)]
    long_ = [make_envelope(a.node, "hr.employees", [c.node], ttl_s=0, seq=i)  # default: 7 days
             for i in (4, 5, 6)]
    acks = sender.publish(short + long_)
    assert acks is not None and set(acks.values()) == {E_OK}, acks
    h.wait_queue(c.node, 6)
    h.wait_connected(a.node)  # the sender's pings carry the broker's clock to us
    _wait_broker_clock(h, clock, a.node)
    assert h.dxbctl("dlq", "list") == []
    expired_before = b.log_count("BRK-EXPIRED")

    clock.jump(DAY_S)
    _wait_broker_clock(h, clock, a.node)
    short_ids = sorted(bytes(e[0][0]).hex() for e in short)
    wait_until(lambda: sorted(r["msg_id"] for r in h.dxbctl("dlq", "list")) == short_ids, 15,
               what="the three 6-hour messages in the DLQ after a jump of a day")
    rows = h.dxbctl("dlq", "list", c.node)
    assert {r["reason"] for r in rows} == {"ttl"}, rows
    assert h.queues()[c.node]["msgs"] == 3, "the 7-day messages must stay queued"
    # Not silent: a log line, the counter, one audit record per message.
    assert b.log_count("BRK-EXPIRED") > expired_before
    assert h.stats()["dead_lettered"] == 3
    dead = [r for r in h.audit(200) if r["action"] == "dead-letter"]
    assert sorted(r["result"] for r in dead) == ["ttl"] * 3, dead
    assert all(any(i in r["detail"] for r in dead) for i in short_ids), dead

    clock.jump(-BACK_S)  # still 19 hours ahead of the start
    _wait_broker_clock(h, clock, a.node)
    # After the jump back TTL counts from the new wall time: a 1-second
    # message expires (which also proves a sweep ran after the jump), the
    # 7-day ones and a new one stay, and nothing leaves the DLQ.
    blip = make_envelope(a.node, "hr.employees", [c.node], ttl_s=1, seq=7)
    acks = sender.publish([blip, make_envelope(a.node, "hr.employees", [c.node], ttl_s=0, seq=8)])
    assert acks is not None and set(acks.values()) == {E_OK}, acks
    want = sorted(short_ids + [bytes(blip[0][0]).hex()])
    wait_until(lambda: sorted(r["msg_id"] for r in h.dxbctl("dlq", "list")) == want, 15,
               what="the 1-second message in the DLQ after the jump back")
    assert {r["reason"] for r in h.dxbctl("dlq", "list")} == {"ttl"}
    assert h.queues()[c.node]["msgs"] == 4

    receiver = h.raw_peer(c, b)
    assert receiver.hello()[1] == T_WELCOME
    got = []
    wait_until(lambda: got.extend(receiver.take_deliveries(timeout=0.2)) or len(got) >= 4, 15,
               what="the four live messages delivered")
    ids = [bytes(e[0][0]).hex() for e in got]
    assert len(ids) == len(set(ids)) == 4, f"delivered {ids}"
    assert not set(ids) & set(want), "an expired message was delivered"
    assert receiver.take_deliveries(timeout=1.0) == [], "more than the four live messages came"
    receiver.dack([e[0][0] for e in got])
    h.wait_queue(c.node, 0)


@pytest.mark.agent
def test_wall_clock_jumps_cut_no_session_and_redeliver_on_the_monotonic_clock(h):
    """Heartbeats, session timeouts and redelivery use CLOCK_MONOTONIC. While
    the broker's and an agent's wall clock jump 3 days forward and 5 hours
    back, the sessions stay up and an unacknowledged delivery is resent only
    when redeliver_ms of monotonic time have passed, not at the jump."""
    lib = _require_faketime(h)
    clock = WallClock(h, lib)
    a, c, d = h.keygen("sq.hrss"), h.keygen("sq.civil"), h.keygen("sq.tax")
    redeliver_s = 10.0
    b = clock.run(h.broker([a, c, d], start=False,
                           delivery={"redeliver_ms": int(redeliver_s * 1000), "max_attempts": 50},
                           heartbeat={"interval_ms": 200, "timeout_ms": 1500}))
    b.start()
    agent = clock.run(h.agent(d, b, start=False, link={"heartbeat_ms": 200, "timeout_ms": 1500},
                              datasets=[{"id": "hr.employees", "recipients": [c.node]}]))
    agent.start()
    sender, receiver = h.raw_peer(a, b), h.raw_peer(c, b)
    assert sender.hello()[1] == T_WELCOME and receiver.hello()[1] == T_WELCOME
    h.wait_connected(d.node)
    connects = b.log_count("BRK-CONNECT")

    env = make_envelope(a.node, "hr.employees", [c.node], seq=1)
    msg_id = bytes(env[0][0])
    assert sender.publish([env])[msg_id] == E_OK
    first = receiver.take_deliveries(timeout=5)
    sent = time.monotonic()
    assert [bytes(e[0][0]) for e in first] == [msg_id]

    clock.jump(FORWARD_S)
    _wait_broker_clock(h, clock, a.node)
    clock.jump(-BACK_S)
    _wait_broker_clock(h, clock, a.node)
    hold = sent + redeliver_s - 3.0
    assert time.monotonic() < hold, "the jumps took too long to reach the broker (machine busy?)"
    # Until shortly before redeliver_ms of monotonic time: no resend.
    early = receiver.recv(timeout=hold - time.monotonic(), types=(T_DELIVER,))
    assert early is None, f"redelivered {time.monotonic() - sent:.1f}s after the send, at a jump"
    # And then it does come, on the monotonic deadline (the check can see one).
    again = receiver.recv(timeout=15, types=(T_DELIVER,))
    assert again is not None, "no redelivery at all after redeliver_ms"
    assert [bytes(e[0][0]) for e in again[2]] == [msg_id]
    assert time.monotonic() - sent >= redeliver_s - 1.0
    receiver.dack([msg_id])
    h.wait_queue(c.node, 0)

    # The agent's wall clock jumped too: its next envelope's created_ms says so.
    api = agent.client()
    api.publish("hr.employees", [c.node], "after-the-jumps.txt", b"x")
    env2 = receiver.take_deliveries(timeout=10)
    assert len(env2) == 1
    offset = env2[0][0][5] / 1000.0 - time.time()
    assert abs(offset - clock.offset_s) < TOLERANCE_S, \
        f"the agent's clock is at {offset:+.0f}s, want {clock.offset_s:+d}s: libfaketime not in effect"
    receiver.dack([env2[0][0][0]])

    assert b.log_count("BRK-OFFLINE") == 0, "a wall-clock jump cut a session at the broker"
    assert b.log_count("BRK-CONNECT") == connects, "a session was re-established"
    assert agent.log_count("AGT-LINKDOWN") == 0, "the agent's link went down at a jump"
    assert all(h.is_connected(n) for n in (a.node, c.node, d.node))


def test_stats_uptime_counts_monotonic_time_across_a_clock_set_back(h):
    lib = _require_faketime(h)
    clock = WallClock(h, lib)
    a = h.keygen("sq.hrss")
    b = clock.run(h.broker([a], start=False))
    b.start()
    peer = h.raw_peer(a, b)
    assert peer.hello()[1] == T_WELCOME
    h.wait_connected(a.node)
    clock.jump(-BACK_S)
    _wait_broker_clock(h, clock, a.node)
    uptime = h.stats()["uptime_s"]
    assert uptime < HOUR_S, f"uptime_s={uptime} right after the clock was set back {BACK_S}s"
