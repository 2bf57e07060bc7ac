"""Authentication and identity (DESIGN.md section 3, PROTOCOL.md PROTO-R4, 7.1).

Most of these tests use RawPeer, a CURVE DEALER written from PROTOCOL.md in
Python, so that they can send what a real agent never would.
"""
import secrets

import pytest
import zmq

from dxbharness import (E_ESPOOF, E_OK, T_DIRECTORY, T_ERROR, T_WELCOME, RawPeer,
                        make_envelope, wait_until)


def _audit_has(h, **match):
    return any(all(row.get(k) == v for k, v in match.items()) for row in h.audit(500))


@pytest.mark.smoke
def test_unregistered_key_is_refused_at_handshake_and_audited(h):
    known = h.keygen("sq.hrss")
    stranger = h.keygen("sq.stranger")  # never put in the registry
    b = h.broker([known])
    peer = h.raw_peer(stranger, b)
    assert peer.hello(timeout=2.0) is None, "an unregistered key got an answer"
    b.wait_log("BRK-AUTHFAIL", timeout=10)
    wait_until(lambda: zmq.EVENT_HANDSHAKE_FAILED_AUTH in peer.poll_events(), 10,
               what="HANDSHAKE_FAILED_AUTH on the peer's monitor")
    wait_until(lambda: _audit_has(h, action="auth", result="refused"), 10,
               what="audit record action=auth result=refused")
    assert "sq.stranger" not in h.nodes()
    assert h.stats()["auth_failures"] >= 1


@pytest.mark.smoke
def test_wrong_broker_key_is_refused_by_the_client_side(h):
    known = h.keygen("sq.hrss")
    impostor = h.keygen("sq.impostor")
    b = h.broker([known])
    # The peer pins a key that is not the broker's: CURVE fails, nothing flows.
    peer = h.track(RawPeer(h.zctx, known, b, server_key=impostor.curve_public()))
    assert peer.hello(timeout=2.0) is None
    assert not h.nodes()["sq.hrss"]["connected"]


@pytest.mark.smoke
def test_registered_node_gets_welcome_and_directory(h):
    a, c = h.keygen("sq.hrss"), h.keygen("sq.civil")
    b = h.broker([a, {"key": c, "region": "321300", "level": "department", "clearance": 2}])
    peer = h.raw_peer(a, b)
    welcome = peer.hello()
    assert welcome is not None and welcome[1] == T_WELCOME, welcome
    assert welcome[2] == "sq.hrss" and welcome[3] == "sq.hub"
    directory = peer.recv(5.0, types=(T_DIRECTORY,))
    assert directory is not None, "no DIRECTORY after WELCOME"
    entries = {e[0]: e for e in directory[2]}
    assert set(entries) == {"sq.hrss", "sq.civil"}
    assert bytes(entries["sq.civil"][4]) == c.sign_pk()
    assert bytes(entries["sq.civil"][5]) == c.curve_public()
    h.wait_connected("sq.hrss", timeout=5)


@pytest.mark.smoke
def test_publish_with_another_nodes_sender_is_refused_with_espoof(h):
    a, victim = h.keygen("sq.hrss"), h.keygen("sq.civil")
    b = h.broker([a, victim])
    peer = h.raw_peer(a, b)
    welcome = peer.hello()
    assert welcome is not None and welcome[1] == T_WELCOME, welcome

    spoofed = make_envelope("sq.civil", "hr.employees", ["sq.hrss"])
    honest = make_envelope("sq.hrss", "hr.employees", ["sq.civil"])
    results = peer.publish([spoofed, honest])
    assert isinstance(results, dict), f"no PUBACK: {results}"
    assert results[bytes(spoofed[0][0])] == E_ESPOOF
    assert results[bytes(honest[0][0])] == E_OK  # the same frame's honest envelope is fine

    queues = h.queues()
    assert queues["sq.hrss"]["msgs"] == 0, "the spoofed envelope was queued"
    assert queues["sq.civil"]["msgs"] == 1
    assert h.stats()["spoofs"] >= 1
    assert _audit_has(h, actor="sq.hrss", action="publish", result="ESPOOF")


@pytest.mark.smoke
def test_hello_claiming_another_node_gets_error_espoof_and_no_session(h):
    a, victim = h.keygen("sq.hrss"), h.keygen("sq.civil")
    b = h.broker([a, victim])
    peer = h.raw_peer(a, b)
    reply = peer.hello(node="sq.civil")
    assert reply is not None and reply[1] == T_ERROR, reply
    assert reply[2] == E_ESPOOF
    nodes = h.nodes()
    assert not nodes["sq.civil"]["connected"] and not nodes["sq.hrss"]["connected"]
    # Without a session, a PUBLISH is not stored.
    env = make_envelope("sq.hrss", "hr.employees", ["sq.civil"])
    peer.send([1, 3, [env]])
    peer.recv(1.0)
    assert h.queues()["sq.civil"]["msgs"] == 0
    assert _audit_has(h, actor="sq.hrss", action="hello", result="refused")


@pytest.mark.smoke
def test_tampered_body_is_refused_with_eintegrity(h):
    a, c = h.keygen("sq.hrss"), h.keygen("sq.civil")
    b = h.broker([a, c])
    peer = h.raw_peer(a, b)
    assert peer.hello()[1] == T_WELCOME
    env = make_envelope("sq.hrss", "hr.employees", ["sq.civil"])
    env[2] = env[2][:-1] + bytes([env[2][-1] ^ 1])  # flip one bit after hashing
    results = peer.publish([env])
    assert results[bytes(env[0][0])] == 11  # EINTEGRITY
    assert h.queues()["sq.civil"]["msgs"] == 0


@pytest.mark.smoke
def test_unknown_recipient_is_refused_with_enoroute(h):
    a = h.keygen("sq.hrss")
    b = h.broker([a])
    peer = h.raw_peer(a, b)
    assert peer.hello()[1] == T_WELCOME
    env = make_envelope("sq.hrss", "hr.employees", ["sq.nobody"], msg_id=secrets.token_bytes(16))
    assert peer.publish([env])[bytes(env[0][0])] == 7  # ENOROUTE


@pytest.mark.agent
def test_agent_with_unregistered_key_never_connects(h):
    known = h.keygen("sq.hrss")
    stranger = h.keygen("sq.stranger")
    b = h.broker([known])
    good = h.agent(known, b)
    h.wait_connected("sq.hrss")
    bad = h.agent(stranger, b)  # READY=1 comes without the broker link
    b.wait_log("BRK-AUTHFAIL", timeout=10)
    wait_until(lambda: _audit_has(h, action="auth", result="refused"), 10,
               what="audit record action=auth result=refused")
    # Let it try several times (each try is one BRK-AUTHFAIL): it must never
    # show up as connected, and its own log must not claim a session.
    for attempt in range(1, 4):
        b.wait_log("BRK-AUTHFAIL", timeout=15, count=attempt)
        assert not h.nodes().get("sq.stranger", {}).get("connected")
    assert "AGT-LINKUP" not in bad.log_text()
    assert h.is_connected("sq.hrss"), "the registered agent lost its session"
    assert good.alive() and bad.alive()
