"""TTL expiry, the dead-letter queue and its retry (DESIGN.md section 4)."""
import pytest

from dxbharness import E_OK, T_WELCOME, make_envelope, wait_until


def _dlq_reasons(h, node=None):
    args = ("dlq", "list") + ((node,) if node else ())
    return [r["reason"] for r in h.dxbctl(*args)]


@pytest.mark.smoke
def test_expired_message_goes_to_dlq_and_retry_delivers_it(h):
    a, c = h.keygen("sq.hrss"), h.keygen("sq.civil")
    b = h.broker([a, c])
    sender = h.raw_peer(a, b)
    assert sender.hello()[1] == T_WELCOME
    short = make_envelope("sq.hrss", "hr.employees", ["sq.civil"], ttl_s=1, seq=1)
    assert sender.publish([short])[bytes(short[0][0])] == E_OK
    h.wait_queue("sq.civil", 1)

    wait_until(lambda: _dlq_reasons(h) == ["ttl"], 10, what="the message in the DLQ with reason ttl")
    row = h.dxbctl("dlq", "list", "sq.civil")[0]
    assert row["msg_id"] == bytes(short[0][0]).hex()
    assert row["node"] == "sq.civil" and row["sender"] == "sq.hrss"
    assert h.queues()["sq.civil"]["msgs"] == 0
    human = h.dxbctl("dlq", "list", json=False)
    assert human.returncode == 0 and "ttl" in human.stdout

    retried = h.dxbctl("dlq", "retry", "all")
    assert retried == [{"retried": 1}]
    assert h.dxbctl("dlq", "list") == []
    h.wait_queue("sq.civil", 1)

    receiver = h.raw_peer(c, b)
    assert receiver.hello()[1] == T_WELCOME
    envs = receiver.take_deliveries(timeout=5)
    assert [bytes(e[0][0]) for e in envs] == [bytes(short[0][0])]
    assert bytes(envs[0][2]) == bytes(short[2]), "the broker changed the envelope body"
    receiver.dack([short[0][0]])
    h.wait_queue("sq.civil", 0)
    actions = {(r["action"], r["result"]) for r in h.audit(100)}
    assert ("dlq.retry", "ok") in actions and ("delivered", "ok") in actions


@pytest.mark.smoke
def test_dlq_drop_deletes_dead_letters_for_good(h):
    a, c = h.keygen("sq.hrss"), h.keygen("sq.civil")
    b = h.broker([a, c])
    sender = h.raw_peer(a, b)
    assert sender.hello()[1] == T_WELCOME
    envs = [make_envelope("sq.hrss", "hr.employees", ["sq.civil"], ttl_s=1, seq=i) for i in (1, 2)]
    sender.publish(envs)
    wait_until(lambda: _dlq_reasons(h) == ["ttl", "ttl"], 10, what="two dead letters")
    first = h.dxbctl("dlq", "list")[0]["dlq_id"]
    assert h.dxbctl("dlq", "drop", str(first)) == [{"dropped": 1}]
    assert len(h.dxbctl("dlq", "list")) == 1
    assert h.dxbctl("dlq", "drop", "all") == [{"dropped": 1}]
    assert h.dxbctl("dlq", "list") == []
    assert h.queues()["sq.civil"]["msgs"] == 0


@pytest.mark.agent
def test_agent_message_past_ttl_lands_in_dlq_and_arrives_after_retry(h):
    a, c = h.keygen("sq.hrss"), h.keygen("sq.civil")
    b = h.broker([a, c])
    sender = h.agent(a, b, datasets=[{"id": "hr.employees", "recipients": ["sq.civil"],
                                      "ttl_s": 1}])
    receiver = h.agent(c, b, start=False)
    h.wait_connected("sq.hrss")
    sender.drop("hr.employees", "short-lived.csv", b"id,name\n1,Li Lei\n")
    wait_until(lambda: _dlq_reasons(h, "sq.civil") == ["ttl"], 15,
               what="the spooled file in the DLQ with reason ttl")
    assert h.dxbctl("dlq", "retry", "all") == [{"retried": 1}]
    receiver.start()
    h.wait_connected("sq.civil")
    got = wait_until(lambda: receiver.received("hr.employees"), 15, what="the retried file")
    data, meta = got["short-lived.csv"]
    assert data == b"id,name\n1,Li Lei\n"
    assert meta["sender"] == "sq.hrss"
    h.wait_queue("sq.civil", 0)
