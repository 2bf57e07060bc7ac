"""Large datasets travel as chunked transfers (issue 6; PROTOCOL.md 5.1):
whole and verified at the receiver, never partial in the inbox, compressed
where it helps, stored once at the broker for several recipients, and not in
the way of small messages."""
import hashlib
import os
import subprocess
import threading
import time

import pytest

from dxbharness import wait_until

MiB = 1 << 20
BIG_STORE = {"map_size": "1GiB", "sync": "durable", "batch_max": 256}
AGENT_STORE = {"map_size": "512MiB", "sync": "durable"}


def blake2b(data):
    return hashlib.blake2b(data, digest_size=32).hexdigest()


def pair(h, n_receivers=1, start_receivers=True, sender_overrides=None, broker_overrides=None):
    keys = [h.keygen("sq.hrss")] + [h.keygen(f"sq.r{i}") for i in range(n_receivers)]
    b = h.broker(keys, store=BIG_STORE, **(broker_overrides or {}))
    ds = [{"id": "hr.base", "recipients": [k.node for k in keys[1:]]},
          {"id": "hr.small", "recipients": [k.node for k in keys[1:]]}]
    s = h.agent(keys[0], b, datasets=ds, store=AGENT_STORE, **(sender_overrides or {}))
    rs = [h.agent(k, b, start=start_receivers, store=AGENT_STORE) for k in keys[1:]]
    h.wait_connected("sq.hrss")
    for k in keys[1:] if start_receivers else []:
        h.wait_connected(k.node)
    return b, s, rs


class InboxWatcher(threading.Thread):
    """Polls an inbox while a transfer runs and records every visible file
    whose content is not the whole expected file (a partial file seen)."""

    def __init__(self, agent, dataset, name, size):
        super().__init__(daemon=True)
        self.path = os.path.join(agent.inbox(dataset), name)
        self.size = size
        self.bad = []
        self.stop = False

    def run(self):
        while not self.stop:
            try:
                st = os.stat(self.path)
                if st.st_size != self.size:
                    self.bad.append(st.st_size)
            except FileNotFoundError:
                pass
            time.sleep(0.005)


@pytest.mark.agent
def test_large_file_arrives_whole_verified_and_never_partial(h):
    b, s, (r,) = pair(h)
    data = os.urandom(40 * MiB + 12345)
    w = InboxWatcher(r, "hr.base", "base.bin", len(data))
    w.start()
    s.drop("hr.base", "base.bin", data)
    got = wait_until(lambda: r.received("hr.base").get("base.bin"), 120, what="the large file")
    w.stop = True
    w.join()
    content, meta = got
    assert content == data
    assert meta["size"] == len(data)
    assert meta["chunks"] == 41
    assert meta["blake2b256"] == blake2b(data)
    assert meta["sender"] == "sq.hrss"
    assert w.bad == [], f"a partial file was visible in the inbox: sizes {w.bad[:5]}"
    # Nothing left behind: no part file, no transfer file at the sender.
    assert [n for n in os.listdir(r.inbox("hr.base")) if n.startswith(".dxb-part")] == []
    wait_until(lambda: os.listdir(os.path.join(s.data_dir, "xfer", "out")) == [], 30,
               what="the sender to drop its copy")
    s.wait_log("AGT-XFERSENT")
    r.wait_log("AGT-XFERDONE")
    h.wait_queue(r.node, 0)


@pytest.mark.agent
def test_compressible_file_is_compressed_and_the_ratio_reported(h):
    b, s, (r,) = pair(h)
    line = b"320102198001011234,Zhang San,13812345678,Jiangsu Suqian Sucheng Road 1\n"
    data = line * (20 * MiB // len(line))
    s.drop("hr.base", "people.csv", data)
    content, meta = wait_until(lambda: r.received("hr.base").get("people.csv"), 120,
                               what="the csv")
    assert content == data
    sent = s.wait_log("AGT-XFERSENT")
    text = s.log_text()
    ratio = float(text.split("AGT-XFERSENT")[1].split("ratio=")[1].split()[0])
    assert ratio < 0.2, f"compression ratio {ratio}"
    assert sent is None or sent is not None


@pytest.mark.agent
def test_incompressible_file_skips_compression(h):
    b, s, (r,) = pair(h)
    data = os.urandom(12 * MiB)
    s.drop("hr.base", "random.bin", data)
    content, _ = wait_until(lambda: r.received("hr.base").get("random.bin"), 120,
                            what="the file")
    assert content == data
    s.wait_log("AGT-XFERSENT")
    ratio = float(s.log_text().split("AGT-XFERSENT")[1].split("ratio=")[1].split()[0])
    assert ratio == 1.0


def _msg_db_overflow_bytes(broker):
    """Bytes of large values in the broker's msg database, from mdb_stat."""
    out = subprocess.run(["mdb_stat", "-n", "-s", "msg", os.path.join(broker.data_dir, "store")],
                         capture_output=True, text=True, timeout=30)
    if out.returncode != 0:  # the store may be locked differently; -n handles no subdir
        out = subprocess.run(["mdb_stat", "-s", "msg", os.path.join(broker.data_dir, "store")],
                             capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    for line in out.stdout.splitlines():
        if "Overflow pages" in line:
            return int(line.split(":")[1]) * 4096
    raise AssertionError("no overflow page count in mdb_stat output:\n" + out.stdout)


@pytest.mark.agent
def test_fan_out_of_a_large_file_is_stored_once_at_the_broker(h):
    b, s, rs = pair(h, n_receivers=3, start_receivers=False)
    data = os.urandom(24 * MiB)
    s.drop("hr.base", "twice.bin", data)
    # Receivers are offline: the whole file waits at the broker.
    wait_until(lambda: all(h.queues()[r.node]["msgs"] >= 25 for r in rs), 120,
               what="every chunk queued for all three recipients")
    stored = _msg_db_overflow_bytes(b)
    assert len(data) <= stored < 1.3 * len(data), \
        f"{stored} bytes of bodies stored for a {len(data)} byte file to 3 recipients"
    rows = h.dxbctl("transfers")
    assert len(rows) == 1 and rows[0]["recipients"] == 3 and rows[0]["chunks"] == 24
    for r in rs:
        r.start()
    for r in rs:
        content, _ = wait_until(lambda r=r: r.received("hr.base").get("twice.bin"), 120,
                                what=f"the file at {r.node}")
        assert content == data
    rows = h.dxbctl("transfers")
    assert rows[0]["state"] == "done" and rows[0]["progress"] == 1.0


@pytest.mark.agent
def test_small_messages_pass_a_large_transfer_to_the_same_node(h):
    b, s, (r,) = pair(h)
    data = os.urandom(200 * MiB)
    s.drop("hr.base", "huge.bin", data)
    r.wait_log("AGT-XFERRECV", timeout=60)
    t0 = time.monotonic()
    for i in range(5):
        s.drop("hr.small", f"note{i}.txt", b"small %d" % i)
        time.sleep(0.2)
    wait_until(lambda: r.inbox_count("hr.small") == 5, 60, what="the small messages")
    small_done = time.monotonic() - t0
    assert "huge.bin" not in r.received("hr.base"), \
        "the transfer finished first: too small to show interleaving on this machine"
    assert small_done < 10, f"small messages took {small_done:.1f}s behind a transfer"
    content, _ = wait_until(lambda: r.received("hr.base").get("huge.bin"), 300,
                            what="the large file")
    assert content == data


@pytest.mark.agent
def test_transfers_listing_shows_progress(h):
    b, s, (r,) = pair(h, start_receivers=False)
    data = os.urandom(16 * MiB)
    s.drop("hr.base", "p.bin", data)
    rows = wait_until(lambda: [x for x in h.dxbctl("transfers") if x["stored_chunks"] == 16],
                      60, what="the transfer stored at the broker")
    row = rows[0]
    assert row["sender"] == "sq.hrss" and row["dataset"] == "hr.base"
    assert row["total_bytes"] == len(data)
    assert row["state"] == "delivering" and row["progress"] == 0.0
    out = h.dxbctl("transfers", json=False)
    text = out.stdout if hasattr(out, "stdout") else out
    assert "hr.base" in text and "sq.hrss" in text
    r.start()
    wait_until(lambda: r.received("hr.base").get("p.bin"), 120, what="the file")


@pytest.mark.agent
def test_chunk_of_an_unknown_transfer_is_refused_by_the_receiver_and_dead_lettered(h):
    """Chunk abuse at the receiving agent: a chunk whose manifest never came
    (forged, or the manifest was dead-lettered) is refused with EPROTO, lands
    in the broker's DLQ with that reason, and nothing appears in the inbox."""
    import msgpack
    from dxbharness import make_envelope
    a, c = h.keygen("sq.hrss"), h.keygen("sq.civil")
    b = h.broker([a, c])
    r = h.agent(c, b)
    h.wait_connected("sq.civil")
    peer = h.raw_peer(a, b)
    assert peer.hello()[1] == 2
    body = msgpack.packb([b"\x42" * 16, 1, 2, 5000, b"\x07" * 64], use_bin_type=True)
    env = make_envelope("sq.hrss", "hr.base", ["sq.civil"], body=body)
    env[0][10] = 1  # CHUNK
    mid = bytes(env[0][0])
    assert peer.publish([env]) == {mid: 0}
    rows = wait_until(lambda: h.dxbctl("dlq", "list"), 20, what="the chunk in the DLQ")
    assert rows[0]["msg_id"] == mid.hex() and rows[0]["reason"] == "EPROTO"
    r.wait_log("AGT-XFERBAD")
    assert r.received("hr.base") == {}
    assert r.alive()
