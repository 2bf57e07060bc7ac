"""`dxbctl transfers` (issue 6 item 7): operators see the chunked transfers in
flight with bytes done, rate and ETA, can watch them, and scripts can wait for
one to be done.

The broker-backed tests drive the real binaries: a 16 MiB file dropped into
the sender's outbox (above the agent's 8 MiB transfer threshold) becomes a
16-chunk transfer, and keeping the receiver stopped holds it in "delivering"
for as long as a test needs; starting the receiver lets it finish.

The rendering tests use a scripted admin server, as test_dxbctl_cli.py does:
it stands in for the broker only to pin exact figures, the terminal view
(through a pty) and exit codes a real broker cannot be made to produce on
demand (an ambiguous prefix, a transfer that vanishes, a signal mid-wait).

Run: /usr/bin/python3 -m pytest -q tests/integration/test_dxbctl_transfers.py
"""
import errno
import fcntl
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import termios
import threading
import time

import msgpack
import pytest
import zmq

from dxbharness import require_binary, wait_until

MiB = 1 << 20
GiB = 1 << 30
EX_USAGE = 64
BIG_STORE = {"map_size": "1GiB", "sync": "durable", "batch_max": 256}
AGENT_STORE = {"map_size": "512MiB", "sync": "durable"}
XFER_KEYS = {"xfer_id", "sender", "dataset", "recipients", "chunks", "stored_chunks",
             "total_bytes", "stored_bytes", "resent_bytes", "acked_chunks", "progress",
             "rate_bps", "eta_s", "started_ms", "updated_ms", "state"}
LIST_HEADERS = ["ID", "SENDER", "DATASET", "RCPT", "STATE", "DONE", "PCT", "RATE", "ETA", "AGE"]
PROC_TIMEOUT_S = 120


# ---- helpers ----------------------------------------------------------------

def dxbctl_argv(admin, *args):
    return [require_binary("dxbctl"), "--admin", admin, "--timeout", "10000", *args]


def run_ctl(admin, *args, timeout=60):
    return subprocess.run(dxbctl_argv(admin, *args), capture_output=True, text=True,
                          timeout=timeout)


def table(text):
    """Rows of a dxbctl table as dicts by header (columns are 2+ spaces apart)."""
    lines = [line for line in text.splitlines() if line.strip()]
    headers = re.split(r"\s{2,}", lines[0].strip())
    return headers, [dict(zip(headers, re.split(r"\s{2,}", line.strip()))) for line in lines[1:]]


class LineReader:
    """Runs a process and collects its stdout lines as they come (no sleeps:
    tests wait on what it printed)."""

    def __init__(self, argv):
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        self.lines = []
        self.stderr = ""
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self):
        for line in self.proc.stdout:
            with self._lock:
                self.lines.append(line.rstrip("\n"))

    def snapshot(self):
        with self._lock:
            return list(self.lines)

    def wait(self, timeout=PROC_TIMEOUT_S):
        rc = self.proc.wait(timeout)
        self._thread.join(10)
        self.stderr = self.proc.stderr.read()
        return rc

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc.stdout.close()
        self.proc.stderr.close()


def pair(h):
    """A broker, a started sender sq.hrss and a stopped receiver sq.r0."""
    ks, kr = h.keygen("sq.hrss"), h.keygen("sq.r0")
    b = h.broker([ks, kr], store=BIG_STORE)
    ds = [{"id": "hr.base", "recipients": ["sq.r0"]}]
    s = h.agent(ks, b, datasets=ds, store=AGENT_STORE)
    r = h.agent(kr, b, start=False, store=AGENT_STORE)
    h.wait_connected("sq.hrss")
    return b, s, r


def start_held_transfer(h, s, size=16 * MiB, name="big.bin"):
    """Drops a file and waits until the broker holds all of it for the stopped
    receiver. Returns (data, row)."""
    data = os.urandom(size)
    s.drop("hr.base", name, data)
    rows = wait_until(lambda: [x for x in h.dxbctl("transfers")
                               if x["stored_chunks"] == size // MiB
                               and x["state"] == "delivering"],
                      60, what="the transfer stored at the broker")
    assert len(rows) == 1, rows
    return data, rows[0]


# ---- against the real broker --------------------------------------------------

@pytest.mark.agent
def test_listing_shows_a_transfer_as_table_and_json_while_held_and_when_done(h):
    b, s, r = pair(h)
    data, row = start_held_transfer(h, s)

    assert set(row) == XFER_KEYS
    assert re.fullmatch(r"[0-9a-f]{32}", row["xfer_id"])
    assert (row["sender"], row["dataset"], row["recipients"]) == ("sq.hrss", "hr.base", 1)
    assert row["chunks"] == 16 and row["total_bytes"] == len(data)
    assert row["acked_chunks"] == 0 and row["progress"] == 0.0 and row["eta_s"] == -1

    out = h.dxbctl("transfers", json=False)
    assert out.returncode == 0, out.stderr
    headers, rows = table(out.stdout)
    assert headers == LIST_HEADERS
    assert len(rows) == 1
    held = rows[0]
    assert held["ID"] == row["xfer_id"][:12]
    assert (held["SENDER"], held["DATASET"], held["RCPT"]) == ("sq.hrss", "hr.base", "1")
    assert held["STATE"] == "delivering"
    assert held["DONE"] == "0 B / 16.0 MiB"
    assert held["PCT"] == "0%" and held["ETA"] == "-"
    assert re.fullmatch(r"\d+s", held["AGE"]), held

    r.start()
    wait_until(lambda: r.received("hr.base").get("big.bin"), PROC_TIMEOUT_S, what="the file")
    done = wait_until(lambda: [x for x in h.dxbctl("transfers") if x["state"] == "done"], 30,
                      what="the transfer done at the broker")[0]
    assert done["progress"] == 1.0 and done["eta_s"] == 0
    _, rows = table(h.dxbctl("transfers", json=False).stdout)
    assert rows[0]["STATE"] == "done"
    assert rows[0]["DONE"] == "16.0 MiB / 16.0 MiB"
    assert rows[0]["PCT"] == "100%" and rows[0]["ETA"] == "0s"
    assert rows[0]["RATE"].endswith("/s") and rows[0]["RATE"] != "0 B/s"


@pytest.mark.agent
def test_done_transfer_counts_one_acked_chunk_per_chunk_and_recipient(h):
    b, s, r = pair(h)
    try:
        start_held_transfer(h, s)
        r.start()
        wait_until(lambda: [x for x in h.dxbctl("transfers") if x["state"] == "done"], 60,
                   what="the transfer done at the broker")
        # Let every acknowledgement in flight land before counting.
        h.wait_queue("sq.r0", 0, timeout=30)
        done = h.dxbctl("transfers")[0]
    except AssertionError as exc:
        # A broken set-up is a failure, not the expected one.
        pytest.fail(f"set-up: {exc}")
    assert done["acked_chunks"] == done["chunks"] * done["recipients"], done


@pytest.mark.agent
def test_watch_without_a_terminal_prints_lines_per_poll_and_exits_0_when_done(h):
    b, s, r = pair(h)
    data, row = start_held_transfer(h, s)
    short = row["xfer_id"][:12]
    watch = LineReader(dxbctl_argv(b.admin, "transfers", "--watch", "--interval", "200"))
    try:
        # While the receiver is away the watch keeps polling and printing.
        wait_until(lambda: len([x for x in watch.snapshot() if x.startswith(short)]) >= 3, 30,
                   what="three progress lines")
        assert watch.proc.poll() is None, "the watch ended while the transfer was in flight"
        r.start()
        assert watch.wait() == 0, watch.stderr
    finally:
        watch.close()
    lines = watch.lines
    assert "\x1b" not in "".join(lines), "ANSI escapes on a pipe"
    progress = [x for x in lines if x.startswith(short) and " delivering " in x]
    assert len(progress) >= 3
    assert all(" 16.0 MiB " in x and " eta " in x for x in progress), progress
    assert lines[-1] == "no transfer in flight; 1 finished while watching", lines[-3:]
    assert lines[-2].startswith(f"{short}  sq.hrss  hr.base  done  100%  16.0 MiB / 16.0 MiB")


@pytest.mark.agent
def test_wait_exits_0_once_the_transfer_is_done(h):
    b, s, r = pair(h)
    data, row = start_held_transfer(h, s)
    short = row["xfer_id"][:12]
    # Upper case and a short prefix match too.
    wait = LineReader(dxbctl_argv(b.admin, "transfers", "--wait", row["xfer_id"][:8].upper(),
                                  "--interval", "200"))
    try:
        wait_until(lambda: len(wait.snapshot()) >= 2, 30, what="two progress lines")
        assert wait.proc.poll() is None, "--wait ended before the transfer was done"
        r.start()
        assert wait.wait() == 0, wait.stderr
    finally:
        wait.close()
    assert all(x.startswith(f"{short}  sq.hrss  hr.base  delivering") for x in wait.lines[:-1])
    assert re.fullmatch(rf"transfer {short} done: 16\.0 MiB from sq\.hrss to 1 recipient "
                        r"in \d+\w+ \(.+/s\)", wait.lines[-1]), wait.lines[-1]
    # The file is whole at the receiver.
    content, _ = wait_until(lambda: r.received("hr.base").get("big.bin"), 10, what="the file")
    assert content == data


@pytest.mark.agent
def test_wait_exits_2_after_timeout_wait_while_the_receiver_is_stopped(h):
    b, s, r = pair(h)
    data, row = start_held_transfer(h, s)
    t0 = time.monotonic()
    out = run_ctl(b.admin, "transfers", "--wait", row["xfer_id"][:12], "--timeout-wait", "2",
                  "--interval", "200")
    took = time.monotonic() - t0
    assert out.returncode == 2, (out.returncode, out.stderr)
    assert 2.0 <= took < 15, took
    assert f"transfer {row['xfer_id'][:12]} not done within 2 s (delivering, 0% delivered)" \
        in out.stderr
    assert len(out.stdout.splitlines()) >= 2, "no progress lines while waiting"
    assert [x["state"] for x in h.dxbctl("transfers")] == ["delivering"]


@pytest.mark.smoke
def test_usage_names_the_command_and_its_options():
    r = subprocess.run([require_binary("dxbctl"), "--help"], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0
    assert re.search(r"^  transfers\s", r.stdout, re.M)
    assert "transfers --watch" in r.stdout and "transfers --wait ID" in r.stdout
    r = subprocess.run([require_binary("dxbctl"), "transfers", "--help"], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0
    assert r.stdout.startswith("usage: dxbctl transfers\n")
    for word in ("--watch", "--interval MS", "--wait ID_PREFIX", "--timeout-wait S",
                 "examples:", "dxbctl transfers --wait "):
        assert word in r.stdout, word


@pytest.mark.smoke
@pytest.mark.parametrize("args", [
    ["transfers", "--bogus"],
    ["transfers", "extra"],
    ["transfers", "--watch=yes"],
    ["transfers", "--watch", "--interval", "10"],
    ["transfers", "--watch", "--interval", "fast"],
    ["transfers", "--interval", "500"],
    ["transfers", "--wait"],
    ["transfers", "--wait", "not-hex"],
    ["transfers", "--wait", "a" * 33],
    ["transfers", "--wait", "ab", "--timeout-wait", "0"],
    ["transfers", "--timeout-wait", "5"],
    ["transfers", "--watch", "--wait", "ab"],
    ["--json", "transfers", "--watch"],
    ["transfers", "--wait", "ab", "--json"],
])
def test_bad_options_exit_64_with_a_one_line_hint(tmp_path, args):
    # An endpoint nobody serves: a usage error must come before any exchange.
    out = run_ctl(f"ipc://{tmp_path}/none.sock", *args, timeout=30)
    assert out.returncode == EX_USAGE, (out.returncode, out.stderr)
    assert out.stdout == ""
    lines = out.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("dxbctl: ")
    assert lines[0].endswith("try 'dxbctl transfers --help'"), lines[0]


# ---- against a scripted admin server -----------------------------------------

ID_A = "cf5ed0ed474ae0f2c8240aac52119b9b"
ID_B = "cf5e0123456789abcdef0123456789ab"


def xfer(xfer_id, progress, state, total=16 * MiB, rate=1.5 * MiB, eta=-1.0,
         started_ago_s=5, updated_ago_s=0, sender="sq.hrss", dataset="hr.base", recipients=1):
    """A row as the broker sends it; the times are filled in when served."""
    return {"xfer_id": xfer_id, "sender": sender, "dataset": dataset, "recipients": recipients,
            "chunks": -(-total // MiB), "stored_chunks": -(-total // MiB),
            "total_bytes": total, "stored_bytes": total, "resent_bytes": 0,
            "acked_chunks": int(progress * -(-total // MiB)), "progress": float(progress),
            "rate_bps": float(rate), "eta_s": float(eta), "started_ms": started_ago_s,
            "updated_ms": updated_ago_s, "state": state}


class ScriptedAdmin:
    """A ROUTER answering the n-th "transfers" request with script[n] (the
    last one repeats). started_ms and updated_ms hold seconds ago until
    served."""

    def __init__(self, endpoint, script):
        self.endpoint = endpoint
        self.script = script
        self.requests = 0
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        assert self._ready.wait(10), "scripted admin server did not bind"

    def _reply(self):
        rows = self.script[min(self.requests, len(self.script) - 1)]
        self.requests += 1
        now = int(time.time() * 1000)
        served = []
        for row in rows:
            row = dict(row)
            row["updated_ms"] = now - row["updated_ms"] * 1000
            row["started_ms"] = now - row["started_ms"] * 1000
            served.append(row)
        return [1, 101, 0, "", served]

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
                rep = self._reply() if req[2] == "transfers" else [1, 101, 17, "unknown", None]
                sock.send_multipart([ident, msgpack.packb(rep, use_bin_type=True)])
        finally:
            sock.close()
            ctx.term()

    def stop(self):
        self._stop.set()
        self._thread.join(10)


@pytest.fixture
def scripted(tmp_path):
    servers = []

    def start(script):
        srv = ScriptedAdmin(f"ipc://{tmp_path}/admin{len(servers)}.sock", script)
        servers.append(srv)
        return srv

    yield start
    for srv in servers:
        srv.stop()


def run_on_pty(argv, cols=120, rows=40, timeout=30):
    """Runs argv with stdout on a pty of cols x rows; returns (rc, output)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    proc = subprocess.Popen(argv, stdout=slave, stderr=subprocess.PIPE,
                            env=dict(os.environ, TERM="xterm"))
    os.close(slave)
    out = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], deadline - time.monotonic())
            if not ready:
                break
            try:
                chunk = os.read(master, 65536)
            except OSError as exc:  # EIO: every writer of the pty is gone
                if exc.errno != errno.EIO:
                    raise
                break
            if not chunk:
                break
            out += chunk
        rc = proc.wait(max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        os.close(master)
        proc.stderr.close()
    return rc, out.decode()


@pytest.mark.smoke
def test_table_shows_human_units_percent_rate_eta_and_age(scripted):
    srv = scripted([[
        xfer(ID_A, 412 / 1024, "delivering", total=GiB, rate=85.3 * MiB, eta=71.2,
             started_ago_s=3725, recipients=3),
        xfer(ID_B, 0.0, "receiving", total=0, rate=0.0, started_ago_s=42, sender="sq.other",
             dataset="gov.stats"),
    ]])
    out = run_ctl(srv.endpoint, "transfers")
    assert out.returncode == 0, out.stderr
    headers, rows = table(out.stdout)
    assert headers == LIST_HEADERS
    assert rows[0] == {"ID": ID_A[:12], "SENDER": "sq.hrss", "DATASET": "hr.base", "RCPT": "3",
                       "STATE": "delivering", "DONE": "412.0 MiB / 1.0 GiB", "PCT": "40%",
                       "RATE": "85.3 MiB/s", "ETA": "1m12s", "AGE": "1h02m"}
    assert rows[1] == {"ID": ID_B[:12], "SENDER": "sq.other", "DATASET": "gov.stats",
                       "RCPT": "1", "STATE": "receiving", "DONE": "0 B / -", "PCT": "0%",
                       "RATE": "0 B/s", "ETA": "-", "AGE": "42s"}
    # The columns line up: every DONE cell starts where its header does.
    lines = out.stdout.splitlines()
    col = lines[0].index("DONE")
    assert lines[1][col:].startswith("412.0 MiB") and lines[2][col:].startswith("0 B / -")


@pytest.mark.smoke
def test_json_prints_the_rows_as_the_broker_sent_them(scripted):
    srv = scripted([[xfer(ID_A, 0.25, "delivering", eta=12.5)]])
    out = run_ctl(srv.endpoint, "--json", "transfers")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert len(rows) == 1 and set(rows[0]) == XFER_KEYS
    assert rows[0]["xfer_id"] == ID_A and rows[0]["progress"] == 0.25
    assert rows[0]["eta_s"] == 12.5 and rows[0]["state"] == "delivering"
    # --json after the command, as `dxbctl transfers --json`, is the same.
    again = json.loads(run_ctl(srv.endpoint, "transfers", "--json").stdout)
    assert [dict(x, started_ms=0, updated_ms=0) for x in again] == \
        [dict(x, started_ms=0, updated_ms=0) for x in rows]


@pytest.mark.smoke
def test_no_transfers_prints_none_and_json_an_empty_array(scripted):
    srv = scripted([[]])
    assert run_ctl(srv.endpoint, "transfers").stdout == "(none)\n"
    assert run_ctl(srv.endpoint, "--json", "transfers").stdout == "[]\n"


@pytest.mark.smoke
def test_watch_on_a_terminal_redraws_bars_in_place_until_done(scripted):
    srv = scripted([
        [xfer(ID_A, 0.0, "delivering")],
        [xfer(ID_A, 0.5, "delivering", eta=4)],
        [xfer(ID_A, 1.0, "done", eta=0)],
    ])
    rc, out = run_on_pty(dxbctl_argv(srv.endpoint, "transfers", "--watch", "--interval", "100"))
    assert rc == 0, out
    assert re.search(r"\[-{20}\]   0%", out), out
    assert re.search(r"\[#{10}-{10}\]  50%  8\.0 MiB / 16\.0 MiB", out), out
    # Each later frame first moves up over the last one (header, row, status).
    assert out.count("\r\x1b[3A\x1b[J") >= 2, out
    assert out.rstrip().endswith("no transfer in flight; 1 finished while watching")
    assert f"{ID_A[:12]}  sq.hrss  hr.base  done  100%" in out


@pytest.mark.smoke
def test_watch_on_a_narrow_terminal_keeps_every_line_inside_it(scripted):
    srv = scripted([[xfer(ID_A, 0.3, "delivering", eta=4, dataset="hr.base." + "x" * 60)],
                    [xfer(ID_A, 1.0, "done", eta=0)]])
    rc, out = run_on_pty(dxbctl_argv(srv.endpoint, "transfers", "--watch", "--interval", "100"),
                         cols=40)
    assert rc == 0, out
    frame = out.split("\x1b[J")[0]
    assert "[" in frame and "%" in frame and "1 in flight" in frame
    # A line that wrapped would break the cursor-up count of the redraw.
    assert all(len(line) < 40 for line in frame.split("\r\n")), frame


@pytest.mark.smoke
def test_wait_on_a_terminal_shows_a_bar_then_the_done_line(scripted):
    srv = scripted([[xfer(ID_A, 0.25, "delivering", eta=9)],
                    [xfer(ID_A, 1.0, "done", eta=0, started_ago_s=75)]])
    rc, out = run_on_pty(dxbctl_argv(srv.endpoint, "transfers", "--wait", "cf5ed0",
                                     "--interval", "100"))
    assert rc == 0, out
    assert re.search(r"\[#{5}-{15}\]  25%", out), out
    assert re.search(rf"transfer {ID_A[:12]} done: 16\.0 MiB from sq\.hrss to 1 recipient "
                     r"in 1m1[45]s \(1\.5 MiB/s\)", out), out


@pytest.mark.smoke
def test_wait_exits_1_when_the_transfer_disappears_unfinished(scripted):
    srv = scripted([[xfer(ID_A, 0.25, "delivering")], []])
    out = run_ctl(srv.endpoint, "transfers", "--wait", "cf5ed0", "--interval", "100")
    assert out.returncode == 1, out.stderr
    assert "is gone before it was done" in out.stderr


@pytest.mark.smoke
def test_wait_exits_1_when_the_prefix_matches_two_transfers(scripted):
    srv = scripted([[xfer(ID_A, 0.25, "delivering"), xfer(ID_B, 0.5, "delivering")]])
    out = run_ctl(srv.endpoint, "transfers", "--wait", "cf5e", "--interval", "100")
    assert out.returncode == 1, out.stderr
    assert "id prefix 'cf5e' matches 2 transfers" in out.stderr
    # One more digit tells them apart.
    out = run_ctl(srv.endpoint, "transfers", "--wait", "cf5ed", "--interval", "100",
                  "--timeout-wait", "1")
    assert out.returncode == 2 and "not done within 1 s" in out.stderr


@pytest.mark.smoke
def test_wait_exits_0_at_once_for_a_transfer_already_done(scripted):
    srv = scripted([[xfer(ID_A, 1.0, "done", eta=0)]])
    out = run_ctl(srv.endpoint, "transfers", "--wait", ID_A, "--timeout-wait", "5")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"transfer {ID_A[:12]} done: ")
    assert srv.requests == 1


@pytest.mark.smoke
def test_watch_exits_0_at_once_when_nothing_is_in_flight(scripted):
    srv = scripted([[xfer(ID_A, 1.0, "done", eta=0, started_ago_s=600, updated_ago_s=300)]])
    out = run_ctl(srv.endpoint, "transfers", "--watch")
    assert out.returncode == 0, out.stderr
    # A transfer that was done before the watch began is no news.
    assert out.stdout == "no transfer in flight; 0 finished while watching\n"
    assert srv.requests == 1


@pytest.mark.smoke
@pytest.mark.parametrize("sig,watch_rc,wait_rc", [
    (signal.SIGINT, 0, 128 + signal.SIGINT),
    (signal.SIGTERM, 0, 128 + signal.SIGTERM),
])
def test_signals_end_watch_with_0_and_wait_with_128_plus_n(scripted, sig, watch_rc, wait_rc):
    srv = scripted([[xfer(ID_A, 0.25, "delivering")]])
    for args, want in ((["--watch"], watch_rc), (["--wait", "cf5e"], wait_rc)):
        proc = LineReader(dxbctl_argv(srv.endpoint, "transfers", *args, "--interval", "5000"))
        try:
            wait_until(lambda: proc.snapshot(), 10, what="the first progress line")
            assert proc.proc.poll() is None, "ended with the transfer in flight"
            t0 = time.monotonic()
            proc.proc.send_signal(sig)
            assert proc.wait(10) == want, (args, proc.stderr)
            # Not at the end of the 5 s pause: the signal cuts it short.
            assert time.monotonic() - t0 < 3
            if args == ["--watch"]:
                assert proc.lines[-1] == "stopped; 1 transfer still in flight"
        finally:
            proc.close()
