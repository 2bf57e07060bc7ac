"""Network faults between an agent and the broker: partitions, random loss and
link flaps lose, duplicate and reorder nothing (reliability anchors N1, N2,
N5; DESIGN.md section 4).

Topology: two network namespaces the test creates, joined by a veth pair
(10.201.0.0/24, addresses only inside them). The broker and the receiving
agent run in namespace B, the sending agent in namespace A; faults are
nftables rules or link state in namespace A. The sending agent's spool gets
numbered files at a steady rate during the fault; every one must reach the
receiver's inbox exactly once, whole (content = sidecar sha256), in the
sender's order. Needs root (ip netns) and nftables; skipped otherwise.
"""
import random
import time

import pytest

from dxbharness import HEARTBEAT_MS, TIMEOUT_MS, HarnessError, wait_until
from faultlib import NetnsPair, SpoolFlow, require_netns

pytestmark = pytest.mark.agent

DATASET = "fault.flow"
SENDER, RECEIVER = "sq.hrss", "sq.civil"


@pytest.fixture
def net(h):
    require_netns()
    pair = NetnsPair()
    try:
        pair.setup()
        pair.nft(pair.ns_a, "list", "tables")
    except HarnessError as exc:
        pair.close()
        pytest.skip(f"cannot build the namespace pair or use nftables here: {exc}")
    try:
        yield pair
    finally:
        # Daemons first (their namespaces go when the last process leaves),
        # then the namespaces.
        for d in h.daemons:
            if d.alive():
                d.stop()
        pair.close()


def _topology(h, net):
    a, c = h.keygen(SENDER), h.keygen(RECEIVER)
    b = h.broker([a, c], start=False)
    assert b.config()["heartbeat"] == {"interval_ms": HEARTBEAT_MS, "timeout_ms": TIMEOUT_MS}
    net.place_broker(b)
    b.start()
    sender = h.agent(a, b, datasets=[{"id": DATASET, "recipients": [RECEIVER]}], start=False)
    receiver = h.agent(c, b, start=False)
    net.place(sender, net.ns_a).start()
    net.place(receiver, net.ns_b).start()
    h.wait_connected(SENDER)
    h.wait_connected(RECEIVER)
    return b, sender, receiver


def _finish(h, b, sender, receiver, flow):
    flow.stop()
    flow.wait_all(timeout=40)
    summary = flow.assert_clean()
    h.wait_queue(RECEIVER, 0)
    assert b.alive() and sender.alive() and receiver.alive()
    return summary


def test_partitions_lose_duplicate_and_reorder_nothing_and_agent_reconnects_quickly(h, net):
    b, sender, receiver = _topology(h, net)
    flow = SpoolFlow(sender, receiver, DATASET).start()
    time.sleep(1.0)
    reconnect = []
    for _ in range(3):
        downs_before = sender.log_count("AGT-LINKDOWN")
        net.partition()
        # Heartbeats notice the cut: the broker marks the node offline.
        h.wait_disconnected(SENDER, timeout=TIMEOUT_MS / 1000 + 2.5)
        time.sleep(max(0.0, 4.0 - (time.monotonic() - net.events[-1][0])))
        net.heal()
        healed = net.events[-1][0]
        wait_until(lambda: h.is_connected(SENDER), TIMEOUT_MS / 1000 + 5, interval=0.05,
                   what="sender connected again after heal")
        reconnect.append(time.monotonic() - healed)
        assert sender.log_count("AGT-LINKDOWN") > downs_before, \
            "the agent did not notice a 4 s partition"
        time.sleep(1.0)
    summary = _finish(h, b, sender, receiver, flow)
    print(f"partitions: {summary} reconnect_s={[round(x, 2) for x in reconnect]}")
    assert summary["sent"] >= 200
    limit = TIMEOUT_MS / 1000 + 2.0
    assert max(reconnect) <= limit, \
        f"reconnect after heal took {max(reconnect):.2f}s > heartbeat timeout + 2 s ({limit}s): " \
        f"{reconnect}"


def test_ten_percent_packet_loss_loses_duplicates_and_reorders_nothing(h, net):
    b, sender, receiver = _topology(h, net)
    flow = SpoolFlow(sender, receiver, DATASET).start()
    net.loss(10)
    time.sleep(15.0)
    net.heal()
    summary = _finish(h, b, sender, receiver, flow)
    print(f"loss 10%: {summary}")
    assert summary["sent"] >= 200


def test_link_flaps_lose_duplicate_and_reorder_nothing(h, net):
    b, sender, receiver = _topology(h, net)
    flow = SpoolFlow(sender, receiver, DATASET).start()
    rnd = random.Random()
    for _ in range(10):
        time.sleep(rnd.uniform(0.5, 1.2))
        net.link(False)
        time.sleep(rnd.uniform(0.5, 1.2))
        net.link(True)
    h.wait_connected(SENDER, timeout=TIMEOUT_MS / 1000 + 5)
    summary = _finish(h, b, sender, receiver, flow)
    print(f"link flaps: {summary} downs={sender.log_count('AGT-LINKDOWN')}")
    assert summary["sent"] >= 200
