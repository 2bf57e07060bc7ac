"""Delivery between agents through the spool folders and the local API
(DESIGN.md section 6 "Agent spool"; PROTOCOL.md 7.2, 7.3, 9)."""
import hashlib
import os
import random
import re
import secrets
import time

import pytest

from dxbharness import sha256_hex, wait_until

SIDECAR_KEYS = {"sender", "dataset", "msg_id", "created_ms", "size", "sha256"}


def _all_received(agent, dataset, n):
    def check():
        got = agent.received(dataset)
        return got if len(got) >= n else None

    return check


def _check_sidecars(got, sent, sender, dataset, t0_ms):
    ids = set()
    for name, data in sent.items():
        assert name in got, f"{name} never arrived"
        body, meta = got[name]
        assert body == data, f"{name}: content differs ({len(body)} vs {len(data)} bytes)"
        assert SIDECAR_KEYS <= set(meta), f"{name}.dxbmeta lacks {SIDECAR_KEYS - set(meta)}"
        assert meta["sender"] == sender and meta["dataset"] == dataset
        assert meta["size"] == len(data)
        assert meta["sha256"] == sha256_hex(data)
        assert re.fullmatch(r"[0-9a-f]{32}", meta["msg_id"]), meta["msg_id"]
        assert t0_ms - 5000 <= meta["created_ms"] <= int(time.time() * 1000) + 5000
        ids.add(meta["msg_id"])
    assert len(ids) == len(sent), "two files share a message id"


@pytest.mark.agent
def test_thousand_files_arrive_whole_with_sidecars(h):
    a, c = h.keygen("sq.hrss"), h.keygen("sq.civil")
    b = h.broker([a, c])
    sender = h.agent(a, b, datasets=[{"id": "hr.employees", "recipients": ["sq.civil"]}])
    receiver = h.agent(c, b)
    h.wait_connected("sq.hrss")
    h.wait_connected("sq.civil")
    rng = random.Random(1000)
    sizes = [0, 1, 4095, 4096, 65536, 1 << 20] + [rng.randint(1, 32768) for _ in range(994)]
    sent = {f"emp-{i:04d}.csv": secrets.token_bytes(n) for i, n in enumerate(sizes)}
    t0 = int(time.time() * 1000)
    for name, data in sent.items():
        sender.drop("hr.employees", name, data)
    got = wait_until(_all_received(receiver, "hr.employees", len(sent)), 180, interval=0.25,
                     what="1,000 files in the inbox")
    _check_sidecars(got, sent, "sq.hrss", "hr.employees", t0)
    assert sender.outbox_pending("hr.employees") == [], "files left in the outbox spool"
    leftovers = [n for n in os.listdir(receiver.inbox("hr.employees"))
                 if n not in got and not n.endswith(".dxbmeta")]
    assert leftovers == [], f"unexpected files in the inbox: {leftovers[:10]}"
    h.wait_queue("sq.civil", 0)
    assert h.stats()["published"] == len(sent)


@pytest.mark.agent
def test_offline_recipient_receives_all_200_files_when_it_starts(h):
    a, c = h.keygen("sq.hrss"), h.keygen("sq.civil")
    b = h.broker([a, c])
    sender = h.agent(a, b, datasets=[{"id": "hr.employees", "recipients": ["sq.civil"]}])
    receiver = h.agent(c, b, start=False)
    h.wait_connected("sq.hrss")
    sent = {f"offline-{i:03d}.csv": f"id,name\n{i},worker {i}\n".encode() * (i + 1)
            for i in range(200)}
    t0 = int(time.time() * 1000)
    for name, data in sent.items():
        sender.drop("hr.employees", name, data)
    h.wait_queue("sq.civil", 200, timeout=60)
    assert not h.is_connected("sq.civil")
    receiver.start()
    h.wait_connected("sq.civil")
    got = wait_until(_all_received(receiver, "hr.employees", 200), 60, interval=0.2,
                     what="200 files in the inbox")
    _check_sidecars(got, sent, "sq.hrss", "hr.employees", t0)
    h.wait_queue("sq.civil", 0)


@pytest.mark.agent
def test_one_file_reaches_two_recipients(h):
    a, c, p = h.keygen("sq.hrss"), h.keygen("sq.civil"), h.keygen("js.province")
    b = h.broker([a, c, {"key": p, "region": "320000", "level": "province", "clearance": 3}])
    sender = h.agent(a, b, datasets=[{"id": "hr.employees",
                                      "recipients": ["sq.civil", "js.province"]}])
    r1, r2 = h.agent(c, b), h.agent(p, b)
    h.wait_connected("sq.hrss")
    data = b"id,name,dept\n1,Zhang San,HR\n"
    sender.drop("hr.employees", "roster.csv", data)
    for r in (r1, r2):
        got = wait_until(_all_received(r, "hr.employees", 1), 30, what=f"roster at {r.node}")
        assert got["roster.csv"][0] == data
    assert r1.received("hr.employees")["roster.csv"][1]["msg_id"] == \
        r2.received("hr.employees")["roster.csv"][1]["msg_id"]


@pytest.mark.agent
def test_same_name_twice_keeps_both_files(h):
    a, c = h.keygen("sq.hrss"), h.keygen("sq.civil")
    b = h.broker([a, c])
    sender = h.agent(a, b, datasets=[{"id": "hr.employees", "recipients": ["sq.civil"]}])
    receiver = h.agent(c, b)
    sender.drop("hr.employees", "daily.csv", b"first\n")
    wait_until(_all_received(receiver, "hr.employees", 1), 30, what="the first daily.csv")
    sender.drop("hr.employees", "daily.csv", b"second\n")
    got = wait_until(_all_received(receiver, "hr.employees", 2), 30, what="the second daily.csv")
    assert got["daily.csv"][0] == b"first\n"
    (other,) = [n for n in got if n != "daily.csv"]
    body, meta = got[other]
    assert body == b"second\n"
    assert other == "daily.csv." + meta["msg_id"][:8]


@pytest.mark.smoke
@pytest.mark.agent
def test_dxb_send_and_dxb_recv_exchange_files_through_the_api(h):
    a, c = h.keygen("sq.hrss"), h.keygen("sq.civil")
    b = h.broker([a, c])
    sender = h.agent(a, b)
    receiver = h.agent(c, b, datasets=[{"id": "hr.api", "recipients": ["sq.hrss"],
                                        "inbound": "api"}])
    h.wait_connected("sq.hrss")
    h.wait_connected("sq.civil")
    src = os.path.join(h.dir, "src")
    os.makedirs(src)
    files = {}
    for i in range(3):
        path = os.path.join(src, f"report-{i}.csv")
        files[os.path.basename(path)] = secrets.token_bytes(1000 + i)
        with open(path, "wb") as f:
            f.write(files[os.path.basename(path)])
    out = h.run("send", "--api", sender.api, "--dataset", "hr.api", "--to", "sq.civil",
                *sorted(os.path.join(src, n) for n in files), check=True, timeout=60)
    sent_ids = re.findall(r"^sent (\S+) id=([0-9a-f]{32})$", out.stdout, re.M)
    assert len(sent_ids) == 3, out.stdout
    dest = os.path.join(h.dir, "dest")
    os.makedirs(dest)
    got = h.run("recv", "--api", receiver.api, "--dataset", "hr.api", "--count", "3",
                "--out", dest, "--timeout", "30000", check=True, timeout=60)
    assert got.stdout.count("from=sq.hrss") == 3, got.stdout
    for name, data in files.items():
        with open(os.path.join(dest, name), "rb") as f:
            assert hashlib.sha256(f.read()).digest() == hashlib.sha256(data).digest()
    # Acknowledged: nothing comes again.
    again = h.run("recv", "--api", receiver.api, "--dataset", "hr.api", "--timeout", "1000",
                  timeout=30)
    assert again.returncode == 0 and again.stdout.strip() == ""


@pytest.mark.smoke
@pytest.mark.agent
def test_agent_is_ready_without_a_broker_and_links_up_when_it_appears(h):
    a = h.keygen("sq.hrss")
    b = h.broker([a], start=False)
    agent = h.agent(a, b)  # READY=1 although the broker is not there
    b.start()
    h.wait_connected("sq.hrss")
    agent.wait_log("AGT-LINKUP")
    b.kill9()
    agent.wait_log("AGT-LINKDOWN", timeout=10)
    b.start()
    h.wait_connected("sq.hrss")
    agent.wait_log("AGT-LINKUP", count=2)
