"""Helpers for the abuse tests (reliability anchors F2 / S1 / spool abuse).

Used by test_abuse_frames.py, test_abuse_access.py and test_abuse_spool.py.
Everything here drives the daemons from the outside: raw bytes on the CURVE
link, raw bytes on the admin socket, files in the spool, dxbctl and mdb_stat.
"""
import os
import re
import shutil
import subprocess
import time

import msgpack
import zmq

from dxbharness import T_ERROR, T_WELCOME, Harness, pack, unpack, wait_until

# Wire codes (PROTOCOL.md section 6).
OK, EPROTO, EVERSION, ETYPE, ETOOBIG, EAUTH = 0, 1, 2, 3, 4, 5
EDENIED, ENOROUTE, EINTEGRITY, ESPOOF, ESUITE, EINVAL = 6, 7, 11, 12, 14, 18
CODE_NAMES = {OK: "OK", EPROTO: "EPROTO", EVERSION: "EVERSION", ETYPE: "ETYPE",
              ETOOBIG: "ETOOBIG", EAUTH: "EAUTH", EDENIED: "EDENIED", ENOROUTE: "ENOROUTE",
              EINTEGRITY: "EINTEGRITY", ESPOOF: "ESPOOF", ESUITE: "ESUITE", EINVAL: "EINVAL"}

T_ADMIN_REQ, T_ADMIN_REP = 100, 101
SENDER, RECIPIENT, DATASET = "sq.hrss", "sq.civil", "hr.employees"
STORE_DBS = ("msg", "q", "dedup", "dlq")


# ---- a broker with a live raw session --------------------------------------

def session(h, **overrides):
    """Broker with sq.hrss and sq.civil; a raw peer of sq.hrss that has
    completed HELLO/WELCOME. Returns (broker, peer)."""
    a, c = h.keygen(SENDER), h.keygen(RECIPIENT)
    b = h.broker([a, c], **overrides)
    peer = h.raw_peer(a, b)
    welcome = peer.hello()
    assert welcome is not None and welcome[1] == T_WELCOME, f"no WELCOME: {welcome}"
    return b, peer


def send_raw(peer, data):
    """Sends bytes (one frame) or a list of bytes (one multipart message)
    on a RawPeer's socket, bypassing its msgpack encoder."""
    with peer.lock:
        if isinstance(data, (list, tuple)):
            peer.sock.send_multipart(list(data), zmq.NOBLOCK)
        else:
            peer.sock.send(data, zmq.NOBLOCK)


def expect_error(peer, code, timeout=5.0):
    """Waits for an ERROR frame [1, 10, code, ref, text]; checks its shape
    and code; returns the text."""
    frame = peer.recv(timeout, types=(T_ERROR,))
    assert frame is not None, f"no ERROR frame within {timeout}s (wanted code {code})"
    assert len(frame) == 5 and frame[0] == 1 and frame[1] == T_ERROR, frame
    assert isinstance(frame[3], bytes) and len(frame[3]) in (0, 16), frame
    assert isinstance(frame[4], str) and len(frame[4].encode()) <= 512, frame
    assert frame[2] == code, f"ERROR code {frame[2]} ({frame[4]!r}), wanted {code}"
    return frame[4]


def no_frame(peer, types, timeout=1.0):
    """Asserts no frame of `types` arrives within timeout."""
    frame = peer.recv(timeout, types=types)
    assert frame is None, f"unexpected frame {frame}"


# ---- store state -----------------------------------------------------------

def mdb_entries(broker):
    """{db: entries} of the broker's LMDB (mdb_stat, read-only; None when
    mdb_stat is not installed)."""
    if shutil.which("mdb_stat") is None:
        return None
    path = os.path.join(broker.data_dir, "store")
    out = {}
    for db in STORE_DBS:
        r = subprocess.run(["mdb_stat", "-s", db, path], capture_output=True, text=True,
                           timeout=10)
        m = re.search(r"Entries:\s*(\d+)", r.stdout)
        assert r.returncode == 0 and m, f"mdb_stat -s {db} {path}: {r.stdout}{r.stderr}"
        out[db] = int(m.group(1))
    return out


def store_state(h, broker=None):
    """What must not change when a frame is refused: per-node queue depth,
    the published counter and the entry counts of the data databases (the
    audit database is expected to grow, so it is not compared)."""
    b = broker or h._only_broker()
    stats = h.stats(b)
    return {
        "queues": {n: row["msgs"] for n, row in h.queues(b).items()},
        "published": stats["published"],
        "mdb": mdb_entries(b),
    }


def assert_unchanged(before, after):
    assert after == before, f"store changed: before={before} after={after}"


def assert_alive(*daemons):
    for d in daemons:
        assert d.alive(), f"{d.name} died (rc={d.proc.returncode}):\n{d.log_text()[-3000:]}"


# ---- a broker shared by a module's cheap cases ------------------------------

class Shared:
    """One harness, broker and raw session for many cheap cases (a broker
    per case would cost its start and stop each time). Use from a
    module-scoped fixture: `with Shared() as s: yield s`. At the end every
    daemon is stopped; a non-zero exit or a sanitizer report fails."""

    def __init__(self, name="abuse", **overrides):
        self.h = Harness(name)
        self.overrides = overrides

    def __enter__(self):
        self.b, self.peer = session(self.h, **self.overrides)
        return self

    def __exit__(self, exc_type, exc, tb):
        problems = self.h.close()
        if problems or exc_type is not None:
            print(f"\n---- daemon logs (kept in {self.h.dir}) ----\n{self.h.logs()}")
            if problems:
                raise AssertionError("shared broker teardown: " + "; ".join(problems))
        else:
            self.h.remove()
        return False


# ---- audit -----------------------------------------------------------------

def audit_rows(h, n=500, broker=None):
    return h.audit(n, broker=broker) or []


def audit_mark(h, broker=None):
    """The newest audit seq now; pass it as after= to see only newer rows."""
    rows = audit_rows(h, n=1, broker=broker)
    return max((r["seq"] for r in rows), default=0)


def find_audit(h, detail=None, broker=None, after=0, **match):
    """Audit rows newer than seq `after`, matching every field in match and
    (when given) whose detail contains `detail`."""
    return [r for r in audit_rows(h, broker=broker)
            if r["seq"] > after and all(r.get(k) == v for k, v in match.items())
            and (detail is None or detail in (r.get("detail") or ""))]


def wait_audit(h, detail=None, timeout=5.0, broker=None, after=0, **match):
    """Waits for an audit record; returns the matching rows."""
    return wait_until(lambda: find_audit(h, detail, broker=broker, after=after, **match), timeout,
                      what=f"audit record {match} detail~{detail!r}")


# ---- admin socket ------------------------------------------------------------

def admin_raw(h, broker, data, timeout=5.0):
    """Sends raw bytes (or a multipart list) to the admin socket with a plain
    DEALER; returns the decoded reply (or None when there is none)."""
    s = h.zctx.socket(zmq.DEALER)
    try:
        s.setsockopt(zmq.LINGER, 0)
        s.connect(broker.admin)
        if isinstance(data, (list, tuple)):
            s.send_multipart(list(data))
        else:
            s.send(data)
        if not s.poll(int(timeout * 1000)):
            return None
        return unpack(s.recv())
    finally:
        s.close(0)


def admin_req(command, args=()):
    return pack([1, T_ADMIN_REQ, command, list(args)])


def expect_admin_error(reply, code):
    assert reply is not None, "no admin reply"
    assert reply[0] == 1 and reply[1] == T_ADMIN_REP and len(reply) == 5, reply
    assert reply[2] == code, f"admin reply code {reply[2]} ({reply[3]!r}), wanted {code}"
    return reply[3]


# ---- misc ------------------------------------------------------------------

def nested(depth):
    """A msgpack value nested `depth` arrays deep (0x91 = fixarray of 1)."""
    return b"\x91" * depth + b"\xc0"


def raw_array32(count, tail=b""):
    """An array32 header claiming `count` elements, followed by tail."""
    return b"\xdd" + count.to_bytes(4, "big") + tail


def packb(obj):
    return msgpack.packb(obj, use_bin_type=True)


def settle(seconds=0.3):
    """A short pause where the test proves an absence (no ack, no file)."""
    time.sleep(seconds)


# ---- agent audit (read from the agent's LMDB with mdb_dump) ------------------

def _mdb_unescape(line):
    out = bytearray()
    i = 0
    while i < len(line):
        ch = line[i]
        if ch == "\\":
            if line[i + 1] == "\\":
                out.append(0x5C)
                i += 2
            else:
                out.append(int(line[i + 1:i + 3], 16))
                i += 3
        else:
            out.append(ord(ch))
            i += 1
    return bytes(out)


def agent_audit(agent):
    """The agent's audit records as dicts (actor, action, object, result,
    detail), read with `mdb_dump -s audit` in its hex format (the printable
    format's escaping is ambiguous for bytes >= 0x80); None without mdb_dump."""
    if shutil.which("mdb_dump") is None:
        return None
    r = subprocess.run(["mdb_dump", "-s", "audit", os.path.join(agent.data_dir, "store")],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r.stderr
    body = r.stdout.split("HEADER=END\n", 1)[1].split("DATA=END", 1)[0]
    lines = [ln[1:] for ln in body.splitlines() if ln.startswith(" ")]
    rows = []
    for value in lines[1::2]:
        text = bytes.fromhex(value)[64:].decode("utf-8", "replace")
        f = text.split("\t")
        if len(f) >= 6:
            rows.append(dict(zip(("time_ms", "actor", "action", "object", "result"), f[:5]),
                             detail="\t".join(f[5:])))
    return rows
