"""D4, ack-after-fsync ordering (reliability-anchors.md (c); PROTOCOL.md 7.2.3
and 7.3.2): no PUBACK (broker) and no DACK (receiving agent) leaves the process
before the LMDB commit that holds it is on disk.

The broker and the receiving agent run under strace; 5,000 messages go from a
sending agent through the broker to the receiving agent (spool inbox); then
the strace logs are checked: at least 5,000 acked results each for the broker
(PUBACK) and the agent (DACK). The check works on the wire, so it sees every
ack, including those that ZeroMQ hands from the main thread to its I/O thread
without any syscall (its pipes signal the I/O thread only when it sleeps):

- Stream: each TCP connection's bytes are rebuilt from the I/O thread's
  recvfrom/sendto and cut into ZMTP frames. With CURVE every message is one
  "MESSAGE" frame whose plaintext is (frame size - 33) bytes. Contents are
  encrypted, but sizes are not: an ack (PUBACK or DACK, msgpack
  [1, type, [[bin16 id, code], ...]]) of k results is 4+20k bytes (k < 16) or
  6+20k bytes. Data frames (PUBLISH into the broker, DELIVER into the agent)
  are the inbound frames of >= 80 bytes. The connection checked is the one
  that carries inbound data frames; each data frame is answered by exactly one
  ack frame, in order (brk_server.c s_phase_b, agt_link.c s_on_deliver). The
  checker insists on that 1:1 pairing and on the acked-result total equalling
  the messages sent, so a misclassified frame fails the test instead of
  weakening it.
- Durable commit: on the thread that writes the LMDB file (data.mdb, found by
  openat), a commit is durable when its meta page (a write at an offset below
  two pages) went to an O_DSYNC descriptor with no unsynced data page pending,
  or when an fdatasync/fsync/msync of the file followed the meta write.
- Rule: for data frame i (fully received at log position R_i) and its ack
  (first byte handed to sendto at position S_i) there must be a durable
  commit that started after R_i and completed before S_i. A violation is an
  ack with no such commit. strace -f stops every thread at each traced
  syscall, so log order respects causality across threads.
- The receiving agent's first two inbound messages (WELCOME, DIRECTORY) are
  not data. Agent only: between R_i and S_i there must also be an fsync/fdatasync of a
  file that is not the LMDB store (the inbox file / directory).

The test also shows that the check can fail: with `store: sync: fast`
(MDB_NOSYNC) every ack is reported. That control run needs no large sample
(every one of its acks is a violation), so it sends 1,000 messages.
"""
import os
import re
import shutil
import subprocess
import time

import pytest

from dxbharness import seq_payload, wait_until

N_MESSAGES = {"durable": 5000, "fast": 1000}  # per run; the durable run is the sample
TRACE = "fsync,fdatasync,msync,sendto,recvfrom,sendmsg,write,writev,pwrite64,pwritev,openat"
STRACE_OPTS = ["-f", "-qq", "-tt", "-xx", "-s", "1048576", "-e", "signal=none",
               "-e", "verbose=!writev,pwritev", "-e", "trace=" + TRACE]
META_LIMIT = 2 * 4096  # LMDB meta pages live in the first two pages of data.mdb
CURVE_MESSAGE = b"\x07MESSAGE"
CURVE_OVERHEAD = 1 + 7 + 8 + 16 + 1  # name length, "MESSAGE", nonce, MAC, flags
DATA_MIN = 80  # plaintext bytes: smaller inbound frames are HELLO/PING/CREDIT


def _strace_usable():
    if shutil.which("strace") is None:
        return "strace is not installed"
    try:
        out = subprocess.run(["strace", "-f", "-qq", "-o", "/dev/null", "true"],
                             capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"strace does not run: {exc}"
    if out.returncode != 0:
        return f"ptrace not permitted here (strace rc={out.returncode}: {out.stderr.strip()[:200]})"
    return None


# ---- strace log parsing ------------------------------------------------------

_LINE = re.compile(r"^(\d+) +\d\d:\d\d:\d\d\.\d+ (.*)$")
_RESUMED = re.compile(r"^<\.\.\. (\w+) resumed>(.*)$")
_CALL = re.compile(r"^(\w+)\((.*)$")
_RET = re.compile(r"\) += (-?\d+|0x[0-9a-f]+)(?: .*)?$")
_STR = re.compile(r'"((?:\\x[0-9a-f]{2})*)"(\.\.\.)?')


def _hexstr(text):
    return bytes.fromhex(text.replace("\\x", ""))


class Call:
    __slots__ = ("tid", "name", "args", "ret", "entry", "exit")

    def __init__(self, tid, name, args, ret, entry, exit_):
        self.tid, self.name, self.args, self.ret, self.entry, self.exit = \
            tid, name, args, ret, entry, exit_

    def fd(self):
        return int(self.args.split(",", 1)[0])

    def data(self):
        """The first string argument (with -xx: every byte as \\xNN)."""
        m = _STR.search(self.args)
        if m is None:
            return b""
        if m.group(2):
            raise AssertionError(f"strace truncated a buffer: {self.name} at line {self.entry}")
        return _hexstr(m.group(1))


def parse_strace(path):
    """Completed syscalls in log order, with entry and exit line positions
    (unfinished/resumed pairs joined)."""
    calls, pending = [], {}
    with open(path, encoding="ascii", errors="replace") as f:
        for pos, line in enumerate(f):
            m = _LINE.match(line.rstrip("\n"))
            if not m:
                continue
            tid, rest = int(m.group(1)), m.group(2)
            if rest.endswith("<unfinished ...>"):
                pending[tid] = (pos, rest[:-len("<unfinished ...>")])
                continue
            r = _RESUMED.match(rest)
            if r:
                if tid not in pending:
                    continue
                entry, head = pending.pop(tid)
                rest = head + r.group(2)
            else:
                entry = pos
            c = _CALL.match(rest)
            rm = _RET.search(rest)
            if not c or not rm:
                continue  # "+++ exited", "= ?" at exit
            ret = int(rm.group(1), 0)
            args = rest[len(c.group(1)) + 1:rm.start()].strip()
            calls.append(Call(tid, c.group(1), args, ret, entry, pos))
    return calls


# ---- durable commits ---------------------------------------------------------

_OPENAT = re.compile(r'^AT_FDCWD, "((?:\\x[0-9a-f]{2})*)", ([A-Z_|]+)')
_OFFSET = re.compile(r", (\d+)$")


def durable_commits(calls):
    """[(entry, exit)] of LMDB commits that reached the disk, and the set of
    descriptors of the store, on the thread that writes data.mdb."""
    mdb = {}  # fd -> opened with O_DSYNC/O_SYNC
    for c in calls:
        if c.name == "openat" and c.ret >= 0:
            m = _OPENAT.match(c.args)
            if m and _hexstr(m.group(1)).endswith(b"/data.mdb"):
                mdb[c.ret] = "O_DSYNC" in m.group(2) or "O_SYNC" in m.group(2)
    commits = []
    data_dirty = meta_dirty = False
    writes = ("write", "writev", "pwrite64", "pwritev")
    for c in calls:
        if c.name in writes and c.ret >= 0 and c.fd() in mdb:
            off = _OFFSET.search(c.args) if c.name.startswith("p") else None
            is_meta = off is not None and int(off.group(1)) < META_LIMIT
            if is_meta and mdb[c.fd()] and not data_dirty:
                commits.append((c.entry, c.exit))
            elif is_meta:
                meta_dirty = True
            else:
                data_dirty = True
        elif (c.name in ("fdatasync", "fsync") and c.ret == 0 and c.fd() in mdb) or \
                (c.name == "msync" and c.ret == 0):
            data_dirty = False
            if meta_dirty:
                meta_dirty = False
                commits.append((c.entry, c.exit))
    return commits, set(mdb)


# ---- ZMTP streams ------------------------------------------------------------

class Stream:
    """One direction of one TCP connection, cut into ZMTP frames. A frame's
    position is that of the call that carried its first byte (first=True) or
    its last byte."""

    def __init__(self, first):
        self.first = first
        self.buf = b""
        self.base = 0  # stream offset of buf[0]
        self.chunks = []  # (stream offset, position) of each call's data
        self.greeted = False
        self.frames = []  # (plaintext size, position) of CURVE MESSAGE frames

    def _pos_of(self, offset):
        while len(self.chunks) > 1 and self.chunks[1][0] <= offset:
            self.chunks.pop(0)
        return self.chunks[0][1]

    def feed(self, data, pos):
        self.chunks.append((self.base + len(self.buf), pos))
        self.buf += data
        while True:
            if not self.greeted or self.buf[:1] == b"\xff":  # (re)connect: greeting
                if len(self.buf) < 64:
                    return
                assert self.buf[0] == 0xFF and self.buf[9] == 0x7F, "not a ZMTP greeting"
                self.buf, self.base, self.greeted = self.buf[64:], self.base + 64, True
                continue
            if len(self.buf) < 2:
                return
            flags = self.buf[0]
            if flags & 0x02:
                if len(self.buf) < 9:
                    return
                size, head = int.from_bytes(self.buf[1:9], "big"), 9
            else:
                size, head = self.buf[1], 2
            if len(self.buf) < head + size:
                return
            body = self.buf[head:head + size]
            if body.startswith(CURVE_MESSAGE):
                self.frames.append((size - CURVE_OVERHEAD,
                                    self._pos_of(self.base) if self.first else pos))
            self.buf, self.base = self.buf[head + size:], self.base + head + size


def ack_results(size):
    """k when a plaintext of this size is a results frame of k results, else 0."""
    if size >= 24 and (size - 4) % 20 == 0 and (size - 4) // 20 < 16:
        return (size - 4) // 20
    if (size - 6) % 20 == 0 and (size - 6) // 20 >= 16:
        return (size - 6) // 20
    return 0


def connection_frames(calls, tids):
    """{fd: (inbound Stream, outbound Stream)} for the I/O threads' sockets.
    Inbound frames are placed at the exit of the recvfrom that completed them,
    outbound ones at the entry of the sendto that carried their first byte."""
    conns = {}
    for c in calls:
        if c.tid not in tids or c.name not in ("recvfrom", "sendto") or c.ret <= 0:
            continue
        inb, outb = conns.setdefault(c.fd(), (Stream(first=False), Stream(first=True)))
        if c.name == "recvfrom":
            inb.feed(c.data()[:c.ret], c.exit)
        else:
            outb.feed(c.data()[:c.ret], c.entry)
    return conns


def check_log(path, who, expect_results, agent=False):
    """Runs the D4 check on one strace log; returns a dict of counts. For an
    agent the first two inbound messages are WELCOME and DIRECTORY (7.1), not
    data, and the inbox file fsync is checked as well."""
    calls = parse_strace(path)
    commits, mdb_fds = durable_commits(calls)
    store_tids = {c.tid for c in calls
                  if c.name in ("pwrite64", "pwritev", "writev") and c.ret >= 0 and c.fd() in mdb_fds}
    assert len(store_tids) == 1, f"{who}: expected one LMDB writer thread, saw {store_tids}"
    io_tids = {c.tid for c in calls if c.name in ("recvfrom", "sendto")} - store_tids
    conns = connection_frames(calls, io_tids)
    data_conns = [(fd, s) for fd, s in conns.items()
                  if any(size >= DATA_MIN and not ack_results(size) for size, _ in s[0].frames)]
    assert len(data_conns) == 1, \
        f"{who}: expected one connection carrying data frames, saw fds {[fd for fd, _ in data_conns]}"
    _fd, (inb, outb) = data_conns[0]
    data = [pos for size, pos in inb.frames[2 if agent else 0:] if size >= DATA_MIN]
    acks = [(ack_results(size), pos) for size, pos in outb.frames
            if pos > data[0] and ack_results(size)]
    assert len(acks) == len(data), \
        f"{who}: {len(data)} data frames but {len(acks)} ack frames: cannot pair them"
    total = sum(k for k, _ in acks)
    assert total == expect_results, f"{who}: acks carry {total} results, expected {expect_results}"
    file_syncs = [c.entry for c in calls
                  if c.tid in store_tids and c.name in ("fsync", "fdatasync") and c.ret == 0
                  and c.fd() not in mdb_fds]
    violations, no_file_sync = [], 0
    ci = 0
    fi = 0
    for r, (k, s) in zip(data, acks):
        while ci < len(commits) and commits[ci][0] <= r:
            ci += 1
        if not (ci < len(commits) and commits[ci][1] < s):
            violations.append((r, s, k))
        if agent:
            while fi < len(file_syncs) and file_syncs[fi] <= r:
                fi += 1
            if not (fi < len(file_syncs) and file_syncs[fi] < s):
                no_file_sync += 1
    return {"who": who, "ack_frames": len(acks), "acked_results": total,
            "durable_commits": len(commits), "violations": len(violations),
            "violating_results": sum(k for _, _, k in violations),
            "acks_without_file_fsync": no_file_sync, "first_violations": violations[:3]}


# ---- the run -----------------------------------------------------------------

def _run(h, mode, n_messages):
    """Sends n_messages through a traced broker to a traced receiving agent
    (both with `store: sync: mode`); returns the two strace log paths."""
    a, c = h.keygen(f"sq.snd-{mode}"), h.keygen(f"sq.rcv-{mode}")
    # No redelivery during the run: a redelivered duplicate is acked without
    # a new commit (it was committed before), which the rule cannot tell apart.
    b = h.broker([a, c], name=f"broker-{mode}", start=False, store={"sync": mode},
                 delivery={"redeliver_ms": 120000, "max_attempts": 50})
    blog = os.path.join(h.dir, f"broker-{mode}.strace")
    b.prefix = ["strace", *STRACE_OPTS, "-o", blog]
    b.start()
    sender = h.agent(a, b, datasets=[{"id": "hr.employees", "recipients": [c.node]}])
    receiver = h.agent(c, b, start=False, store={"sync": mode})
    alog = os.path.join(h.dir, f"agent-{mode}.strace")
    receiver.prefix = ["strace", *STRACE_OPTS, "-o", alog]
    receiver.start()
    h.wait_connected(a.node, broker=b)
    h.wait_connected(c.node, broker=b)
    api = sender.client()
    # Small bursts (1 to 4 messages), so that there are many PUBLISH frames,
    # commits and acks rather than a few frames of 256 envelopes.
    i = 0
    while i < n_messages:
        burst = min(1 + i % 4, n_messages - i)
        reqs = [api.publish_async("hr.employees", [c.node], f"m-{j:05d}.txt",
                                  seq_payload(mode, a.node, j)) for j in range(i, i + burst)]
        for req in reqs:
            code, _, text = api.wait_result(req, 30)
            assert code == 0, f"publish refused: {code} {text}"
        i += burst
    wait_until(lambda: receiver.inbox_count("hr.employees") >= n_messages, 60, interval=0.2,
               what=f"{n_messages} files in the inbox")
    h.wait_queue(c.node, 0, timeout=20, broker=b)
    for d in (receiver, sender, b):
        assert d.stop() == 0, f"{d.name} did not exit cleanly"
    return blog, alog


@pytest.mark.agent
def test_every_ack_follows_the_fsync_of_its_commit(h):
    why = _strace_usable()
    if why:
        pytest.skip(f"D4 needs strace: {why}")
    t0 = time.monotonic()
    results = {}
    for mode in ("fast", "durable"):
        n = N_MESSAGES[mode]
        t_run = time.monotonic()
        blog, alog = _run(h, mode, n)
        t_check = time.monotonic()
        results[mode] = (check_log(blog, f"broker/{mode}", n),
                         check_log(alog, f"agent/{mode}", n, agent=True))
        print(f"D4 {mode}: {n} messages sent in {t_check - t_run:.1f}s, "
              f"logs checked in {time.monotonic() - t_check:.1f}s")
    for pair in results.values():
        for r in pair:
            print(f"D4 {r['who']}: ack frames={r['ack_frames']} acked results={r['acked_results']} "
                  f"durable commits={r['durable_commits']} violations={r['violations']} "
                  f"(results {r['violating_results']}) "
                  f"acks without file fsync={r['acks_without_file_fsync']}")
    print(f"D4 took {time.monotonic() - t0:.1f}s")
    fb, fa = results["fast"]
    assert fb["violations"] > 0, f"the check missed MDB_NOSYNC on the broker: {fb}"
    assert fa["violations"] > 0, f"the check missed MDB_NOSYNC on the agent: {fa}"
    db, da = results["durable"]
    assert db["acked_results"] >= 5000 and da["acked_results"] >= 5000, "the sample is too small"
    assert db["violations"] == 0, f"broker PUBACK before its commit was synced: {db}"
    assert da["violations"] == 0, f"agent DACK before its commit was synced: {da}"
    assert da["acks_without_file_fsync"] == 0, f"agent DACK before the inbox file fsync: {da}"
