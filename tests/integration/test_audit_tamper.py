"""Tamper evidence of the broker's audit log (PROTOCOL.md 8, issue 4 item 6).

A broker does real work (two agents, deliveries, signed checkpoints), then
stops. Each case takes a fresh copy of its store and tampers with the audit
log the way someone with write access to data.mdb could, using only the
LMDB tools: `mdb_dump -a` (every database, hex) -> edit -> `mdb_load` into an
empty environment, which then replaces the copy's store. (The tools can
replace keys in place but not delete them, so every case, the untouched
control included, goes through the same rebuild.) The broker is started on
the tampered copy -- it must start, it refuses nothing -- and
`dxbctl audit verify` must fail naming the exact first broken entry.

The export half re-verifies the chain outside dxb: it recomputes every hash
from the exported fields (hash = BLAKE2b-256(prev_hash || be64(seq) || text),
text = "time_ms\\tactor\\taction\\tobject\\tresult\\tdetail", as in
common/dxb_audit.c) and checks the checkpoint signatures with PyNaCl.

Needs lmdb-utils (mdb_dump, mdb_load) and python3-nacl.
"""
import hashlib
import json
import os
import shutil
import subprocess
import threading

import msgpack
import pytest
import zmq
from zmq.utils import z85

from dxbharness import BIN, wait_until

DATASET = "hr.employees"
# Checkpoints often enough that a short run has several of them.
AUDIT_CFG = {"checkpoint_records": 5, "checkpoint_s": 1}

pytestmark = pytest.mark.skipif(
    shutil.which("mdb_dump") is None or shutil.which("mdb_load") is None,
    reason="lmdb-utils (mdb_dump, mdb_load) not installed")


# ---- the store, through the LMDB tools --------------------------------------

def dump_env(store):
    """Every named database of the environment: [(name, header_lines, [(k, v)])]."""
    r = subprocess.run(["mdb_dump", "-a", store], capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    dbs, header, pairs, name, in_data = [], [], [], None, False
    pending = None
    for line in r.stdout.decode("ascii").splitlines():
        if not in_data:
            if line == "HEADER=END":
                in_data = True
            else:
                header.append(line)
                if line.startswith("database="):
                    name = line[len("database="):]
            continue
        if line == "DATA=END":
            dbs.append((name, header, pairs))
            header, pairs, name, in_data = [], [], None, False
            continue
        assert line.startswith(" "), line
        raw = bytes.fromhex(line[1:])
        if pending is None:
            pending = raw
        else:
            pairs.append((pending, raw))
            pending = None
    assert not in_data and pending is None, "truncated mdb_dump output"
    return dbs


def load_env(store, dbs):
    """Builds a new environment in the empty directory store from dbs."""
    lines = []
    for _, header, pairs in dbs:
        lines += header + ["HEADER=END"]
        for k, v in pairs:
            lines += [" " + k.hex(), " " + v.hex()]
        lines.append("DATA=END")
    os.makedirs(store, exist_ok=True)
    r = subprocess.run(["mdb_load", store], input="\n".join(lines).encode() + b"\n",
                       capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr


def db_pairs(dbs, name):
    for n, _, pairs in dbs:
        if n == name:
            return pairs
    raise AssertionError(f"no database {name!r} in the dump")


def be64(n):
    return n.to_bytes(8, "big")


def seq_of(key):
    return int.from_bytes(key, "big")


# ---- the chain, recomputed outside dxb --------------------------------------

def blake2b_256(*parts):
    h = hashlib.blake2b(digest_size=32)
    for p in parts:
        h.update(p)
    return h.digest()


def record_text(row):
    """The record's text from exported fields (raw_hex when dxb says the
    fields do not give it back)."""
    if "raw_hex" in row:
        return bytes.fromhex(row["raw_hex"])
    return "\t".join([str(row["time_ms"]), row["actor"], row["action"], row["object"],
                      row["result"], row["detail"]]).encode("utf-8")


def verify_rows(rows, first_prev=None):
    """Recomputes the chain of exported rows (consecutive seqs). first_prev:
    the expected prev_hash of the first row (None: take it as given)."""
    prev = first_prev
    for i, row in enumerate(rows):
        if i > 0:
            assert row["seq"] == rows[i - 1]["seq"] + 1, f"gap before seq {row['seq']}"
        link = bytes.fromhex(row["prev_hash"])
        if prev is not None:
            assert link == prev, f"seq {row['seq']}: prev_hash does not link"
        got = blake2b_256(link, be64(row["seq"]), record_text(row))
        assert got.hex() == row["hash"], f"seq {row['seq']}: hash mismatch"
        prev = got


def check_checkpoint_signature(cp, broker_public_key):
    import nacl.signing  # python3-nacl

    assert cp["signer"] == broker_public_key
    digest = blake2b_256(b"dxb-audit-cp-1", be64(cp["seq"]), bytes.fromhex(cp["hash"]),
                         be64(cp["time_ms"]))
    nacl.signing.VerifyKey(z85.decode(cp["signer"])).verify(digest, bytes.fromhex(cp["sig"]))


# ---- a broker that did some work --------------------------------------------

def export(h, *args, broker=None):
    out = h.dxbctl("audit", "export", *args, json=False, broker=broker)
    return [json.loads(line) for line in out.stdout.splitlines()]


def verify(h, broker=None):
    """(exit code, report row, stderr) of `dxbctl audit verify --json`."""
    out = h.dxbctl("audit", "verify", "--json", json=False, check=False, broker=broker)
    rows = json.loads(out.stdout) if out.stdout.strip() else None
    assert rows and len(rows) == 1, (out.returncode, out.stdout, out.stderr)
    return out.returncode, rows[0], out.stderr


def checkpoints(h, broker=None):
    return h.dxbctl("audit", "checkpoints", "--n", "1000", broker=broker)


def head_is_signed(h):
    cps = checkpoints(h)
    tail = h.audit(1)
    return bool(cps) and bool(tail) and cps[-1]["seq"] == tail[-1]["seq"]


@pytest.fixture
def worked(h):
    """A stopped broker whose log holds a few dozen records of real traffic
    and several signed checkpoints. Returns (nodes, broker, store dir)."""
    a, c = h.keygen("sq.hrss"), h.keygen("sq.civil")
    nodes = [a, c]
    b = h.broker(nodes, audit=AUDIT_CFG)
    sender = h.agent(a, b, datasets=[{"id": DATASET, "recipients": ["sq.civil"]}])
    receiver = h.agent(c, b)
    h.wait_connected("sq.hrss")
    h.wait_connected("sq.civil")
    for rnd in range(3):
        for i in range(4):
            sender.drop(DATASET, f"r{rnd}-{i}.csv", f"round {rnd} file {i}\n".encode() * 50)
        wait_until(lambda n=4 * (rnd + 1): receiver.inbox_count(DATASET) >= n, 30,
                   what=f"round {rnd} delivered")
        # The broker signs the head within a second or two of the last record.
        wait_until(lambda: head_is_signed(h), 15, interval=0.2, what="checkpoint of the head")
    sender.stop()
    receiver.stop()
    b.stop()
    return nodes, b, os.path.join(b.data_dir, "store")


def tampered_broker(h, nodes, store, name, tamper):
    """A broker on a copy of store whose databases went through tamper(dbs);
    started, and it must start."""
    dbs = dump_env(store)
    tamper(dbs)
    b = h.broker(nodes, name=name, start=False, audit=AUDIT_CFG)
    load_env(os.path.join(b.data_dir, "store"), dbs)
    b.start()
    return b


def audit_pairs(dbs):
    pairs = db_pairs(dbs, "audit")
    assert all(len(k) == 8 for k, _ in pairs)
    return pairs


# ---- tamper cases ------------------------------------------------------------

def _change_byte(k):
    def tamper(dbs):
        pairs = audit_pairs(dbs)
        i = next(i for i, (key, _) in enumerate(pairs) if seq_of(key) == k)
        key, val = pairs[i]
        # One character of the detail field, as an editor would change it.
        pos = len(val) - 1
        new = b"X" if val[pos:pos + 1] != b"X" else b"Y"
        pairs[i] = (key, val[:pos] + new + val[pos + 1:])
    return tamper


def _delete(k):
    def tamper(dbs):
        pairs = audit_pairs(dbs)
        pairs[:] = [(key, v) for key, v in pairs if seq_of(key) != k]
    return tamper


def _swap(k):
    def tamper(dbs):
        pairs = audit_pairs(dbs)
        i = next(i for i, (key, _) in enumerate(pairs) if seq_of(key) == k)
        (k1, v1), (k2, v2) = pairs[i], pairs[i + 1]
        pairs[i], pairs[i + 1] = (k1, v2), (k2, v1)
    return tamper


def _truncate_after(keep):
    def tamper(dbs):
        pairs = audit_pairs(dbs)
        pairs[:] = [(key, v) for key, v in pairs if seq_of(key) <= keep]
    return tamper


def _rewrite_from(k):
    """Changes record k and recomputes every hash after it: the chain walk
    passes, only the signed checkpoints can tell."""
    def tamper(dbs):
        pairs = audit_pairs(dbs)
        prev = bytes(32)
        for i, (key, val) in enumerate(pairs):
            seq = seq_of(key)
            if seq < k:
                prev = val[:32]
                continue
            text = val[64:]
            if seq == k:
                text = text[:-1] + (b"X" if text[-1:] != b"X" else b"Y")
            h = blake2b_256(prev, key, text)
            pairs[i] = (key, h + prev + text)
            prev = h
    return tamper


def _forge_signature(cp_seq):
    def tamper(dbs):
        pairs = db_pairs(dbs, "auditcp")
        i = next(i for i, (key, _) in enumerate(pairs) if seq_of(key) == cp_seq)
        key, val = pairs[i]
        pairs[i] = (key, val[:-1] + bytes([val[-1] ^ 0x01]))
    return tamper


def _original_facts(store):
    dbs = dump_env(store)
    records = {seq_of(k): v for k, v in audit_pairs(dbs)}
    cps = sorted(seq_of(k) for k, _ in db_pairs(dbs, "auditcp"))
    return records, cps


def test_untampered_copy_verifies_with_its_checkpoints(h, worked):
    nodes, _, store = worked
    records, cps = _original_facts(store)
    assert len(records) >= 30, f"only {len(records)} audit records"
    assert len(cps) >= 3, f"only {len(cps)} checkpoints"
    b = tampered_broker(h, nodes, store, "control", lambda dbs: None)
    rc, row, err = verify(h, broker=b)
    assert rc == 0, err
    assert row["ok"] is True and row["first_bad_seq"] == 0 and row["reason"] == ""
    assert row["records"] == row["head_seq"] >= len(records) + 1  # + the new "start"
    assert row["checkpoints"] == row["checkpoints_ok"] >= len(cps)
    assert row["last_checkpoint_seq"] >= cps[-1] and row["last_checkpoint_ms"] > 0
    human = h.dxbctl("audit", "verify", json=False, broker=b)
    assert "last_checkpoint_seq" in human.stdout.lower()


@pytest.mark.parametrize("case", ["change-byte", "delete", "swap"])
def test_verify_names_the_first_broken_record(h, worked, case):
    nodes, _, store = worked
    records, _ = _original_facts(store)
    k = len(records) // 2
    tamper, reason = {
        "change-byte": (_change_byte(k), "hash-mismatch"),
        "delete": (_delete(k), "missing-record"),
        "swap": (_swap(k), "hash-mismatch"),
    }[case]
    b = tampered_broker(h, nodes, store, case, tamper)
    assert b.alive(), "the broker must start on a tampered store"
    rc, row, err = verify(h, broker=b)
    assert rc == 1, (row, err)
    assert row["ok"] is False
    assert row["first_bad_seq"] == k, (k, row, err)
    assert row["reason"] == reason, row
    assert row["records"] == k - 1
    assert f"record {k}:" in err and "EINTEGRITY" in err, err
    # The log still works: the broker appended its "start" record after it.
    assert h.audit(1, broker=b)[-1]["action"] == "start"


def test_verify_names_the_first_record_after_a_cut_below_a_checkpoint(h, worked):
    nodes, _, store = worked
    records, cps = _original_facts(store)
    cp = cps[len(cps) // 2]
    keep = cp - 2
    assert keep >= 1 and len(records) > cp
    b = tampered_broker(h, nodes, store, "truncate", _truncate_after(keep))
    rc, row, err = verify(h, broker=b)
    assert rc == 1, (row, err)
    # Records keep+1.. are gone; the broker wrote a new one at keep+1 after
    # restarting, which is newer than the checkpoint that should cover it.
    assert row["first_bad_seq"] == keep + 1, (keep, cps, row, err)
    assert row["reason"] in ("chain-shorter-than-checkpoint", "chain-differs-from-checkpoint")
    assert row["bad_checkpoint_seq"] == min(c for c in cps if c > keep)
    assert f"record {keep + 1}:" in err, err


def test_verify_catches_a_rewritten_chain_at_its_checkpoint(h, worked):
    nodes, _, store = worked
    records, cps = _original_facts(store)
    k = max(cps[0] + 1, cps[1] - 1)  # below the checkpoint, above the one before
    b = tampered_broker(h, nodes, store, "rewrite", _rewrite_from(k))
    rc, row, err = verify(h, broker=b)
    assert rc == 1, (row, err)
    # The hashes are consistent again; the first checkpoint at or above k
    # no longer matches, and nothing earlier can be blamed.
    assert row["reason"] == "chain-differs-from-checkpoint", row
    assert row["first_bad_seq"] == cps[1] == row["bad_checkpoint_seq"], (k, cps, row)
    assert f"records {cps[0] + 1}..{cps[1]}" in err, err


def test_verify_rejects_a_forged_checkpoint_signature(h, worked):
    nodes, _, store = worked
    _, cps = _original_facts(store)
    b = tampered_broker(h, nodes, store, "forge", _forge_signature(cps[1]))
    rc, row, err = verify(h, broker=b)
    assert rc == 1, (row, err)
    assert row["reason"] == "checkpoint-signature-bad", row
    assert row["first_bad_seq"] == cps[1] == row["bad_checkpoint_seq"]
    assert row["checkpoints_ok"] == 1


# ---- export ------------------------------------------------------------------

def test_export_reverifies_outside_dxb_and_since_filters(h, worked):
    nodes, _, store = worked
    b = tampered_broker(h, nodes, store, "export", lambda dbs: None)
    rows = export(h, broker=b)
    assert [r["seq"] for r in rows] == list(range(1, len(rows) + 1))
    assert {"seq", "time", "time_ms", "actor", "action", "object", "result", "detail", "hash",
            "prev_hash"} <= set(rows[0])
    verify_rows(rows, first_prev=bytes(32))
    actions = {r["action"] for r in rows}
    assert {"start", "connect", "accepted", "delivered", "stop"} <= actions, actions

    # The checkpoints sign hashes that the export holds, under the broker's key.
    by_seq = {r["seq"]: r for r in rows}
    cps = checkpoints(h, broker=b)
    assert len(cps) >= 3
    for cp in cps:
        assert cp["valid"] is True
        check_checkpoint_signature(cp, b.public_key)
        assert by_seq[cp["seq"]]["hash"] == cp["hash"]

    # --since: only records at or after the time, the chain still links.
    since = rows[len(rows) // 2]["time_ms"]
    after = export(h, "--since", str(since), broker=b)
    assert after and all(r["time_ms"] >= since for r in after)
    assert [r["seq"] for r in after] == [r["seq"] for r in rows if r["time_ms"] >= since]
    verify_rows(after, first_prev=bytes.fromhex(by_seq[after[0]["seq"] - 1]["hash"]))
    # The same instant as ISO 8601, and an --until that ends before it.
    iso = rows[len(rows) // 2]["time"]
    assert [r["seq"] for r in export(h, "--since", iso, broker=b)] == [r["seq"] for r in after]
    before = export(h, "--until", str(since), "--format", "jsonl", broker=b)
    assert before and all(r["time_ms"] < since for r in before)
    assert len(before) + len(after) == len(rows)
    # Relative: everything happened within the last day.
    assert len(export(h, "--since", "24h", broker=b)) >= len(rows)


def test_export_pages_through_the_admin_protocol(h, worked):
    nodes, _, store = worked
    b = tampered_broker(h, nodes, store, "pages", lambda dbs: None)
    full = export(h, broker=b)
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(b.admin)
    try:
        got, from_seq, pages = [], 1, 0
        while True:
            sock.send(msgpack.packb([1, 100, "audit.export", ["0", "0", str(from_seq), "7"]]))
            assert sock.poll(10000), "no answer to audit.export"
            rep = msgpack.unpackb(sock.recv(), raw=False)
            assert rep[:3] == [1, 101, 0], rep[:4]
            assert len(rep[4]) <= 7
            got += rep[4]
            pages += 1
            if rep[3] == "end":
                break
            assert rep[3].startswith("next="), rep[3]
            from_seq = int(rep[3][5:])
        sock.send(msgpack.packb([1, 100, "audit.export", ["0", "0", "1", "100001"]]))
        assert sock.poll(10000)
        assert msgpack.unpackb(sock.recv(), raw=False)[2] != 0, "limit above 100000 accepted"
    finally:
        sock.close()
    assert pages >= len(full) // 7
    # Records appended since (none: nothing is connected) would only add.
    assert [r["seq"] for r in got][:len(full)] == [r["seq"] for r in full]
    assert got[:len(full)] == full


class _FakeExportAdmin:
    """Answers audit.export with three pages, to watch dxbctl page."""

    def __init__(self, endpoint):
        self.endpoint = endpoint
        self.requests = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._ready = threading.Event()

    def __enter__(self):
        self._thread.start()
        self._ready.wait(5)
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5)

    def _serve(self):
        ctx = zmq.Context()
        sock = ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.bind(self.endpoint)
        self._ready.set()
        pages = {"1": ("next=3", [1, 2]), "3": ("next=9", []), "9": ("end", [9])}
        try:
            while not self._stop.is_set():
                if not sock.poll(50):
                    continue
                ident, frame = sock.recv_multipart()
                req = msgpack.unpackb(frame, raw=False)
                self.requests.append(req)
                msg, seqs = pages[req[3][2]]
                rows = [{"seq": s, "time_ms": 1000 * s, "detail": "宿迁\x1b"} for s in seqs]
                sock.send_multipart([ident, msgpack.packb([1, 101, 0, msg, rows])])
        finally:
            sock.close()
            ctx.term()


def test_dxbctl_export_follows_the_page_cursor(tmp_path):
    endpoint = f"ipc://{tmp_path}/admin.sock"
    with _FakeExportAdmin(endpoint) as fake:
        r = subprocess.run([BIN["dxbctl"], "--admin", endpoint, "audit", "export", "--since",
                            "2026-11-25T10:00:00Z", "--until", "1795604400000"],
                           capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert [json.loads(ln)["seq"] for ln in lines] == [1, 2, 9]
    assert json.loads(lines[0])["detail"] == "宿迁\x1b"  # escaped in JSON, never raw
    assert "\x1b" not in r.stdout
    assert [req[2:] for req in fake.requests] == [
        ["audit.export", ["1795600800000", "1795604400000", "1", "10000"]],
        ["audit.export", ["1795600800000", "1795604400000", "3", "10000"]],
        ["audit.export", ["1795600800000", "1795604400000", "9", "10000"]],
    ]


@pytest.mark.parametrize("args", [
    ["audit", "export", "--since", "yesterday"],
    ["audit", "export", "--since", "2026-11-25T10:00:00"],  # no zone
    ["audit", "export", "--since", "2026-02-30T10:00:00Z"],
    ["audit", "export", "--since", "2h", "--until", "3h"],
    ["audit", "export", "--format", "csv"],
    ["audit", "verify", "--since", "1h"],
    ["audit", "tail", "--until", "1h"],
    ["audit", "export", "--n", "5"],
])
def test_dxbctl_audit_usage_errors(args):
    r = subprocess.run([BIN["dxbctl"], "--admin", "ipc:///nonexistent/admin.sock", *args],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 64, (r.returncode, r.stderr)
    assert r.stdout == "" and len(r.stderr.splitlines()) == 1
