"""dxbctl as an operator meets it, without a broker.

Covers the command line itself (help, usage errors, exit codes), `keygen`,
the "no answer" path, and the rendering of admin results. For rendering, a
small fake admin server in this file answers requests with canned rows: it
stands in for the broker only to test how dxbctl encodes requests and prints
results, not how the broker behaves.

Run: /usr/bin/python3 -m pytest tests/integration/test_dxbctl_cli.py
Env: DXB_BUILD = meson build directory (default ./build).
"""

import json
import os
import re
import stat
import subprocess
import threading
import time
from pathlib import Path

import msgpack
import pytest
import zmq

BUILD = Path(os.environ.get("DXB_BUILD", "build")).resolve()
DXBCTL = BUILD / "tools" / "dxbctl"
EX_USAGE = 64
RUN_TIMEOUT_S = 30


def run(*args, env=None):
    if not DXBCTL.exists():
        pytest.fail(f"{DXBCTL} not found: build it first (meson compile -C {BUILD} dxbctl)")
    full_env = dict(os.environ)
    full_env.pop("DXB_ADMIN", None)
    full_env.update(env or {})
    return subprocess.run([str(DXBCTL), *args], capture_output=True, text=True,
                          env=full_env, timeout=RUN_TIMEOUT_S)


# ---- command line -------------------------------------------------------

def test_help_exits_0_and_lists_every_command():
    r = run("--help")
    assert r.returncode == 0, r.stderr
    for cmd in ("keygen", "nodes", "queues peek", "dlq list", "dlq retry", "dlq drop",
                "stats", "audit tail", "--admin", "--json", "--timeout"):
        assert cmd in r.stdout


@pytest.mark.parametrize("cmd", ["keygen", "nodes", "queues", "dlq", "stats", "audit"])
def test_each_command_has_help(cmd):
    r = run(cmd, "--help")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"usage: dxbctl {cmd}")


def test_version_exits_0():
    r = run("--version")
    assert r.returncode == 0
    assert r.stdout.startswith("dxbctl ")


@pytest.mark.parametrize("args", [
    [],
    ["frobnicate"],
    ["--timeout", "soon", "nodes"],
    ["queues", "peek"],
    ["queues", "peek", "sq.hrss", "--limit", "0"],
    ["dlq", "retry"],
    ["audit", "tail", "--n", "-3"],
    ["nodes", "--bogus"],
])
def test_usage_errors_exit_64_with_one_line_hint(args):
    r = run(*args)
    assert r.returncode == EX_USAGE
    assert r.stdout == ""
    lines = r.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("dxbctl: ") and "--help" in lines[0]


# ---- keygen -------------------------------------------------------------

def test_keygen_writes_key_files_with_modes(tmp_path):
    out = tmp_path / "keys"
    r = run("keygen", "--name", "sq.hrss", "--out", str(out))
    assert r.returncode == 0, r.stderr

    pub = out / "sq.hrss.pub"
    secret = out / "sq.hrss.secret"
    assert stat.S_IMODE(pub.stat().st_mode) == 0o644
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600

    m = re.search(r"^public_key: (\S{40})$", r.stdout, re.M)
    assert m, r.stdout
    assert f"public_key: {m.group(1)}" in pub.read_text()
    assert str(pub) in r.stdout and str(secret) in r.stdout
    assert "secret_seed" not in r.stdout


def test_keygen_refuses_to_overwrite(tmp_path):
    assert run("keygen", "--name", "sq.hrss", "--out", str(tmp_path)).returncode == 0
    before = (tmp_path / "sq.hrss.secret").read_bytes()

    r = run("keygen", "--name", "sq.hrss", "--out", str(tmp_path))
    assert r.returncode != 0
    assert "sq.hrss" in r.stderr
    assert (tmp_path / "sq.hrss.secret").read_bytes() == before


@pytest.mark.parametrize("node", ["SQ.HRSS", "../x", "sq..hrss", ""])
def test_keygen_refuses_invalid_id(tmp_path, node):
    r = run("keygen", "--name", node, "--out", str(tmp_path))
    assert r.returncode != 0
    assert f"'{node}'" in r.stderr or node == ""
    assert list(tmp_path.iterdir()) == []


# ---- no broker ----------------------------------------------------------

def test_no_broker_exits_2_within_the_timeout():
    started = time.monotonic()
    r = run("--admin", "ipc:///nonexistent/x.sock", "--timeout", "300", "nodes")
    elapsed = time.monotonic() - started
    assert r.returncode == 2
    assert r.stdout == ""
    assert ("dxbctl: no answer from broker at ipc:///nonexistent/x.sock within 300 ms "
            "(is dxb-broker running? is --admin right?)") in r.stderr
    assert elapsed < 5


def test_admin_endpoint_comes_from_the_environment():
    r = run("--timeout", "200", "stats", env={"DXB_ADMIN": "ipc:///nonexistent/env.sock"})
    assert r.returncode == 2
    assert "ipc:///nonexistent/env.sock" in r.stderr


# ---- rendering, against a fake admin server -----------------------------

NODES = [
    {"node": "sq.hrss", "region": "321300", "level": 2, "clearance": 1, "connected": True,
     "last_seen_ms": 1795583091000, "queue_msgs": 3},
    {"node": "sq.mz", "region": "321302", "level": 3, "clearance": 0, "connected": False,
     "last_seen_ms": None, "queue_msgs": 0},
    {"node": "js.province", "region": "320000", "level": 1, "clearance": 3, "connected": True,
     "last_seen_ms": 1795583000000, "queue_msgs": 123456},
]
QUEUES = [
    {"node": "sq.hrss", "msgs": 3, "bytes": 1258291, "oldest_age_s": 192, "in_flight": 1},
    {"node": "sq.mz", "msgs": 0, "bytes": 0, "oldest_age_s": None, "in_flight": 0},
]
AUDIT = [
    {"seq": 7, "time_ms": 1795583091000, "actor": "operator", "action": "dlq.retry",
     "object": "all", "result": "OK", "detail": '宿迁 "quoted"\n\x1b[31mred\ttab\\', "ratio": 0.5},
]


class FakeAdmin:
    """A ROUTER on an ipc socket answering each admin request with a canned reply."""

    def __init__(self, endpoint, replies):
        self.endpoint = endpoint
        self.replies = replies  # command -> (code, message, result)
        self.requests = []
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def start(self):
        self._thread.start()
        assert self._ready.wait(10), "fake admin server did not bind"

    def stop(self):
        self._stop.set()
        self._thread.join(10)

    def _serve(self):
        ctx = zmq.Context()
        sock = ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.bind(self.endpoint)
        self._ready.set()
        try:
            while not self._stop.is_set():
                if not sock.poll(50):
                    continue
                ident, frame = sock.recv_multipart()
                req = msgpack.unpackb(frame, raw=False)
                self.requests.append(req)
                code, message, result = self.replies.get(req[2], (17, "no such command", None))
                rep = [1, 101, code, message, result]
                sock.send_multipart([ident, msgpack.packb(rep, use_bin_type=True)])
        finally:
            sock.close()
            ctx.term()


@pytest.fixture
def admin(tmp_path):
    fake = FakeAdmin(f"ipc://{tmp_path}/admin.sock", {
        "nodes": (0, "", NODES),
        "queues": (0, "", QUEUES),
        "audit.tail": (0, "", AUDIT),
        "dlq.list": (0, "", []),
        "dlq.retry": (0, "retried 2", [{"retried": 2}]),
        "stats": (0, "", [{"published": 1000, "delivered": 998}]),
        "peek": (17, "unknown node 'sq.nobody'", None),
    })
    fake.start()
    yield fake
    fake.stop()


def ctl(fake, *args):
    return run("--admin", fake.endpoint, "--timeout", "5000", *args)


def test_table_has_upper_case_headers_and_aligned_columns(admin):
    r = ctl(admin, "nodes")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["NODE", "REGION", "LEVEL", "CLEARANCE", "CONNECTED",
                                "LAST_SEEN_MS", "QUEUE_MSGS"]
    assert len(lines) == 1 + len(NODES)
    # Every column starts where its header starts.
    for header in ("REGION", "CONNECTED", "LAST_SEEN_MS", "QUEUE_MSGS"):
        col = lines[0].index(header)
        for line in lines[1:]:
            assert line[col - 2:col] == "  " and line[col] != " ", (header, line)
    assert "2026-11-25 05:04:51" in lines[1]
    assert " yes " in lines[1] and " no " in lines[2]
    assert lines[2].split()[5] == "-"


def test_table_formats_bytes_and_ages(admin):
    r = ctl(admin, "queues")
    assert r.returncode == 0, r.stderr
    row = r.stdout.splitlines()[1]
    assert "1.2 MiB" in row and "3m12s" in row


def test_table_keeps_control_characters_off_the_terminal(admin):
    r = ctl(admin, "audit", "tail")
    assert r.returncode == 0, r.stderr
    assert "\x1b" not in r.stdout
    assert "宿迁" in r.stdout
    assert len(r.stdout.splitlines()) == 2


def test_empty_result_prints_none(admin):
    r = ctl(admin, "dlq", "list")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "(none)\n"


@pytest.mark.parametrize("args, rows", [
    (["nodes"], NODES),
    (["queues"], QUEUES),
    (["audit", "tail"], AUDIT),
    (["dlq", "list"], []),
])
def test_json_prints_exactly_the_rows(admin, args, rows):
    r = ctl(admin, "--json", *args)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == rows


def test_json_after_the_command_works_too(admin):
    r = ctl(admin, "dlq", "retry", "all", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == [{"retried": 2}]


def test_requests_use_the_wire_command_names(admin):
    for args in (["queues"], ["dlq", "retry", "all"], ["audit", "tail", "--n", "5"],
                 ["stats"], ["queues", "peek", "sq.nobody", "--limit", "2"]):
        ctl(admin, *args)
    assert admin.requests == [
        [1, 100, "queues", []],
        [1, 100, "dlq.retry", ["all"]],
        [1, 100, "audit.tail", ["5"]],
        [1, 100, "stats", []],
        [1, 100, "peek", ["sq.nobody", "2"]],
    ]


def test_refusal_exits_1_with_the_wire_error_name(admin):
    r = ctl(admin, "queues", "peek", "sq.nobody")
    assert r.returncode == 1
    assert r.stdout == ""
    assert r.stderr.strip() == "dxbctl: peek: ENOTFOUND: unknown node 'sq.nobody'"
