"""The broker stores and routes what it cannot read (DESIGN.md 3, "可用不可见";
reliability anchors S2)."""
import os
import secrets

import pytest

from dxbharness import wait_until


def _files_containing(root, needle):
    hits = []
    for dirpath, _, names in os.walk(root):
        for n in names:
            path = os.path.join(dirpath, n)
            try:
                with open(path, "rb") as f:
                    if needle in f.read():
                        hits.append(path)
            except OSError:
                continue  # sockets and the like
    return hits


@pytest.mark.agent
def test_payload_sitting_in_the_broker_store_is_unreadable_there(h):
    a, c = h.keygen("sq.hrss"), h.keygen("sq.civil")
    b = h.broker([a, c])
    sender = h.agent(a, b, datasets=[{"id": "hr.employees", "recipients": ["sq.civil"]}])
    receiver = h.agent(c, b, start=False)
    h.wait_connected("sq.hrss")
    marker = ("DXB-CANARY-" + secrets.token_hex(16)).encode()
    payload = b"id,name,secret\n1,Wang Wu," + marker + b"\n" + marker * 50
    sender.drop("hr.employees", "canary.csv", payload)
    h.wait_queue("sq.civil", 1, timeout=30)

    # The message sits in the broker's store; nothing there may show it.
    assert _files_containing(b.data_dir, marker) == []
    assert marker not in open(b.log_path, "rb").read()
    # Nor in another encoding a careless implementation might use.
    assert _files_containing(b.data_dir, marker.hex().encode()) == []
    assert _files_containing(b.data_dir, b"Wang Wu") == []

    receiver.start()
    got = wait_until(lambda: receiver.received("hr.employees"), 30, what="the canary file")
    assert got["canary.csv"][0] == payload
    h.wait_queue("sq.civil", 0)
    assert _files_containing(b.data_dir, marker) == []
