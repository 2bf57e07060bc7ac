"""S1 unauthorised-access catalogue (reliability anchors section c) and the
admin socket's abuse cases.

Each case checks what the peer gets (nothing, or an ERROR / admin reply with
the expected code), the audit record where the broker writes one, that the
broker is still alive, and that the store did not change.
"""
import os
import shutil
import stat
import subprocess

import pytest
import zmq
from zmq.utils import z85

from abuselib import (DATASET, EAUTH, EPROTO, ETYPE, RECIPIENT, SENDER, Shared, admin_raw,
                      admin_req, assert_alive, assert_unchanged, audit_mark, expect_admin_error,
                      expect_error, find_audit, nested, no_frame, settle, store_state, wait_audit)
from dxbharness import (BIN, T_DELIVER, T_PUBACK, T_WELCOME, RawPeer, make_envelope, pack,
                        wait_until)


def _env(sender=SENDER, recipients=(RECIPIENT,)):
    return make_envelope(sender, DATASET, list(recipients))


# ---- CURVE link --------------------------------------------------------------

@pytest.mark.smoke
def test_unknown_key_never_gets_welcome_and_is_audited(h):
    known = h.keygen(SENDER)
    stranger = h.keygen("sq.stranger")
    b = h.broker([known, h.keygen(RECIPIENT)])
    before = store_state(h)
    peer = h.raw_peer(stranger, b)
    assert peer.hello(timeout=1.0) is None, "an unregistered key got an answer"
    peer.send([1, 3, [_env(sender="sq.stranger")]])
    no_frame(peer, (T_PUBACK,), timeout=0.3)
    b.wait_log("BRK-AUTHFAIL")
    rows = wait_audit(h, actor="unknown", action="auth", object="connection", result="refused")
    key_z85 = z85.encode(stranger.curve_public()).decode()
    assert any(f"key={key_z85}" in r["detail"] for r in rows), rows
    wait_until(lambda: zmq.EVENT_HANDSHAKE_FAILED_AUTH in peer.poll_events(), 5,
               what="HANDSHAKE_FAILED_AUTH")
    assert zmq.EVENT_HANDSHAKE_SUCCEEDED not in peer.poll_events()
    assert "sq.stranger" not in h.nodes()
    assert_unchanged(before, store_state(h))
    assert_alive(b)


@pytest.mark.smoke
def test_client_pinning_a_wrong_broker_key_never_connects(h):
    known, impostor = h.keygen(SENDER), h.keygen("sq.impostor")
    b = h.broker([known, h.keygen(RECIPIENT)])
    before = store_state(h)
    peer = h.track(RawPeer(h.zctx, known, b, server_key=impostor.curve_public()))
    assert peer.hello(timeout=1.0) is None
    peer.send([1, 3, [_env()]])
    no_frame(peer, (T_PUBACK,), timeout=0.3)
    events = peer.poll_events()
    assert zmq.EVENT_HANDSHAKE_SUCCEEDED not in events, events
    assert not h.nodes()[SENDER]["connected"]
    assert_unchanged(before, store_state(h))
    assert_alive(b)


def _plain_text_socket(h, b, mechanism):
    s = h.zctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    if mechanism == "plain":
        s.plain_username = SENDER.encode()
        s.plain_password = b"secret"
    s.connect(b.endpoint)
    h.track(type("C", (), {"close": lambda self: s.close(0)})())
    return s


@pytest.mark.smoke
@pytest.mark.parametrize("mechanism", ["null", "plain"])
def test_null_or_plain_mechanism_client_gets_nothing_and_nothing_is_stored(h, mechanism):
    a, c = h.keygen(SENDER), h.keygen(RECIPIENT)
    b = h.broker([a, c])
    before = store_state(h)
    s = _plain_text_socket(h, b, mechanism)
    try:
        s.send(pack([1, 1, SENDER, "dxb-test", 256, 200]), zmq.NOBLOCK)
        s.send(pack([1, 3, [_env()]]), zmq.NOBLOCK)
    except zmq.Again:
        pass  # not even queued: no connection came up
    assert s.poll(1000) == 0, "a NULL/PLAIN client got an answer"
    assert not h.nodes()[SENDER]["connected"]
    assert_unchanged(before, store_state(h))
    assert_alive(b)


@pytest.mark.smoke
@pytest.mark.parametrize("mechanism", ["null", "plain"])
def test_null_or_plain_mechanism_attempt_is_audited(h, mechanism):
    a = h.keygen(SENDER)
    b = h.broker([a])
    s = _plain_text_socket(h, b, mechanism)
    s.send(pack([1, 1, SENDER, "dxb-test", 256, 200]), zmq.NOBLOCK)
    wait_until(lambda: find_audit(h, action="auth", result="refused"), 1.5,
               what="audit record action=auth result=refused")
    assert h.stats()["auth_failures"] >= 1


@pytest.mark.smoke
def test_revoked_key_with_open_session_gets_eauth_and_nothing_is_stored(h):
    a, c = h.keygen(SENDER), h.keygen(RECIPIENT)
    b = h.broker([a, c])
    victim = h.raw_peer(c, b)
    assert victim.hello()[1] == T_WELCOME
    h.wait_connected(RECIPIENT)
    b.set_nodes([{"key": a}])
    b.reload()
    expect_error(victim, EAUTH)  # the broker cuts the open session itself
    wait_audit(h, actor="operator", action="revoke", object=RECIPIENT, result="ok")
    before = store_state(h)
    mark = audit_mark(h)
    env = make_envelope(RECIPIENT, DATASET, [SENDER])
    victim.send([1, 3, [env]])
    text = expect_error(victim, EAUTH)
    assert "revoked" in text
    no_frame(victim, (T_PUBACK,), timeout=0.2)
    wait_audit(h, after=mark, actor="unknown", action="frame", object="session",
               result="refused", detail="key revoked or unknown")
    b.wait_log("BRK-REVOKED")
    assert_unchanged(before, store_state(h))
    assert h.queues()[SENDER]["msgs"] == 0
    assert_alive(b)


FRAMES_BEFORE_HELLO = [
    ("publish", lambda: [1, 3, [_env()]]),
    ("dack", lambda: [1, 6, [[b"\x01" * 16, 0]]]),
    ("credit", lambda: [1, 7, 10]),
    ("ping", lambda: [1, 8, 1]),
]


@pytest.mark.smoke
@pytest.mark.parametrize("build", [f[1] for f in FRAMES_BEFORE_HELLO],
                         ids=[f"{f[0]}_before_hello_gets_eauth_no_session" for f in FRAMES_BEFORE_HELLO])
def test_frame_before_hello_gets_eauth_no_session(h, build):
    a, c = h.keygen(SENDER), h.keygen(RECIPIENT)
    b = h.broker([a, c])
    before = store_state(h)
    peer = h.raw_peer(a, b)  # no HELLO: the peer does not PING either
    peer.send(build())
    text = expect_error(peer, EAUTH)
    assert "no session" in text
    no_frame(peer, (T_PUBACK, T_DELIVER), timeout=0.2)
    assert not h.nodes()[SENDER]["connected"]
    assert_unchanged(before, store_state(h))
    assert_alive(b)


# ---- admin socket ------------------------------------------------------------

@pytest.mark.smoke
def test_admin_socket_is_mode_0600_in_a_0700_directory(h):
    b = h.broker([h.keygen(SENDER)])
    sock = b.admin[len("ipc://"):]
    st = os.stat(sock)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600, oct(st.st_mode)
    assert stat.S_IMODE(os.stat(b.data_dir).st_mode) == 0o700, oct(os.stat(b.data_dir).st_mode)
    assert_alive(b)


@pytest.mark.smoke
@pytest.mark.parametrize("open_dirs", [False, True], ids=["dirs_as_created", "dirs_opened_up"])
def test_non_root_user_cannot_use_the_admin_socket(h, open_dirs):
    if os.geteuid() != 0 or shutil.which("runuser") is None:
        pytest.skip("needs root and runuser")
    b = h.broker([h.keygen(SENDER)])
    mark = audit_mark(h)
    if open_dirs:
        # Only the socket's own 0600 mode is left to keep "nobody" out.
        for d in (h.dir, b.data_dir):
            os.chmod(d, os.stat(d).st_mode | 0o011)
    usable = subprocess.run(["runuser", "-u", "nobody", "--", BIN["dxbctl"], "--help"],
                            capture_output=True, text=True, timeout=20)
    assert usable.returncode == 0, f"nobody cannot run dxbctl at all: {usable.stderr}"
    out = subprocess.run(["runuser", "-u", "nobody", "--", BIN["dxbctl"], "--admin", b.admin,
                          "--timeout", "1000", "--json", "nodes"],
                         capture_output=True, text=True, timeout=20)
    assert out.returncode != 0, f"nobody ran an admin command: {out.stdout}"
    assert SENDER not in out.stdout
    assert not find_audit(h, after=mark, actor="operator")
    assert_alive(b)


ADMIN_GARBAGE = [
    ("empty_frame", lambda: b"", EPROTO),
    ("random_bytes", lambda: b"\x01garbage\xff\x00", EPROTO),
    ("agent_frame_type", lambda: pack([1, 8, 0]), ETYPE),
    ("admin_reply_type", lambda: pack([1, 101, 0, "ok", None]), ETYPE),
    ("missing_args", lambda: pack([1, 100, "nodes"]), EPROTO),
    ("non_str_arg", lambda: pack([1, 100, "nodes", [1]]), EPROTO),
    ("seventeen_args", lambda: admin_req("peek", ["a"] * 17), EPROTO),
    ("arg_over_256_bytes", lambda: admin_req("peek", ["a" * 257]), EPROTO),
    ("command_over_32_bytes", lambda: admin_req("n" * 33), EPROTO),
    ("command_with_shell_chars", lambda: admin_req("nodes;rm -rf /"), EPROTO),
    ("command_in_uppercase", lambda: admin_req("NODES"), EPROTO),
    ("nesting_depth_100000", lambda: b"\x91" * 100000, EPROTO),
    ("nested_args", lambda: pack([1, 100, "nodes", []])[:-1] + nested(100000), EPROTO),
    ("array32_count_2pow32_minus_1", lambda: b"\xdd\xff\xff\xff\xff\x01\x64", EPROTO),
    ("version_2", lambda: pack([2, 100, "nodes", []]), 2),
]


@pytest.fixture(scope="module")
def admin_broker():
    with Shared("abuse-admin") as s:
        yield s


@pytest.mark.smoke
@pytest.mark.parametrize("build,code", [c[1:] for c in ADMIN_GARBAGE],
                         ids=[f"{c[0]}_gets_an_error_reply" for c in ADMIN_GARBAGE])
def test_malformed_admin_request_gets_error_reply_and_broker_stays_up(admin_broker, build, code):
    h, b = admin_broker.h, admin_broker.b
    before = store_state(h)
    n_bad = b.log_count("BRK-ADMINBAD")
    reply = admin_raw(h, b, build())
    expect_admin_error(reply, code)
    assert reply[4] is None, reply
    b.wait_log("BRK-ADMINBAD", count=n_bad + 1)
    assert_unchanged(before, store_state(h))
    assert_alive(b)
    assert h.nodes()[SENDER]["connected"]  # the admin socket still works


@pytest.mark.smoke
def test_unknown_admin_command_gets_etype(admin_broker):
    h, b = admin_broker.h, admin_broker.b
    before = store_state(h)
    text = expect_admin_error(admin_raw(h, b, admin_req("frobnicate")), ETYPE)
    assert "unknown command" in text
    out = h.dxbctl("frobnicate", json=False, check=False)
    assert out.returncode != 0
    assert_unchanged(before, store_state(h))
    assert_alive(b)


def _one_dead_letter(h):
    """Broker with one DLQ entry (sq.civil rejected a delivery with
    ECRYPTO). Returns the broker."""
    a, c = h.keygen(SENDER), h.keygen(RECIPIENT)
    b = h.broker([a, c])
    pa, pc = h.raw_peer(a, b), h.raw_peer(c, b)
    assert pa.hello()[1] == T_WELCOME and pc.hello()[1] == T_WELCOME
    env = _env()
    assert pa.publish([env]) == {bytes(env[0][0]): 0}
    got = pc.take_deliveries(5.0)
    assert len(got) == 1
    pc.dack([bytes(got[0][0][0])], code=13)
    wait_until(lambda: len(h.dxbctl("dlq", "list") or []) == 1, 5, what="one DLQ entry")
    return b


@pytest.mark.smoke
def test_unknown_admin_command_with_a_known_prefix_gets_etype_and_changes_nothing(h):
    b = _one_dead_letter(h)
    before = store_state(h)
    reply = admin_raw(h, b, admin_req("dlq.retryx", ["all"]))
    assert len(h.dxbctl("dlq", "list") or []) == 1, "the dead letter is gone"
    assert_unchanged(before, store_state(h))
    expect_admin_error(reply, ETYPE)
    assert_alive(b)


@pytest.mark.smoke
def test_admin_request_with_two_zmq_frames_is_refused_with_eproto(h):
    b = _one_dead_letter(h)
    before = store_state(h)
    reply = admin_raw(h, b, [admin_req("dlq.drop", ["all"]), b"extra"])
    assert len(h.dxbctl("dlq", "list") or []) == 1, "the dead letter is gone"
    assert_unchanged(before, store_state(h))
    expect_admin_error(reply, EPROTO)
    assert_alive(b)
