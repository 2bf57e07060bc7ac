"""A full store refuses new messages with EFULL (back-pressure) and loses
none (DESIGN.md section 4; reliability anchors D7)."""
import secrets

import pytest

from dxbharness import E_EFULL, E_OK, T_WELCOME, FlowChecker, make_envelope, wait_until

MAP = "2MiB"
BODY = 16 * 1024


def _drain(h, receiver, checker, seq_of, want, timeout=30):
    """Receives and DACKs deliveries until `want` distinct messages came."""
    got = set()

    def more():
        for env in receiver.take_deliveries(timeout=0.2):
            mid = bytes(env[0][0])
            checker.deliver("sq.hrss", seq_of[mid])
            got.add(mid)
            receiver.dack([mid])
        return len(got) >= want

    wait_until(more, timeout, interval=0.0, what=f"{want} deliveries")
    return got


@pytest.mark.smoke
def test_full_store_refuses_with_efull_and_loses_nothing_acked(h):
    a, c = h.keygen("sq.hrss"), h.keygen("sq.civil")
    b = h.broker([a, c], store={"map_size": MAP})
    sender = h.raw_peer(a, b)
    assert sender.hello()[1] == T_WELCOME
    checker = FlowChecker()
    seq_of = {}
    acked, refused = [], []
    seq = 0
    # Publish frames of 8 x 16 KiB until the broker says EFULL (2 MiB map).
    while not refused and seq < 400:
        envs = []
        for _ in range(8):
            seq += 1
            env = make_envelope("sq.hrss", "hr.employees", ["sq.civil"], seq=seq,
                                body=secrets.token_bytes(BODY))
            seq_of[bytes(env[0][0])] = seq
            checker.attempt("sq.hrss", seq)
            envs.append(env)
        results = sender.publish(envs)
        assert isinstance(results, dict), f"no PUBACK: {results}"
        for env in envs:
            code = results[bytes(env[0][0])]
            assert code in (E_OK, E_EFULL), code
            if code == E_OK:
                checker.acked("sq.hrss", seq_of[bytes(env[0][0])])
                acked.append(env)
            else:
                refused.append(env)
    assert refused, "a 2 MiB store took 400 x 16 KiB without EFULL"
    assert acked, "nothing fitted at all"
    b.wait_log("DXB-STOREFULL")
    assert b.alive()
    assert h.queues()["sq.civil"]["msgs"] == len(acked)

    # The recipient drains; acks must commit even though the store is full.
    receiver = h.raw_peer(c, b)
    assert receiver.hello()[1] == T_WELCOME
    _drain(h, receiver, checker, seq_of, len(acked))
    h.wait_queue("sq.civil", 0)

    # The refused ones go through now, in order, and arrive too.
    for i in range(0, len(refused), 8):
        chunk = refused[i:i + 8]
        results = sender.publish(chunk)
        codes = [results[bytes(e[0][0])] for e in chunk]
        assert codes == [E_OK] * len(chunk), \
            f"still refused after every queued message was acked and deleted: codes={codes} " \
            f"stats={h.stats()}"
        for e in chunk:
            checker.acked("sq.hrss", seq_of[bytes(e[0][0])])
    _drain(h, receiver, checker, seq_of, len(refused))
    h.wait_queue("sq.civil", 0)
    report = checker.assert_clean()
    assert report["delivered"] == len(acked) + len(refused)
    assert h.stats()["store_failed"] is False


@pytest.mark.agent
def test_agent_keeps_refused_messages_in_its_outbox_until_the_store_has_room(h):
    a, c = h.keygen("sq.hrss"), h.keygen("sq.civil")
    b = h.broker([a, c], store={"map_size": MAP})
    # A small publish window keeps PUBLISH frames well under the free space:
    # the broker refuses a frame as a whole when it does not fit.
    sender = h.agent(a, b, datasets=[{"id": "hr.employees", "recipients": ["sq.civil"]}],
                     link={"publish_window": 16})
    receiver = h.agent(c, b, start=False)
    h.wait_connected("sq.hrss")
    files = {f"f{i:04d}.bin": secrets.token_bytes(BODY) for i in range(200)}  # ~3.2 MiB
    for name, data in files.items():
        sender.drop("hr.employees", name, data)
    b.wait_log("DXB-STOREFULL", timeout=60)
    # Every file was taken into the agent's outbox although the broker is full.
    wait_until(lambda: not sender.outbox_pending("hr.employees"), 30,
               what="the spool folder emptied into the agent's outbox")
    assert 0 < h.queues()["sq.civil"]["msgs"] < len(files)
    receiver.start()
    got = wait_until(lambda: (lambda r: r if len(r) >= len(files) else None)(
        receiver.received("hr.employees")), 60, interval=0.2, what="all 200 files")
    assert {n: d for n, (d, _) in got.items()} == files
    assert receiver.inbox_count("hr.employees") == len(files)  # none twice
    h.wait_queue("sq.civil", 0)
    assert sender.alive() and receiver.alive() and b.alive()
