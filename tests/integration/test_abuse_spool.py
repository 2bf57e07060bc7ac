"""Spool path abuse (reliability anchors F2 "Admin and spool") against a real
sending agent (agents/agt_spool.c s_scan_dataset / s_reject), and unsafe file
names on the local API (codec s_filename, PROTOCOL.md section 3).

One broker and one sending agent (dataset hr.employees -> sq.civil, which is
not running, so everything sent waits in the broker's queue) serve every
case. Each case puts its bad object into the spool, then a good control file:
once the control file reached the broker (queue +1) the scan that saw the bad
object is over, and the queue proves that only the control file was sent.
"""
import os
import secrets

import pytest

from abuselib import (DATASET, EPROTO, RECIPIENT, SENDER, agent_audit, assert_alive,
                      store_state)
from dxbharness import Harness, wait_until

pytestmark = pytest.mark.agent

MAX_FILE = 64 * 1024


class SpoolWorld:
    def __init__(self, h=None):
        self.h = h or Harness("abuse-spool")
        a, c = self.h.keygen(SENDER), self.h.keygen(RECIPIENT)
        self.b = self.h.broker([a, c])
        self.agent = self.h.agent(a, self.b, datasets=[{"id": DATASET, "recipients": [RECIPIENT]}],
                                  spool={"scan_ms": 50, "max_file_bytes": MAX_FILE})
        self.h.wait_connected(SENDER)
        self.api = self.agent.client()

    def close(self):
        problems = self.h.close()
        if problems:
            print(f"\n---- daemon logs (kept in {self.h.dir}) ----\n{self.h.logs()}")
            raise AssertionError("spool world teardown: " + "; ".join(problems))
        self.h.remove()


@pytest.fixture(scope="module")
def world():
    w = SpoolWorld()
    yield w
    w.close()


def _outbox(w, dataset=DATASET):
    return w.agent.outbox(dataset)


def _depth(w):
    return w.h.queues()[RECIPIENT]["msgs"]


def _send_control(w, tag, timeout=15):
    """Drops a good file and waits until the broker holds it; returns the
    queue depth before it."""
    before = _depth(w)
    w.agent.drop(DATASET, f"control-{tag}-{secrets.token_hex(4)}.txt", b"control\n")
    w.h.wait_queue(RECIPIENT, before + 1, timeout=timeout)
    return before


def _agent_audit_has(w, name, reason):
    rows = agent_audit(w.agent)
    if rows is None:
        return True  # mdb_dump missing: the log line is the evidence
    # The audit chain stores control characters of a field as spaces.
    shown = "".join(" " if ord(ch) < 0x20 else ch for ch in name)
    return any(r["action"] == "spool" and r["result"] == "refused"
               and f"file={shown} reason={reason}" in r["detail"] for r in rows)


# ---- objects the agent must refuse (renamed to .rejected-<name>) -------------

def _symlink_passwd(d, name):
    os.symlink("/etc/passwd", os.path.join(d, name))


def _fifo(d, name):
    os.mkfifo(os.path.join(d, name))


def _oversize(d, name):
    with open(os.path.join(d, name), "wb") as f:
        f.write(b"x" * (MAX_FILE + 1))


def _regular(d, name):
    with open(os.path.join(d, name), "wb") as f:
        f.write(b"data\n")


REJECTED = [
    ("symlink_to_etc_passwd", "passwd-link", _symlink_passwd, "symbolic link"),
    ("fifo", "a-fifo", _fifo, "not a regular file"),
    ("file_over_max_file_bytes", "big.bin", _oversize, "larger than spool.max_file_bytes"),
    ("name_with_control_byte", "bad\x01name.txt", _regular, "unsafe file name"),
]

AUDIT_READER = ("the agent no longer deadlocks (fixed in agt_spool.c: the refusal is audited in "
                "the scan's transaction), but abuselib's reader of the agent's audit table fails "
                "to parse it (ValueError on mdb_dump output); fix the reader, then drop this mark")
DEADLOCK = ("BUG: agents/agt_spool.c:81 s_reject() calls agt_store_audit_now(), which opens a "
            "second LMDB write txn (agents/agt_store.c:149) while agt_spool_scan() already holds "
            "one (agents/agt_spool.c:164): the agent self-deadlocks on the LMDB writer mutex on "
            "the first rejected spool file - it never sends again, stops heartbeating and "
            "ignores SIGTERM")


@pytest.mark.parametrize("name,make,reason", [c[1:] for c in REJECTED],
                         ids=[f"{c[0]}_is_not_sent_and_is_renamed_rejected" for c in REJECTED])
def test_unsendable_spool_object_is_not_sent_and_is_renamed_rejected(h, name, make, reason):
    # Its own agent: today a rejection hangs the agent (see DEADLOCK).
    w = SpoolWorld(h)
    try:
        d = _outbox(w)
        published = w.h.stats()["published"]
        make(d, name)
        path, rejected = os.path.join(d, name), os.path.join(d, ".rejected-" + name)
        wait_until(lambda: os.path.lexists(rejected) and not os.path.lexists(path), 5,
                   what=f".rejected-{name!r}")
        lines = [ln for ln in w.agent.log_text().splitlines() if "AGT-SPOOLERR" in ln]
        assert any(f"renamed to .rejected-{name}: {reason}" in ln for ln in lines), lines
        # The agent goes on working: a good file after it is sent, and only it.
        before = _send_control(w, "rej", timeout=3)
        assert _depth(w) == before + 1, "the bad object was sent"
        assert w.h.stats()["published"] == published + 1
        wait_until(lambda: _agent_audit_has(w, name, reason), 5,
                   what=f"agent audit spool refused file={name!r}")
        with open("/etc/passwd", "rb") as f:
            assert f.read(16)  # the link target is untouched
        assert_alive(w.agent, w.b)
    except BaseException:
        if w.agent.alive():
            w.agent.kill9()  # a hung agent would fail the teardown's SIGTERM stop
        raise


# ---- objects the agent must ignore ---------------------------------------------

def test_dot_file_in_the_outbox_is_ignored(world):
    w = world
    d = _outbox(w)
    name = f".in-progress-{secrets.token_hex(4)}.csv"
    _regular(d, name)
    before = _send_control(w, "dot")
    assert _depth(w) == before + 1
    assert os.path.exists(os.path.join(d, name)), "the dot file was taken or moved"
    assert not os.path.lexists(os.path.join(d, ".rejected-" + name))
    assert name not in w.agent.log_text()
    assert_alive(w.agent, w.b)


def test_file_in_an_unconfigured_dataset_folder_is_ignored(world):
    w = world
    d = _outbox(w, "hr.unconfigured")
    os.makedirs(d, exist_ok=True)
    _regular(d, "stray.csv")
    before = _send_control(w, "unconf")
    assert _depth(w) == before + 1
    assert os.listdir(d) == ["stray.csv"], os.listdir(d)
    assert "stray.csv" not in w.agent.log_text()
    assert_alive(w.agent, w.b)


# ---- the local API cannot produce an unsafe name ---------------------------------

API_NAMES = [
    ("dotdot_slash", "../evil"),
    ("dotdot_x", "../x"),
    ("absolute_path", "/etc/passwd"),
    ("slash_inside", "a/b.txt"),
    ("dot_file", ".hidden"),
    ("empty", ""),
    ("control_byte", "a\nb"),
    ("over_200_bytes", "n" * 201),
]


@pytest.mark.parametrize("name", [n[1] for n in API_NAMES],
                         ids=[f"{n[0]}_name_is_refused_with_eproto" for n in API_NAMES])
def test_api_publish_with_unsafe_file_name_is_refused(world, name):
    w = world
    before = store_state(w.h)
    req = w.api.publish_async(DATASET, [RECIPIENT], name, b"payload")
    code, msg_id, text = w.api.wait_result(req, timeout=10)
    assert code == EPROTO, f"code={code} text={text!r}"
    assert msg_id == "", msg_id
    assert "name" in text, text
    w.agent.wait_log("AGT-APIBAD")
    # A good request on the same connection still works, and only it is sent.
    good = w.api.publish(DATASET, [RECIPIENT], "good.txt", b"ok")
    assert good
    w.h.wait_queue(RECIPIENT, before["queues"][RECIPIENT] + 1)
    assert w.h.stats()["published"] == before["published"] + 1
    assert_alive(w.agent, w.b)


def test_api_publish_with_a_path_as_dataset_is_refused(world):
    w = world
    req = w.api.publish_async("../outbox", [RECIPIENT], "x.txt", b"payload")
    code, msg_id, text = w.api.wait_result(req, timeout=10)
    assert code == EPROTO and msg_id == "", (code, text)
    assert not os.path.exists(os.path.join(w.agent.data_dir, "outbox", "..", "x.txt"))
    assert_alive(w.agent, w.b)
