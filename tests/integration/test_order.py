"""Per (sender, dataset) order at the broker (PROTOCOL.md 7.4): a message
whose predecessor has not been stored yet (refused with EFULL, not resent)
is answered EAGAIN, so a resend from the oldest keeps the order."""
import pytest

from dxbharness import E_EAGAIN, E_OK, T_WELCOME, make_envelope


def _codes(peer, envs):
    results = peer.publish(envs)
    assert isinstance(results, dict), results
    return [results[bytes(e[0][0])] for e in envs]


@pytest.mark.smoke
def test_gap_in_sequence_is_refused_with_eagain_until_the_missing_one_arrives(h):
    a, c = h.keygen("sq.hrss"), h.keygen("sq.civil")
    b = h.broker([a, c])
    peer = h.raw_peer(a, b)
    assert peer.hello()[1] == T_WELCOME
    env = {n: make_envelope("sq.hrss", "hr.employees", ["sq.civil"], seq=n) for n in (1, 2, 3)}
    assert _codes(peer, [env[1]]) == [E_OK]
    assert _codes(peer, [env[3]]) == [E_EAGAIN]
    assert h.queues()["sq.civil"]["msgs"] == 1
    assert _codes(peer, [env[2], env[3]]) == [E_OK, E_OK]
    assert [r["seq"] for r in h.dxbctl("queues", "peek", "sq.civil")] == [1, 2, 3]


@pytest.mark.smoke
def test_sequences_are_gated_per_dataset_not_across_datasets(h):
    a, c = h.keygen("sq.hrss"), h.keygen("sq.civil")
    b = h.broker([a, c])
    peer = h.raw_peer(a, b)
    assert peer.hello()[1] == T_WELCOME
    first = make_envelope("sq.hrss", "hr.employees", ["sq.civil"], seq=7)
    other = make_envelope("sq.hrss", "hr.payroll", ["sq.civil"], seq=1)
    assert _codes(peer, [first, other]) == [E_OK, E_OK]
