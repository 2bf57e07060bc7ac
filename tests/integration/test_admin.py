"""dxbctl against a live broker that holds queued messages (PROTOCOL.md 8)."""
import pytest

from dxbharness import E_OK, T_WELCOME, make_envelope


@pytest.fixture
def queued(h):
    """A broker with sq.hrss connected (raw peer) and three messages from it
    waiting for sq.civil, which is offline."""
    a, c, p = h.keygen("sq.hrss"), h.keygen("sq.civil"), h.keygen("js.province")
    b = h.broker([{"key": a, "region": "321300", "level": "department", "clearance": 1},
                  {"key": c, "region": "321300", "level": "department", "clearance": 2},
                  {"key": p, "region": "320000", "level": "province", "clearance": 3}])
    peer = h.raw_peer(a, b)
    assert peer.hello()[1] == T_WELCOME
    envs = [make_envelope("sq.hrss", "hr.employees", ["sq.civil"], seq=i + 1,
                          body=bytes([i]) * (1000 * (i + 1))) for i in range(3)]
    results = peer.publish(envs)
    assert all(results[bytes(e[0][0])] == E_OK for e in envs), results
    return b, peer, envs


@pytest.mark.smoke
def test_nodes_shows_registry_connection_state_and_queue_depth(h, queued):
    nodes = h.nodes()
    assert set(nodes) == {"sq.hrss", "sq.civil", "js.province"}
    assert nodes["sq.hrss"]["connected"] is True
    assert nodes["sq.civil"]["connected"] is False
    assert nodes["sq.civil"]["queue_msgs"] == 3
    assert nodes["sq.hrss"]["queue_msgs"] == 0
    assert nodes["js.province"]["region"] == "320000"
    assert nodes["js.province"]["level"] == "province"
    assert nodes["js.province"]["clearance"] == 3
    human = h.dxbctl("nodes", json=False)
    assert human.returncode == 0
    for node in ("sq.hrss", "sq.civil", "js.province", "320000"):
        assert node in human.stdout


@pytest.mark.smoke
def test_queues_counts_messages_and_bytes_per_node(h, queued):
    _, _, envs = queued
    q = h.queues()
    assert q["sq.civil"]["msgs"] == 3
    assert q["sq.civil"]["bytes"] >= sum(len(e[2]) for e in envs)
    assert q["sq.civil"]["in_flight"] == 0
    assert q["sq.hrss"]["msgs"] == 0 and q["js.province"]["msgs"] == 0
    human = h.dxbctl("queues", json=False)
    assert human.returncode == 0
    civil = [ln for ln in human.stdout.splitlines() if "sq.civil" in ln]
    assert civil and " 3" in civil[0], human.stdout


@pytest.mark.smoke
def test_queues_peek_lists_the_head_of_a_queue_in_order(h, queued):
    _, _, envs = queued
    rows = h.dxbctl("queues", "peek", "sq.civil")
    assert [r["msg_id"] for r in rows] == [bytes(e[0][0]).hex() for e in envs]
    assert [r["seq"] for r in rows] == [1, 2, 3]
    assert all(r["sender"] == "sq.hrss" and r["dataset"] == "hr.employees" for r in rows)
    assert [r["size"] for r in rows] == [len(e[2]) for e in envs]
    assert all(r["attempts"] == 0 for r in rows)
    limited = h.dxbctl("queues", "peek", "sq.civil", "--limit", "2")
    assert len(limited) == 2
    human = h.dxbctl("queues", "peek", "sq.civil", json=False)
    assert human.returncode == 0 and bytes(envs[0][0][0]).hex() in human.stdout
    unknown = h.dxbctl("queues", "peek", "sq.nobody", json=False, check=False)
    assert unknown.returncode == 1 and unknown.stderr


@pytest.mark.smoke
def test_stats_counts_published_messages(h, queued):
    st = h.stats()
    assert st["published"] == 3
    assert st["nodes"] == 3 and st["online"] == 1
    assert st["store_used_bytes"] > 0 and st["store_map_bytes"] >= st["store_used_bytes"]
    assert st["store_failed"] is False
    human = h.dxbctl("stats", json=False)
    assert human.returncode == 0 and "published" in human.stdout


@pytest.mark.smoke
def test_dlq_list_is_empty_without_dead_letters(h, queued):
    assert h.dxbctl("dlq", "list") == []
    assert h.dxbctl("dlq", "list", "sq.civil") == []
    human = h.dxbctl("dlq", "list", json=False)
    assert human.returncode == 0


@pytest.mark.smoke
def test_audit_tail_records_connect_and_accepted_messages(h, queued):
    rows = h.audit(50)
    actions = [(r["actor"], r["action"], r["result"]) for r in rows]
    assert ("broker", "start", "ok") in actions
    assert ("sq.hrss", "connect", "ok") in actions
    assert sum(1 for a in actions if a == ("sq.hrss", "accepted", "ok")) == 3
    seqs = [r["seq"] for r in rows]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert len(h.audit(2)) == 2
    human = h.dxbctl("audit", "tail", "--n", "5", json=False)
    assert human.returncode == 0 and "accepted" in human.stdout


@pytest.mark.smoke
def test_audit_verify_passes_on_an_untouched_chain(h, queued):
    rows = h.dxbctl("audit", "verify")
    assert len(rows) == 1 and rows[0]["ok"] is True, rows
    assert rows[0]["first_bad_seq"] == 0
    assert rows[0]["records"] >= len(h.audit(1000))
    human = h.dxbctl("audit", "verify", json=False)
    assert human.returncode == 0 and "records" in human.stdout
