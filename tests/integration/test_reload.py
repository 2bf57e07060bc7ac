"""SIGHUP reloads the registry; a removed node's live session is cut
(reliability anchors S1: "a revoked key while its session is open")."""
import pytest

from dxbharness import E_EAUTH, T_ERROR, T_WELCOME, make_envelope, wait_until


def _audit_has(h, **match):
    return any(all(row.get(k) == v for k, v in match.items()) for row in h.audit(500))


@pytest.mark.smoke
def test_sighup_removing_a_node_cuts_its_open_session_and_keeps_the_others(h):
    a, c = h.keygen("sq.hrss"), h.keygen("sq.civil")
    b = h.broker([a, c])
    keep = h.raw_peer(a, b)
    cut = h.raw_peer(c, b)
    assert keep.hello()[1] == T_WELCOME and cut.hello()[1] == T_WELCOME
    h.wait_connected("sq.hrss")
    h.wait_connected("sq.civil")

    b.set_nodes([{"key": a}])
    b.reload()
    err = cut.recv(5.0, types=(T_ERROR,))
    assert err is not None and err[2] == E_EAUTH, err
    nodes = h.nodes()
    assert "sq.civil" not in nodes
    assert nodes["sq.hrss"]["connected"]
    assert _audit_has(h, action="revoke", object="sq.civil", result="ok")
    assert _audit_has(h, action="reload", result="ok")
    b.wait_log("BRK-RELOAD")

    # The cut session cannot publish any more; the kept one still can.
    env = make_envelope("sq.civil", "hr.employees", ["sq.hrss"])
    cut.send([1, 3, [env]])
    refusal = cut.recv(5.0, types=(T_ERROR,))
    assert refusal is not None and refusal[2] == E_EAUTH, refusal
    own = make_envelope("sq.hrss", "hr.employees", ["sq.hrss"])
    assert keep.publish([own])[bytes(own[0][0])] == 0
    # A new connection with the revoked key fails at the handshake.
    again = h.raw_peer(c, b)
    assert again.hello(timeout=2.0) is None
    b.wait_log("BRK-AUTHFAIL")
    assert h.is_connected("sq.hrss")


@pytest.mark.smoke
def test_sighup_with_a_broken_config_keeps_the_old_registry(h):
    a = h.keygen("sq.hrss")
    b = h.broker([a])
    peer = h.raw_peer(a, b)
    assert peer.hello()[1] == T_WELCOME
    with open(b.config_path, "a", encoding="utf-8") as f:
        f.write("bogus_section: 1\n")
    b.reload()
    b.wait_log("BRK-RELOADFAIL")
    assert h.is_connected("sq.hrss")
    assert b.alive()


@pytest.mark.smoke
def test_sighup_adding_a_node_lets_it_connect(h):
    a, n = h.keygen("sq.hrss"), h.keygen("sq.newcomer")
    b = h.broker([a])
    b.set_nodes([{"key": a}, {"key": n, "region": "321322", "level": "county"}])
    b.reload()
    peer = h.raw_peer(n, b)
    assert peer.hello()[1] == T_WELCOME
    h.wait_connected("sq.newcomer")
    assert h.nodes()["sq.newcomer"]["region"] == "321322"


@pytest.mark.agent
def test_agent_removed_from_registry_loses_its_session_on_sighup(h):
    a, c = h.keygen("sq.hrss"), h.keygen("sq.civil")
    b = h.broker([a, c])
    keep = h.agent(a, b)
    cut = h.agent(c, b)
    h.wait_connected("sq.hrss")
    h.wait_connected("sq.civil")
    b.set_nodes([{"key": a}])
    b.reload()
    wait_until(lambda: "sq.civil" not in h.nodes(), 5, what="sq.civil gone from nodes")
    assert _audit_has(h, action="revoke", object="sq.civil")
    cut.wait_log("AGT-LINKDOWN", timeout=10)
    # It keeps trying and keeps being refused (at the handshake when it
    # reconnects, or frame by frame on the old connection); the other agent
    # is unaffected.
    wait_until(lambda: "BRK-AUTHFAIL" in b.log_text() or "BRK-REVOKED" in b.log_text(), 15,
               what="a refused retry of the revoked agent")
    assert "sq.civil" not in h.nodes()
    assert h.is_connected("sq.hrss")
    assert keep.alive() and cut.alive()
