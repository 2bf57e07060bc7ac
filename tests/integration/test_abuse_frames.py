"""F2 malformed-frame catalogue (reliability anchors section c) against a
running broker, from a raw CURVE peer that completed a valid HELLO.

Every case checks: the code on the wire (ERROR [1, 10, code, ref, text] for a
frame the broker refuses whole, PUBACK code for a refused envelope), the
audit record (brk_server.c s_refuse: action "frame", result "refused",
detail "<ERRNAME>: <cause>"; s_on_publish: action "publish", result
"<ERRNAME>", detail "msg_id=<hex> reason=<cause>"), that the broker is still
alive and still serves the session, and that the store did not change
(queue depths, published counter, mdb_stat entry counts of msg/q/dedup/dlq).
"""
import hashlib
import secrets

import pytest

from abuselib import (CODE_NAMES, DATASET, EINTEGRITY, ENOROUTE, EPROTO, ESPOOF, ESUITE, ETOOBIG,
                      ETYPE, EVERSION, RECIPIENT, SENDER, Shared, assert_alive, assert_unchanged,
                      audit_mark, expect_error, find_audit, nested, no_frame, raw_array32,
                      packb, send_raw, session, settle, store_state, wait_audit)
from dxbharness import T_DELIVER, T_ERROR, T_PUBACK, make_envelope, pack

pytestmark = pytest.mark.smoke

LIMITS = {"max_message_bytes": "64KiB", "max_frame_bytes": "128KiB"}


@pytest.fixture(scope="module")
def shared():
    """One broker and session for the cheap cases (each case still compares
    the store before and after, and reads only audit records it caused)."""
    with Shared("abuse-frames", limits=LIMITS) as s:
        yield s


def _env(**kw):
    return make_envelope(SENDER, DATASET, [RECIPIENT], **kw)


def _still_serves(h, b, peer):
    """The session survives the refusal: a valid envelope is stored."""
    env = _env()
    assert peer.publish([env]) == {bytes(env[0][0]): 0}
    assert_alive(b)


def _refused_whole(h, b, peer, data, code, cause):
    before = store_state(h)
    mark = audit_mark(h)
    send_raw(peer, data)
    text = expect_error(peer, code)
    assert cause in text, f"ERROR text {text!r} does not name the cause {cause!r}"
    rows = wait_audit(h, after=mark, actor=SENDER, action="frame", object="session",
                      result="refused")
    assert len(rows) == 1, rows
    assert rows[0]["detail"].startswith(f"{CODE_NAMES[code]}: ") and cause in rows[0]["detail"], \
        f"audit detail {rows[0]['detail']!r} does not name {CODE_NAMES[code]} / {cause!r}"
    assert not peer.recv_all((T_PUBACK,)), "a refused frame was acknowledged"
    assert_unchanged(before, store_state(h))
    assert_alive(b)
    _still_serves(h, b, peer)


# ---- framing and msgpack: the frame is refused whole -------------------------

def _publish_bytes():
    return pack([1, 3, [_env()]])


FRAMES = [
    ("empty_message_is_eproto", lambda: b"", EPROTO, "truncated"),
    ("one_byte_message_is_eproto", lambda: b"\x93", EPROTO, "count exceeds bytes left"),
    ("version_2_is_eversion", lambda: pack([2, 8, 1]), EVERSION, "unsupported version"),
    ("version_0_is_eversion", lambda: pack([0, 8, 1]), EVERSION, "unsupported version"),
    ("unknown_type_99_is_etype", lambda: pack([1, 99, 0]), ETYPE, "unknown type"),
    ("reserved_type_20_is_etype", lambda: pack([1, 20, 0]), ETYPE, "unknown type"),
    ("unassigned_type_13_is_etype", lambda: pack([1, 13, 0]), ETYPE, "unknown type"),
    ("api_publish_type_40_on_agent_link_is_etype",
     lambda: pack([1, 40, 1, DATASET, [RECIPIENT], "f.txt", b"x", 0]), ETYPE,
     "not accepted from agents"),
    ("broker_only_type_welcome_from_agent_is_etype",
     lambda: pack([1, 2, SENDER, "sq.hub", 200, 65536, 1]), ETYPE, "not accepted from agents"),
    ("missing_element_is_eproto", lambda: pack([1, 8]), EPROTO, "wrong element count"),
    ("extra_element_is_eproto", lambda: pack([1, 8, 1, 2]), EPROTO, "wrong element count"),
    ("array_of_one_is_eproto", lambda: pack([1]), EPROTO, "wrong element count"),
    ("not_an_array_is_eproto", lambda: pack({"v": 1}), EPROTO, "expected array"),
    ("wrong_field_type_str_for_uint_is_eproto", lambda: pack([1, 8, "x"]), EPROTO,
     "t_ms: expected uint"),
    ("negative_int_for_uint_is_eproto", lambda: pack([1, 8, -1]), EPROTO, "t_ms"),
    ("credit_window_over_uint32_is_eproto", lambda: pack([1, 7, 1 << 32]), EPROTO, "window"),
    ("truncated_msgpack_is_eproto", lambda: _publish_bytes()[:-10], EPROTO, "truncated"),
    ("str_length_declared_over_actual_is_eproto", lambda: b"\x93\x01\x0c\xd9\xc8hello", EPROTO,
     "reason: truncated"),
    ("bin_length_declared_over_actual_is_eproto",
     lambda: _publish_bytes()[:-64] + b"\x00" * 8, EPROTO, "truncated"),
    ("array32_count_2pow32_minus_1_is_eproto", lambda: raw_array32(0xFFFFFFFF, b"\x01\x08\x00"),
     EPROTO, "count exceeds bytes left"),
    ("envelopes_array32_count_2pow32_minus_1_is_eproto",
     lambda: b"\x93\x01\x03" + raw_array32(0xFFFFFFFF), EPROTO,
     "envelopes: count exceeds bytes left"),
    ("map32_count_2pow32_minus_1_is_eproto", lambda: b"\x93\x01\x08\xdf\xff\xff\xff\xff",
     EPROTO, "t_ms"),
    ("nesting_depth_100000_is_eproto", lambda: b"\x91" * 100000, EPROTO, "expected uint"),
    ("nesting_depth_100000_in_publish_is_eproto", lambda: b"\x93\x01\x03" + nested(100000),
     EPROTO, "envelope"),
    ("trailing_bytes_are_eproto", lambda: pack([1, 8, 5]) + b"\x00", EPROTO, "trailing bytes"),
    ("non_utf8_str_is_eproto", lambda: b"\x93\x01\x0c\xa2\xff\xfe", EPROTO, "UTF-8"),
    ("two_zmq_frames_in_one_message_are_eproto", lambda: [pack([1, 8, 1]), pack([1, 8, 2])],
     EPROTO, "extra frames"),
    ("publish_with_zero_envelopes_is_eproto", lambda: pack([1, 3, []]), EPROTO, "envelopes"),
]


@pytest.mark.parametrize("build,code,cause", [f[1:] for f in FRAMES], ids=[f[0] for f in FRAMES])
def test_malformed_frame_is_refused_with_code_and_audited(shared, build, code, cause):
    _refused_whole(shared.h, shared.b, shared.peer, build(), code, cause)


# ---- envelope fields that fail decoding: the PUBLISH is refused whole ---------

def _mut(field, value):
    def f(env):
        env[0][field] = value
    return f


def _body_len_plus_one(env):
    env[0][11] += 1


ENV_DECODE = [
    ("uppercase_sender_is_eproto", _mut(1, "SQ.HRSS"), "header.sender: invalid id"),
    ("empty_sender_is_eproto", _mut(1, ""), "header.sender: invalid id"),
    ("sender_longer_than_64_is_eproto", _mut(1, "s" * 65), "header.sender"),
    ("uppercase_recipient_is_eproto", _mut(7, ["SQ.CIVIL"]), "header.recipients[0]: invalid id"),
    ("dataset_with_slash_is_eproto", _mut(2, "../etc"), "header.dataset: invalid id"),
    ("region_of_5_digits_is_eproto", _mut(8, "32130"), "header.region: invalid region code"),
    ("region_with_letters_is_eproto", _mut(8, "32130a"), "header.region: invalid region code"),
    ("msg_id_of_15_bytes_is_eproto", _mut(0, b"\x01" * 15), "header.msg_id: wrong length"),
    ("body_len_mismatch_is_eproto", _body_len_plus_one,
     "header.body_len: does not match body length"),
    ("257_recipients_are_eproto", _mut(7, [RECIPIENT] * 257),
     "header.recipients: too many elements"),
    ("zero_recipients_are_eproto", _mut(7, []), "header.recipients: too few elements"),
    ("reserved_flag_bits_are_eproto", _mut(10, 4), "reserved flag bits set"),
    ("manifest_flag_without_chunk_flag_is_eproto", _mut(10, 2),
     "manifest flag without the chunk flag"),
    ("suite_0_is_eproto", _mut(9, 0), "header.suite"),
    ("kind_0_is_eproto", _mut(3, 0), "header.kind"),
    ("seq_0_is_eproto", _mut(4, 0), "header.seq"),
    ("ttl_over_uint32_is_eproto", _mut(6, 1 << 32), "header.ttl_s"),
    ("body_hash_of_31_bytes_is_eproto", lambda e: e.__setitem__(1, e[1][:31]), "body_hash"),
]


@pytest.mark.parametrize("mutate,cause", [c[1:] for c in ENV_DECODE], ids=[c[0] for c in ENV_DECODE])
def test_publish_with_undecodable_envelope_field_is_refused_whole(shared, mutate, cause):
    env = _env()
    mutate(env)
    _refused_whole(shared.h, shared.b, shared.peer, pack([1, 3, [env]]), EPROTO, cause)


# ---- envelope checks: the envelope gets a PUBACK code --------------------------

def _hash_flip(env):
    env[2] = env[2][:-1] + bytes([env[2][-1] ^ 1])


ENV_REFUSED = [
    ("body_hash_mismatch_is_eintegrity", _hash_flip, EINTEGRITY, "body hash mismatch"),
    ("unknown_suite_2_is_esuite", _mut(9, 2), ESUITE, "unknown crypto suite"),
    ("kind_2_feed_record_is_etype", _mut(3, 2), ETYPE, "kind not supported"),
    ("unknown_recipient_is_enoroute", _mut(7, ["sq.nobody"]), ENOROUTE, "unknown recipient"),
    ("sender_is_another_node_is_espoof", _mut(1, RECIPIENT), ESPOOF,
     "sender is not the authenticated node"),
    ("recipient_listed_twice_is_eproto", _mut(7, [RECIPIENT, RECIPIENT]), EPROTO,
     "recipient listed twice"),
]


def _chunk(body_obj):
    """Turns the envelope into a chunk piece (flags bit 0) with the given
    CHUNK_BODY (PROTOCOL.md 5.1), keeping header length and hash right."""
    def f(env):
        body = packb(body_obj) if not isinstance(body_obj, bytes) else body_obj
        env[0][10] = 1
        env[0][11] = len(body)
        env[1] = hashlib.blake2b(body, digest_size=32).digest()
        env[2] = body
    return f


XID = b"\x42" * 16
CT = b"\x07" * 40

# Chunk abuse: the broker reads the public part of every chunk body and
# refuses what does not hold together before storing anything.
ENV_REFUSED += [
    ("chunk_index_0_is_eproto", _chunk([XID, 0, 3, 100, CT]), EPROTO,
     "chunk body: index outside 1..count"),
    ("chunk_index_over_count_is_eproto", _chunk([XID, 4, 3, 100, CT]), EPROTO,
     "chunk body: index outside 1..count"),
    ("chunk_count_0_is_eproto", _chunk([XID, 1, 0, 100, CT]), EPROTO,
     "chunk body: index outside 1..count"),
    ("chunk_body_of_6_fields_is_eproto", _chunk([XID, 1, 3, 100, CT, 1]), EPROTO,
     "chunk body: want an array of 5"),
    ("chunk_transfer_id_of_15_bytes_is_eproto", _chunk([XID[:15], 1, 3, 100, CT]), EPROTO,
     "chunk body: transfer id is not 16 bytes"),
    ("chunk_ciphertext_shorter_than_tag_is_eproto", _chunk([XID, 1, 3, 100, b"\x01" * 16]),
     EPROTO, "chunk body: ciphertext shorter than its tag"),
    ("chunk_body_with_trailing_bytes_is_eproto", _chunk(packb([XID, 1, 3, 100, CT]) + b"\x00"),
     EPROTO, "chunk body: trailing bytes"),
    ("chunk_body_not_msgpack_array_is_eproto", _chunk(b"\xc1" * 32), EPROTO, "chunk body"),
]


def _assert_envelope_refused(h, b, peer, env, code, cause):
    before = store_state(h)
    mark = audit_mark(h)
    mid = bytes(env[0][0])
    assert peer.publish([env]) == {mid: code}
    wait_audit(h, after=mark, actor=SENDER, object=DATASET, action="publish", result=CODE_NAMES[code],
               detail=f"msg_id={mid.hex()} reason={cause}")
    assert not find_audit(h, action="accepted", detail=f"msg_id={mid.hex()}")
    assert_unchanged(before, store_state(h))
    _still_serves(h, b, peer)


@pytest.mark.parametrize("mutate,code,cause", [c[1:] for c in ENV_REFUSED],
                         ids=[c[0] for c in ENV_REFUSED])
def test_refused_envelope_gets_puback_code_and_audit_and_is_not_stored(shared, mutate, code,
                                                                       cause):
    env = _env()
    mutate(env)
    _assert_envelope_refused(shared.h, shared.b, shared.peer, env, code, cause)


def test_body_over_max_message_bytes_is_etoobig(shared):
    env = _env(body=secrets.token_bytes(70 * 1024))  # frame < 128 KiB, body > 64 KiB
    _assert_envelope_refused(shared.h, shared.b, shared.peer, env, ETOOBIG,
                             "body over limits.max_message_bytes")


def test_frame_over_max_frame_bytes_drops_the_connection_and_broker_stays_up(h):
    a_key, c_key = h.keygen(SENDER), h.keygen(RECIPIENT)
    b = h.broker([a_key, c_key], limits=LIMITS)
    peer = h.raw_peer(a_key, b)
    assert peer.hello()[1] == 2
    before = store_state(h)
    env = _env(body=secrets.token_bytes(200 * 1024))
    peer.send([1, 3, [env]])  # ZMQ_MAXMSGSIZE: libzmq closes the connection
    no_frame(peer, (T_PUBACK,), timeout=1.5)
    assert_alive(b)
    assert_unchanged(before, store_state(h))
    # A fresh peer of the same node still gets a session and can publish.
    fresh = h.raw_peer(a_key, b)
    assert fresh.hello()[1] == 2
    small = _env()
    assert fresh.publish([small]) == {bytes(small[0][0]): 0}
    assert h.queues()[RECIPIENT]["msgs"] == 1
    assert_alive(b)


# ---- replay and late acks -----------------------------------------------------

def test_reused_message_id_is_answered_ok_and_stored_once(h):
    b, peer = session(h)
    env = _env()
    mid = bytes(env[0][0])
    before = store_state(h)
    dup_before = h.stats()["duplicates"]
    assert peer.publish([env]) == {mid: 0}
    assert peer.publish([env]) == {mid: 0}  # same id, same bytes: duplicate
    other = _env(msg_id=mid, seq=2)  # same id, different body: still the first
    assert peer.publish([other]) == {mid: 0}
    after = store_state(h)
    assert after["queues"][RECIPIENT] == before["queues"][RECIPIENT] + 1
    assert after["published"] == before["published"] + 1
    assert h.stats()["duplicates"] == dup_before + 2
    if before["mdb"] is not None:
        assert after["mdb"]["msg"] == before["mdb"]["msg"] + 1
        assert after["mdb"]["q"] == before["mdb"]["q"] + 1
    assert len(find_audit(h, action="accepted", detail=f"msg_id={mid.hex()}")) == 1
    assert_alive(b)


def test_dack_for_a_message_never_delivered_is_ignored(h):
    b, peer = session(h)
    # A real message waits in sq.hrss's own queue (it is its own recipient).
    own = make_envelope(SENDER, DATASET, [SENDER])
    assert peer.publish([own]) == {bytes(own[0][0]): 0}
    delivered = peer.take_deliveries(5.0)
    assert len(delivered) == 1
    before = store_state(h)
    stranger = secrets.token_bytes(16)
    for code in (0, 13):  # OK and ECRYPTO for an id that is not in flight
        peer.dack([stranger], code=code)
    settle(0.3)
    no_frame(peer, (T_ERROR,), timeout=0.2)
    assert_unchanged(before, store_state(h))
    assert not find_audit(h, detail=stranger.hex())
    assert h.stats()["dead_lettered"] == 0
    # The real delivery is still in flight and its DACK still works.
    peer.dack([bytes(delivered[0][0][0])])
    h.wait_queue(SENDER, 0, timeout=5)
    no_frame(peer, (T_DELIVER,), timeout=0.2)
    assert_alive(b)
