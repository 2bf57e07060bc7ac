"""Files of any size handed to the agent's local API as a stream (issue 6
item 1; PROTOCOL.md section 9, API_STREAM_BEGIN / DATA / END): they travel
as chunked transfers, arrive whole, are refused when the stream is corrupt or
malformed (nothing sent, nothing left behind), and memory stays bounded.

The big streams go through client/examples/dxb-send-file, so the C library
(dxb_client_publish_stream_file) is what is exercised; the refusals are
driven with raw frames so that the agent's own checks are what is tested."""
import hashlib
import json
import os
import subprocess

import msgpack
import pytest
import zmq

from dxbharness import BUILD, T_API_RESULT, HarnessError, wait_until

MiB = 1 << 20
BIG_STORE = {"map_size": "1GiB", "sync": "durable", "batch_max": 256}
AGENT_STORE = {"map_size": "512MiB", "sync": "durable"}
SEND_FILE = os.path.join(BUILD, "client", "dxb-send-file")
T_BEGIN, T_DATA, T_END = 45, 46, 47
OK, EPROTO, ETOOBIG, ENOROUTE, EINTEGRITY, EAGAIN, EINVAL = 0, 1, 4, 7, 11, 15, 18
RSS_LIMIT_KIB = 100 * 1024


def send_file_binary():
    """The example program; a missing build fails the test, never skips it."""
    if not os.access(SEND_FILE, os.X_OK):
        raise HarnessError(f"{SEND_FILE} is missing: build first (meson compile -C {BUILD})")
    return SEND_FILE


def pair(h, sender_overrides=None):
    s_key, r_key = h.keygen("sq.hrss"), h.keygen("sq.r0")
    b = h.broker([s_key, r_key], store=BIG_STORE)
    s = h.agent(s_key, b, store=AGENT_STORE, **(sender_overrides or {}))
    r = h.agent(r_key, b, store=AGENT_STORE)
    h.wait_connected("sq.hrss")
    h.wait_connected("sq.r0")
    # Recipients must be in the sender's directory (the broker sends it on connect).
    s.wait_log("AGT-DIRECTORY")
    return b, s, r


def write_random(path, size):
    """Writes size random bytes to path in pieces; returns the BLAKE2b-256."""
    h = hashlib.blake2b(digest_size=32)
    with open(path, "wb") as f:
        left = size
        while left:
            piece = os.urandom(min(left, 4 * MiB))
            h.update(piece)
            f.write(piece)
            left -= len(piece)
    return h.hexdigest()


def file_blake2b(path):
    h = hashlib.blake2b(digest_size=32)
    with open(path, "rb") as f:
        for piece in iter(lambda: f.read(4 * MiB), b""):
            h.update(piece)
    return h.hexdigest()


class SendFile:
    """One run of dxb-send-file: returncode, stdout, stderr, and hwm_kib, the
    largest VmHWM seen while it ran (sampled; VmHWM only grows, and exec
    resets it, so the parent's memory does not count as ru_maxrss would)."""

    def __init__(self, h, agent, path, *extra, timeout=300):
        out_path = os.path.join(h.dir, "send-file.out")
        err_path = os.path.join(h.dir, "send-file.err")
        argv = [send_file_binary(), "--api", agent.api, "--dataset", "hr.base", "--to", "sq.r0",
                *extra, path]
        self.hwm_kib = 0
        with open(out_path, "w") as out, open(err_path, "w") as err:
            proc = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        try:
            wait_until(lambda: self._sample(proc), timeout, interval=0.02,
                       what="dxb-send-file to exit")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        self.returncode = proc.returncode
        with open(out_path) as f:
            self.stdout = f.read()
        with open(err_path) as f:
            self.stderr = f.read()

    def _sample(self, proc):
        try:
            self.hwm_kib = max(self.hwm_kib, vm_hwm_kib(proc.pid))
        except (OSError, AssertionError):
            pass  # exiting: its memory is gone
        return proc.poll() is not None


def vm_hwm_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmHWM in /proc/{pid}/status")


def under_asan(pid):
    """True when the process carries AddressSanitizer, whose quarantine keeps
    freed memory resident: its memory use says nothing about the code's."""
    with open(f"/proc/{pid}/maps") as f:
        return "libasan" in f.read()


def arrived(agent, name):
    """(path, sidecar) once the file and its sidecar are in the inbox."""
    d = agent.inbox("hr.base")
    meta = os.path.join(d, name + ".dxbmeta")
    if not os.path.exists(meta):
        return None
    with open(meta, encoding="utf-8") as f:
        return os.path.join(d, name), json.load(f)


def stage_files(agent):
    d = os.path.join(agent.data_dir, "xfer", "stage")
    return os.listdir(d) if os.path.isdir(d) else []


def out_files(agent):
    d = os.path.join(agent.data_dir, "xfer", "out")
    return os.listdir(d) if os.path.isdir(d) else []


class RawStream:
    """An application speaking API_STREAM_* frames directly."""

    def __init__(self, h, agent):
        self.sock = h.track(h.zctx.socket(zmq.DEALER))
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(agent.api)

    def send(self, frame):
        self.sock.send(msgpack.packb(frame, use_bin_type=True))

    def result(self, req, timeout_s=15.0):
        """(code, msg_id bytes, text) of the next API_RESULT for req."""
        deadline_ms = int(timeout_s * 1000)
        while self.sock.poll(deadline_ms):
            f = msgpack.unpackb(self.sock.recv(), raw=False)
            if f[1] == T_API_RESULT and f[2] == req:
                return f[3], bytes(f[4]), f[5]
        raise HarnessError(f"no API_RESULT for request {req} within {timeout_s}s")

    def begin(self, req, name, size, recipients=("sq.r0",), dataset="hr.base"):
        self.send([1, T_BEGIN, req, dataset, list(recipients), name, size, 0])
        return self.result(req)

    def data(self, req, offset, data):
        self.send([1, T_DATA, req, offset, data])
        return self.result(req)

    def end(self, req, digest):
        self.send([1, T_END, req, digest])
        return self.result(req)


@pytest.mark.agent
@pytest.mark.smoke
def test_30_mib_stream_from_the_client_library_arrives_whole(h):
    b, s, r = pair(h)
    path = os.path.join(h.dir, "base-2026.bin")
    digest = write_random(path, 30 * MiB + 4321)
    out = SendFile(h, s, path, "--name", "base.bin")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"sent {path} xfer_id="), out.stdout
    xfer_id = out.stdout.strip().split("xfer_id=")[1]
    assert len(xfer_id) == 32
    got = wait_until(lambda: arrived(r, "base.bin"), 120, what="the streamed file")
    got_path, meta = got
    assert os.path.getsize(got_path) == 30 * MiB + 4321
    assert file_blake2b(got_path) == digest
    assert meta["blake2b256"] == digest
    assert meta["msg_id"] == xfer_id
    assert meta["sender"] == "sq.hrss"
    assert meta["chunks"] == 31
    s.wait_log("AGT-XFERSTART")
    # Nothing left behind at the sender once the broker has every chunk.
    assert stage_files(s) == []
    wait_until(lambda: out_files(s) == [], 30, what="the sender to drop its copy")


@pytest.mark.agent
@pytest.mark.smoke
def test_stream_with_a_wrong_hash_is_refused_and_nothing_is_sent(h):
    b, s, r = pair(h)
    c = RawStream(h, s)
    data = os.urandom(3 * MiB + 17)
    assert c.begin(1, "bad.bin", len(data))[0] == OK
    for off in range(0, len(data), MiB):
        assert c.data(1, off, data[off:off + MiB])[0] == OK
    assert len(stage_files(s)) == 1, "the stream's staging file"
    wrong = bytearray(hashlib.blake2b(data, digest_size=32).digest())
    wrong[5] ^= 1
    code, msg_id, text = c.end(1, bytes(wrong))
    assert code == EINTEGRITY, (code, text)
    assert msg_id == b""
    assert stage_files(s) == [] and out_files(s) == []
    # The stream is gone: a second END finds nothing.
    assert c.end(1, hashlib.blake2b(data, digest_size=32).digest())[0] == EINVAL
    # A good stream after it goes through; only it arrives.
    good = os.urandom(2 * MiB + 5)
    assert c.begin(2, "good.bin", len(good))[0] == OK
    assert c.data(2, 0, good)[0] == OK
    code, msg_id, text = c.end(2, hashlib.blake2b(good, digest_size=32).digest())
    assert code == OK and len(msg_id) == 16, (code, text)
    got_path, meta = wait_until(lambda: arrived(r, "good.bin"), 60, what="the good stream")
    assert meta["msg_id"] == msg_id.hex()
    assert sorted(os.listdir(r.inbox("hr.base"))) == ["good.bin", "good.bin.dxbmeta"]
    assert s.log_count("AGT-XFERSTART") == 1
    rows = h.dxbctl("transfers")
    assert [row["xfer_id"] for row in rows] == [msg_id.hex()], rows


@pytest.mark.agent
@pytest.mark.smoke
def test_stream_size_and_order_violations_abort_the_stream(h):
    b, s, r = pair(h)
    c = RawStream(h, s)
    data = os.urandom(64 * 1024)
    digest = hashlib.blake2b(data, digest_size=32).digest()
    # Ends short of its declared size.
    assert c.begin(1, "short.bin", len(data) + 1)[0] == OK
    assert c.data(1, 0, data)[0] == OK
    assert c.end(1, digest)[0] == EINTEGRITY
    # More data than declared.
    assert c.begin(2, "long.bin", len(data) - 1)[0] == OK
    assert c.data(2, 0, data)[0] == EINTEGRITY
    # An offset out of order aborts the stream: the next DATA finds none.
    assert c.begin(3, "gap.bin", len(data))[0] == OK
    assert c.data(3, 0, data[:1000])[0] == OK
    assert c.data(3, 2000, data[2000:3000])[0] == EINVAL
    assert c.data(3, 1000, data[1000:2000])[0] == EINVAL
    # DATA over 4 MiB is a malformed frame, and it aborts its stream too.
    assert c.begin(4, "huge.bin", 8 * MiB)[0] == OK
    assert c.data(4, 0, b"\0" * (4 * MiB + 1))[0] == EPROTO
    assert c.data(4, 0, b"\0" * MiB)[0] == EINVAL
    assert stage_files(s) == [] and out_files(s) == []
    assert s.log_count("AGT-XFERSTART") == 0
    assert s.log_count("AGT-STREAMABORT") == 4


@pytest.mark.agent
@pytest.mark.smoke
def test_bad_name_unknown_recipient_too_big_and_too_many_are_refused(h):
    b, s, r = pair(h, sender_overrides={"transfer": {"max_file_bytes": "64MiB"}})
    c = RawStream(h, s)
    for req, name in enumerate(["../etc/passwd", ".hidden", "", "a/b", "tab\there"], 1):
        code, _, text = c.begin(req, name, 10)
        assert code == EINVAL, (name, code, text)
    assert c.begin(10, "x.bin", 10, recipients=("sq.nobody",))[0] == ENOROUTE
    assert c.begin(11, "x.bin", 64 * MiB + 1)[0] == ETOOBIG
    assert c.begin(12, "x.bin", 64 * MiB)[0] == OK
    assert c.begin(12, "y.bin", 10)[0] == EINVAL  # the request id names an open stream
    for req in range(13, 20):
        assert c.begin(req, f"f{req}.bin", 10)[0] == OK
    code, _, text = c.begin(20, "one-too-many.bin", 10)
    assert code == EAGAIN, (code, text)
    assert len(stage_files(s)) == 8
    # The example binary refuses a bad name before it sends anything.
    path = os.path.join(h.dir, "ok.bin")
    write_random(path, 1000)
    out = SendFile(h, s, path, "--name", "../ok.bin")
    assert out.returncode == 1 and "EINVAL" in out.stderr, out.stderr
    # A stopped agent deletes unfinished staging files at its next start.
    s.restart()
    assert stage_files(s) == []
    assert "AGT-STREAMCLEAN" in s.log_text()


@pytest.mark.agent
def test_200_mib_stream_keeps_agent_memory_far_below_the_file_size(h):
    b, s, r = pair(h)
    if under_asan(s.pid):
        pytest.skip("memory is not measurable under AddressSanitizer (quarantine)")
    path = os.path.join(h.dir, "huge.bin")
    size = 200 * MiB
    digest = write_random(path, size)
    out = SendFile(h, s, path, timeout=600)
    assert out.returncode == 0, out.stderr
    sender_hwm = vm_hwm_kib(s.pid)
    assert sender_hwm < RSS_LIMIT_KIB, f"sending agent peaked at {sender_hwm} KiB"
    assert 0 < out.hwm_kib < RSS_LIMIT_KIB, f"dxb-send-file peaked at {out.hwm_kib} KiB"
    got_path, meta = wait_until(lambda: arrived(r, "huge.bin"), 600, what="the 200 MiB file")
    assert file_blake2b(got_path) == digest
    assert meta["size"] == size
    # Still bounded after sealing and sending all 200 chunks, and so is the
    # receiver after assembling them.
    sender_hwm = vm_hwm_kib(s.pid)
    assert sender_hwm < RSS_LIMIT_KIB, f"sending agent peaked at {sender_hwm} KiB"
    receiver_hwm = vm_hwm_kib(r.pid)
    assert receiver_hwm < RSS_LIMIT_KIB, f"receiving agent peaked at {receiver_hwm} KiB"
