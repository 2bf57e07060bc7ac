"""dxbharness: drives the real dxb binaries for the integration tests.

Run the tests with Debian's interpreter (python3-zmq, python3-msgpack and
python3-nacl import only there):

    DXB_BUILD=$PWD/build /usr/bin/python3 -m pytest -q tests/integration

Every test gets a Harness (the `h` fixture in conftest.py) with a fresh,
short temporary directory that holds the keys, the configs, the data
directories and one log file per daemon. Daemons are started with
NOTIFY_SOCKET pointing at a unix datagram socket the harness binds, and a
start returns only once the daemon said READY=1 (sd_notify): the harness
never sleeps and hopes. Every wait has a deadline and fails with what it was
waiting for.

Besides the daemons the module has two protocol peers written from
proto/PROTOCOL.md alone, so that tests can speak the wire without the C code:

- RawPeer: an agent-side CURVE DEALER (section 4) that can send anything,
  including frames a real agent never would (spoofed senders).
- ApiClient: an application on an agent's local API socket (section 9).
"""

import hashlib
import json
import os
import random
import secrets
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

import msgpack
import zmq
from zmq.utils import z85

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.abspath(os.environ.get("DXB_BUILD") or os.path.join(REPO, "build"))

BIN = {
    "broker": os.path.join(BUILD, "broker", "dxb-broker"),
    "agent": os.path.join(BUILD, "agents", "dxb-agent"),
    "dxbctl": os.path.join(BUILD, "tools", "dxbctl"),
    "send": os.path.join(BUILD, "client", "dxb-send"),
    "recv": os.path.join(BUILD, "client", "dxb-recv"),
}

# Timing used by every test config: fast heartbeats so that a killed peer is
# noticed within about a second and recovery stays quick.
HEARTBEAT_MS = 200
TIMEOUT_MS = 1000
REDELIVER_MS = 2000

START_TIMEOUT_S = 20.0  # READY=1 after exec (ASan builds start slowly)
STOP_TIMEOUT_S = 20.0  # exit after SIGTERM

# Wire constants (PROTOCOL.md sections 4, 6, 8, 9).
T_HELLO, T_WELCOME, T_PUBLISH, T_PUBACK, T_DELIVER, T_DACK = 1, 2, 3, 4, 5, 6
T_CREDIT, T_PING, T_PONG, T_ERROR, T_DIRECTORY, T_BYE = 7, 8, 9, 10, 11, 12
T_API_PUBLISH, T_API_RESULT, T_API_SUBSCRIBE, T_API_MESSAGE, T_API_ACK = 40, 41, 42, 43, 44
E_OK, E_EPROTO, E_EAUTH, E_EFULL, E_ESPOOF, E_EAGAIN, E_EIO = 0, 1, 5, 8, 12, 15, 9
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                   "ERROR: UndefinedBehaviorSanitizer")


class HarnessError(AssertionError):
    """A wait ran out or a daemon misbehaved; the message says which."""


def require_binary(kind):
    """Path of a built binary; fails the test (not skips) when it is missing."""
    path = BIN[kind]
    if not os.access(path, os.X_OK):
        raise HarnessError(f"{path} is missing: build first (meson compile -C {BUILD})")
    return path


def wait_until(predicate, timeout=10.0, interval=0.05, what=None):
    """Polls predicate() until it returns something truthy and returns that.

    An exception from predicate counts as "not yet"; the last one is named in
    the HarnessError raised when the deadline passes.
    """
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - retried until the deadline
            last_exc = exc
        if time.monotonic() >= deadline:
            name = what or getattr(predicate, "__name__", "condition")
            extra = f" (last error: {last_exc!r})" if last_exc else ""
            raise HarnessError(f"timed out after {timeout:.1f}s waiting for {name}{extra}")
        time.sleep(interval)


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sha256_hex(data):
    return hashlib.sha256(data).hexdigest()


# ---- YAML writing -----------------------------------------------------------

def _yaml_scalar(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    text = str(value)
    # Plain when it is obviously safe (sizes such as 64MiB must be plain for
    # dxb's loader); else single-quoted (Z85 has no quote character).
    special = {"true", "false", "yes", "no", "on", "off", "null", "~"}
    if text and all(c.isalnum() or c in "._/-" for c in text) and text.lower() not in special \
            and text[0] not in "-.":
        return text
    return "'" + text.replace("'", "''") + "'"


def _yaml_lines(value, indent):
    pad = " " * indent
    lines = []
    if isinstance(value, dict):
        for key, val in value.items():
            if isinstance(val, (dict, list)) and val:
                lines.append(f"{pad}{key}:")
                lines.extend(_yaml_lines(val, indent + 2))
            elif isinstance(val, list):
                lines.append(f"{pad}{key}: []")
            else:
                lines.append(f"{pad}{key}: {_yaml_scalar(val)}")
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict):
                sub = _yaml_lines(item, indent + 2)
                sub[0] = pad + "- " + sub[0].lstrip()
                lines.extend(sub)
            elif isinstance(item, list):
                raise ValueError("nested lists are not used in dxb configs")
            else:
                lines.append(f"{pad}- {_yaml_scalar(item)}")
    else:
        raise ValueError(f"cannot write {value!r} as a YAML block")
    return lines


def write_yaml(path, data):
    """Writes a dict of sections as block YAML (the subset dxb's loader takes)."""
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(_yaml_lines(data, 0)) + "\n")


# ---- keys -------------------------------------------------------------------

def _read_fields(path):
    fields = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            if ":" in line:
                key, val = line.split(":", 1)
                fields[key.strip()] = val.strip()
    return fields


class Key:
    """A node's key files as written by `dxbctl keygen`."""

    def __init__(self, node, pub_path, secret_path):
        self.node = node
        self.pub_path = pub_path
        self.secret_path = secret_path
        self.public_key = _read_fields(pub_path)["public_key"]  # Z85 Ed25519

    def sign_pk(self):
        return z85.decode(self.public_key)

    def seed(self):
        return z85.decode(_read_fields(self.secret_path)["secret_seed"])

    def curve_keys(self):
        """(public, secret) X25519 keys as bytes, the ones CURVE uses."""
        import nacl.bindings as nb  # python3-nacl

        pk, sk = nb.crypto_sign_seed_keypair(self.seed())
        return (nb.crypto_sign_ed25519_pk_to_curve25519(pk),
                nb.crypto_sign_ed25519_sk_to_curve25519(sk))

    def curve_public(self):
        import nacl.bindings as nb

        return nb.crypto_sign_ed25519_pk_to_curve25519(self.sign_pk())


# ---- notify socket and daemons ----------------------------------------------

class NotifySocket:
    """The unix datagram socket a daemon's sd_notify() writes to.

    A thread reads it all the time, as systemd does: sd_notify() blocks when
    the socket's queue is full (the broker sends WATCHDOG=1 often), so a
    socket nobody drains would freeze the daemon.
    """

    def __init__(self, path):
        self.path = path
        if os.path.exists(path):
            os.unlink(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.states = []  # every line received, in order
        self.cond = threading.Condition()
        self.closed = False
        self.thread = threading.Thread(target=self._reader, daemon=True)
        self.thread.start()

    def _reader(self):
        while not self.closed:
            try:
                ready, _, _ = select.select([self.sock], [], [], 0.2)
                if not ready:
                    continue
                data = self.sock.recv(65536).decode("utf-8", "replace")
            except (OSError, ValueError):
                return
            lines = [ln for ln in data.split("\n") if ln and ln != "WATCHDOG=1"]
            if lines:
                with self.cond:
                    self.states.extend(lines)
                    self.cond.notify_all()

    def wait(self, predicate, timeout):
        """Waits until predicate(states) is true; returns its last value."""
        with self.cond:
            return self.cond.wait_for(lambda: predicate(self.states), timeout)

    def count(self):
        with self.cond:
            return len(self.states)

    def close(self):
        self.closed = True
        self.thread.join(2.0)
        self.sock.close()
        if os.path.exists(self.path):
            os.unlink(self.path)


class Daemon:
    """One dxb daemon process: start (waits for READY=1), stop, kill, restart."""

    def __init__(self, harness, name, argv):
        self.h = harness
        self.name = name
        self.argv = argv
        self.log_path = os.path.join(harness.dir, f"{name}.log")
        self.proc = None
        self.notify = None
        self.exits = []  # (how it was stopped, return code)
        self.starts = 0
        # A wrapper command to run the daemon under, e.g. ["strace", "-f",
        # "-o", LOG]. It must exec the daemon as its direct child and exit with
        # the daemon's status; signals then go to that child, not the wrapper.
        self.prefix = []

    # -- state
    @property
    def pid(self):
        """The daemon's pid (with a prefix: the wrapper's child, once forked)."""
        if self.proc is None:
            return None
        if self.prefix:
            try:
                with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as f:
                    kids = f.read().split()
                if kids:
                    return int(kids[0])
            except OSError:
                pass
        return self.proc.pid

    def _send(self, sig):
        if self.prefix:
            os.kill(self.pid, sig)
        else:
            self.proc.send_signal(sig)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def log_text(self):
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def log_count(self, needle):
        return self.log_text().count(needle)

    def wait_log(self, needle, timeout=10.0, count=1):
        """Waits until the log holds needle at least count times."""
        return wait_until(lambda: self.log_count(needle) >= count, timeout,
                          what=f"'{needle}' x{count} in {self.name}.log")

    # -- life cycle
    def start(self, wait_ready=True, timeout=START_TIMEOUT_S, extra_args=()):
        if self.alive():
            raise HarnessError(f"{self.name} is already running")
        if self.notify is not None:
            self.notify.close()
        self.notify = NotifySocket(os.path.join(self.h.dir, f"{self.name}.ntf"))
        env = dict(os.environ)
        env["NOTIFY_SOCKET"] = self.notify.path
        env.pop("JOURNAL_STREAM", None)
        self.starts += 1
        log = open(self.log_path, "ab")
        log.write(f"---- harness: start #{self.starts}: {' '.join(self.argv)}\n".encode())
        log.flush()
        try:
            self.proc = subprocess.Popen(list(self.prefix) + list(self.argv) + list(extra_args),
                                         stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=log, env=env, cwd=self.h.dir,
                                         start_new_session=True)
        finally:
            log.close()
        if wait_ready:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout=START_TIMEOUT_S):
        """Waits for READY=1 on this start's notify socket."""
        deadline = time.monotonic() + timeout
        while True:
            if self.notify.wait(lambda st: any(x.startswith("READY=1") for x in st), 0.1):
                return
            if not self.alive():
                rc = self.proc.returncode if self.proc else None
                raise HarnessError(f"{self.name} exited (rc={rc}) before READY=1; log tail:\n"
                                   + tail(self.log_text()))
            if time.monotonic() >= deadline:
                raise HarnessError(f"{self.name} sent no READY=1 within {timeout:.0f}s; log tail:\n"
                                   + tail(self.log_text()))

    def wait_notify(self, state, timeout=10.0, after=0):
        """Waits for a notify line equal to state after the first `after` lines."""
        if not self.notify.wait(lambda st: state in st[after:], timeout):
            raise HarnessError(f"{self.name} did not notify {state} within {timeout:.0f}s")

    def signal(self, sig):
        if self.alive():
            self._send(sig)

    def kill9(self):
        """SIGKILL and reap; returns the return code."""
        if not self.alive():
            raise HarnessError(f"{self.name} is not running (rc={self.proc.returncode if self.proc else None})")
        self._send(signal.SIGKILL)
        rc = self.proc.wait(timeout=STOP_TIMEOUT_S)
        self.exits.append(("SIGKILL", rc))
        return rc

    def stop(self, timeout=STOP_TIMEOUT_S):
        """SIGTERM and wait; a daemon that does not exit in time is killed and
        the stop fails. Returns the return code."""
        if self.proc is None:
            return None
        if self.proc.poll() is not None:
            return self.proc.returncode
        self._send(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            if self.prefix:
                self._send(signal.SIGKILL)
            self.proc.kill()
            self.proc.wait()
            self.exits.append(("SIGTERM-timeout", -9))
            raise HarnessError(f"{self.name} did not exit within {timeout:.0f}s of SIGTERM")
        self.exits.append(("SIGTERM", rc))
        return rc

    def restart(self, **kw):
        self.stop()
        return self.start(**kw)

    def close(self):
        """Teardown: stop if running, close the notify socket. Returns problems."""
        problems = []
        if self.alive():
            try:
                self.stop()
            except HarnessError as exc:
                problems.append(str(exc))
        for how, rc in self.exits:
            if how == "SIGTERM" and rc != 0:
                problems.append(f"{self.name} exited with {rc} after SIGTERM")
        text = self.log_text()
        for mark in SANITIZER_MARKS:
            if mark in text:
                problems.append(f"{self.name}.log has a sanitizer report ({mark})")
                break
        if self.notify is not None:
            self.notify.close()
            self.notify = None
        return problems


def tail(text, lines=60):
    return "\n".join(text.splitlines()[-lines:])


class Broker(Daemon):
    """A dxb-broker with its config, data directory and registry."""

    def __init__(self, harness, name, key, nodes, overrides):
        self.key = key
        self.nodes = list(nodes)  # [dict(key=Key, region=, level=, clearance=)]
        self.port = free_port()
        self.endpoint = f"tcp://127.0.0.1:{self.port}"
        self.data_dir = os.path.join(harness.dir, name)
        self.admin = f"ipc://{self.data_dir}/admin.sock"
        self.config_path = os.path.join(harness.dir, f"{name}.yaml")
        self.overrides = overrides
        self.write_config()
        super().__init__(harness, name, [require_binary("broker"), "--config", self.config_path])

    @property
    def public_key(self):
        return self.key.public_key

    def config(self):
        cfg = {
            "broker": {
                "id": self.key.node,
                "endpoint": self.endpoint,
                "key": self.key.secret_path,
                "data_dir": self.data_dir,
                "log_level": "info",
            },
            "store": {"map_size": "64MiB", "sync": "durable", "batch_max": 256},
            "delivery": {"redeliver_ms": REDELIVER_MS, "max_attempts": 50},
            "heartbeat": {"interval_ms": HEARTBEAT_MS, "timeout_ms": TIMEOUT_MS},
            # Transport tests run without governance (no catalog, no grants);
            # the governance tests turn it on (governance={"enforce": True}).
            "governance": {"enforce": False},
            "nodes": [self._node_entry(n) for n in self.nodes],
        }
        for section, values in self.overrides.items():
            cfg.setdefault(section, {}).update(values)
        return cfg

    @staticmethod
    def _node_entry(n):
        return {
            "id": n["key"].node,
            "public_key_file": n["key"].pub_path,
            "region": str(n.get("region", "321300")),
            "level": n.get("level", "department"),
            "clearance": n.get("clearance", 1),
        }

    def write_config(self):
        write_yaml(self.config_path, self.config())

    def set_nodes(self, nodes):
        """Rewrites the registry (takes effect on reload())."""
        self.nodes = list(nodes)
        self.write_config()

    def reload(self, timeout=10.0):
        """SIGHUP, then waits for the READY=1 that ends the reload."""
        seen = self.notify.count()
        self.signal(signal.SIGHUP)
        self.wait_notify("READY=1", timeout, after=seen)


class Agent(Daemon):
    """A dxb-agent with its config and data directory."""

    def __init__(self, harness, key, broker, datasets, peers, overrides, inbound_default):
        self.key = key
        self.node = key.node
        self.broker = broker
        self.data_dir = os.path.join(harness.dir, "agent-" + key.node)
        self.api = f"ipc://{self.data_dir}/api.sock"
        self.config_path = os.path.join(harness.dir, f"agent-{key.node}.yaml")
        self.datasets = datasets or []
        self.peers = peers or []
        self.overrides = overrides
        self.inbound_default = inbound_default
        self.write_config()
        super().__init__(harness, "agent-" + key.node,
                         [require_binary("agent"), "--config", self.config_path])

    def config(self):
        cfg = {
            "agent": {
                "id": self.node,
                "key": self.key.secret_path,
                "data_dir": self.data_dir,
                "broker": self.broker.endpoint,
                "broker_public_key": self.broker.public_key,
                "log_level": "info",
            },
            "store": {"map_size": "256MiB", "sync": "durable"},
            "link": {
                "window": 256,
                "publish_window": 1024,
                "heartbeat_ms": HEARTBEAT_MS,
                "timeout_ms": TIMEOUT_MS,
                "reconnect_ms": 100,
            },
            "spool": {"scan_ms": 50},
            "inbound": {"default": self.inbound_default},
        }
        if self.datasets:
            cfg["datasets"] = self.datasets
        if self.peers:
            cfg["peers"] = [{"id": k.node, "public_key": k.public_key} for k in self.peers]
        for section, values in self.overrides.items():
            cfg.setdefault(section, {}).update(values)
        return cfg

    def write_config(self):
        write_yaml(self.config_path, self.config())

    def outbox(self, dataset):
        return os.path.join(self.data_dir, "outbox", dataset)

    def inbox(self, dataset):
        return os.path.join(self.data_dir, "inbox", dataset)

    def drop(self, dataset, name, data):
        """Puts a file into the outbox spool the way applications must: write
        a dot-file, fsync, rename into place."""
        d = self.outbox(dataset)
        os.makedirs(d, exist_ok=True)
        tmp = os.path.join(d, "." + name + ".part")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, os.path.join(d, name))

    def outbox_pending(self, dataset):
        d = self.outbox(dataset)
        if not os.path.isdir(d):
            return []
        return [n for n in os.listdir(d) if not n.startswith(".")]

    def received(self, dataset):
        """{name: (bytes, sidecar dict or None)} of the files in the inbox.
        Only files whose sidecar exists count as received."""
        d = self.inbox(dataset)
        out = {}
        if not os.path.isdir(d):
            return out
        names = set(os.listdir(d))
        for n in names:
            if n.startswith(".") or n.endswith(".dxbmeta"):
                continue
            if n + ".dxbmeta" not in names:
                continue
            with open(os.path.join(d, n), "rb") as f:
                data = f.read()
            with open(os.path.join(d, n + ".dxbmeta"), encoding="utf-8") as f:
                meta = json.load(f)
            out[n] = (data, meta)
        return out

    def inbox_count(self, dataset):
        d = self.inbox(dataset)
        if not os.path.isdir(d):
            return 0
        return sum(1 for n in os.listdir(d) if n.endswith(".dxbmeta") and not n.startswith("."))

    def client(self):
        return self.h.track(ApiClient(self.api))


# ---- the harness ------------------------------------------------------------

class Harness:
    """One test's world: temp dir, keys, daemons, dxbctl."""

    def __init__(self, name="t"):
        # Short path: unix socket paths (notify, ipc://) must stay < 108 bytes.
        self.dir = tempfile.mkdtemp(prefix="dxbt-", dir="/tmp")
        self.keydir = os.path.join(self.dir, "keys")
        self.name = name
        self.daemons = []
        self.closables = []
        self.keys = {}
        self.zctx = zmq.Context()

    # -- keys and processes
    def keygen(self, node):
        out = subprocess.run([require_binary("dxbctl"), "keygen", "--name", node, "--out", self.keydir],
                             capture_output=True, text=True, timeout=30)
        if out.returncode != 0:
            raise HarnessError(f"dxbctl keygen {node} failed rc={out.returncode}: {out.stderr}")
        key = Key(node, os.path.join(self.keydir, node + ".pub"),
                  os.path.join(self.keydir, node + ".secret"))
        self.keys[node] = key
        return key

    def broker(self, nodes, name="broker", broker_id="sq.hub", start=True, **overrides):
        """Creates (and by default starts) a broker. nodes: Key objects or dicts
        {key, region, level, clearance}."""
        key = self.keys.get(broker_id) or self.keygen(broker_id)
        entries = [n if isinstance(n, dict) else {"key": n} for n in nodes]
        b = Broker(self, name, key, entries, overrides)
        self.daemons.append(b)
        if start:
            b.start()
        return b

    def agent(self, key, broker, datasets=None, peers=None, start=True, inbound="spool",
              **overrides):
        a = Agent(self, key, broker, datasets, peers, overrides, inbound)
        self.daemons.append(a)
        if start:
            a.start()
        return a

    def track(self, obj):
        self.closables.append(obj)
        return obj

    def raw_peer(self, key, broker):
        return self.track(RawPeer(self.zctx, key, broker))

    def run(self, kind, *args, timeout=60, check=False, **kw):
        """Runs one of the built tools and returns the CompletedProcess."""
        out = subprocess.run([require_binary(kind), *args], capture_output=True, text=True,
                             timeout=timeout, **kw)
        if check and out.returncode != 0:
            raise HarnessError(f"{kind} {' '.join(args)} failed rc={out.returncode}:\n"
                               f"{out.stdout}\n{out.stderr}")
        return out

    # -- dxbctl
    def dxbctl(self, *args, json=True, broker=None, check=True, timeout=15):
        """Runs dxbctl against a broker's admin socket. With json=True returns
        the parsed result; else the CompletedProcess."""
        b = broker or self._only_broker()
        argv = ["--admin", b.admin, "--timeout", str(int(timeout * 1000))]
        if json:
            argv.append("--json")
        out = self.run("dxbctl", *argv, *args, timeout=timeout + 10)
        if check and out.returncode != 0:
            raise HarnessError(f"dxbctl {' '.join(args)} failed rc={out.returncode}: {out.stderr}")
        if not json:
            return out
        if out.returncode != 0:
            return None
        return _json_loads(out.stdout)

    def _only_broker(self):
        bs = [d for d in self.daemons if isinstance(d, Broker)]
        if len(bs) != 1:
            raise HarnessError("pass broker= when the test has more than one broker")
        return bs[0]

    def nodes(self, broker=None):
        return {row["node"]: row for row in self.dxbctl("nodes", broker=broker)}

    def queues(self, broker=None):
        return {row["node"]: row for row in self.dxbctl("queues", broker=broker)}

    def stats(self, broker=None):
        return self.dxbctl("stats", broker=broker)[0]

    def audit(self, n=200, broker=None):
        return self.dxbctl("audit", "tail", "--n", str(n), broker=broker)

    def is_connected(self, node, broker=None):
        row = self.nodes(broker).get(node)
        return bool(row and row.get("connected"))

    def wait_connected(self, node, timeout=15.0, broker=None):
        wait_until(lambda: self.is_connected(node, broker), timeout, interval=0.1,
                   what=f"node {node} connected")

    def wait_disconnected(self, node, timeout=15.0, broker=None):
        wait_until(lambda: not self.is_connected(node, broker), timeout, interval=0.1,
                   what=f"node {node} disconnected")

    def wait_queue(self, node, msgs, timeout=15.0, broker=None):
        """Waits until node's broker queue holds exactly msgs messages."""
        wait_until(lambda: self.queues(broker).get(node, {}).get("msgs") == msgs, timeout,
                   interval=0.1, what=f"queue of {node} at {msgs} messages")

    # -- teardown
    def logs(self):
        parts = []
        for d in self.daemons:
            parts.append(f"===== {d.name}.log ({d.log_path}) =====\n{tail(d.log_text(), 150)}")
        return "\n".join(parts)

    def close(self):
        """Stops everything. Returns a list of problems (non-zero exits after
        SIGTERM, sanitizer reports)."""
        problems = []
        for c in reversed(self.closables):
            try:
                c.close()
            except Exception:  # noqa: BLE001 - best effort at teardown
                pass
        # Agents first, then brokers, the way an operator would.
        for d in sorted(self.daemons, key=lambda d: isinstance(d, Broker)):
            problems.extend(d.close())
        self.zctx.term()
        return problems

    def remove(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def _json_loads(text):
    text = text.strip()
    if not text:
        return None
    return json.loads(text)


# ---- wire peers -------------------------------------------------------------

def pack(obj):
    return msgpack.packb(obj, use_bin_type=True)


def unpack(data):
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


def make_envelope(sender, dataset, recipients, body=None, seq=1, ttl_s=0, msg_id=None,
                  suite=1, kind=1, region="", created_ms=None):
    """An ENVELOPE (PROTOCOL.md 4.1) as a Python list, ready for pack().
    The body is opaque to the broker; by default it is random bytes."""
    msg_id = msg_id or secrets.token_bytes(16)
    body = body if body is not None else secrets.token_bytes(64)
    header = [msg_id, sender, dataset, kind, seq, created_ms or int(time.time() * 1000), ttl_s,
              list(recipients), region, suite, 0, len(body)]
    return [header, hashlib.blake2b(body, digest_size=32).digest(), body]


class RawPeer:
    """An agent-side CURVE DEALER speaking the wire directly (no dxb code).

    A background thread owns the socket between calls (every use is under
    self.lock): it answers the broker's PINGs, sends our own PING every
    HEARTBEAT_MS / 2 while `keepalive` is set, and files every other frame in
    `inbox`, so a session survives while the test waits on dxbctl.
    """

    def __init__(self, ctx, key, broker, server_key=None, keepalive=True):
        self.key = key
        self.broker = broker
        pub, sec = key.curve_keys()
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.SNDHWM, 100000)
        self.sock.curve_publickey = z85.encode(pub)
        self.sock.curve_secretkey = z85.encode(sec)
        self.sock.curve_serverkey = z85.encode(server_key or broker.key.curve_public())
        self.monitor = self.sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED
                                                    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
                                                    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                                                    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
        self.sock.connect(broker.endpoint)
        self.events = []
        self.inbox = []  # frames (lists) not yet taken by recv()
        self.lock = threading.Lock()
        self.cond = threading.Condition()
        self.keepalive = keepalive
        self.closed = False
        self.last_ping = 0.0
        self.hello_sent = False  # PINGs belong to a session: none before HELLO
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.closed:
            with self.lock:
                if self.closed:
                    return
                now = time.monotonic()
                if self.keepalive and self.hello_sent and now - self.last_ping >= HEARTBEAT_MS / 2000.0:
                    self.last_ping = now
                    self._send_locked([1, T_PING, int(time.time() * 1000)])
                got = []
                while self.sock.poll(0):
                    frame = unpack(self.sock.recv())
                    if frame[1] == T_PING:
                        self._send_locked([1, T_PONG, frame[2]])
                    elif frame[1] != T_PONG:
                        got.append(frame)
            if got:
                with self.cond:
                    self.inbox.extend(got)
                    self.cond.notify_all()
            time.sleep(0.005)

    def _send_locked(self, frame):
        try:
            self.sock.send(pack(frame), zmq.NOBLOCK)
            return True
        except zmq.Again:
            return False

    def close(self):
        with self.lock:
            self.closed = True
        self.thread.join(2.0)
        try:
            self.sock.disable_monitor()
        except zmq.ZMQError:
            pass
        self.monitor.close(0)
        self.sock.close(0)

    def poll_events(self):
        from zmq.utils.monitor import recv_monitor_message

        while self.monitor.poll(0):
            self.events.append(recv_monitor_message(self.monitor)["event"])
        return self.events

    def send(self, frame):
        """Sends one frame; returns False when it cannot be queued (no
        connection: e.g. the handshake was refused)."""
        with self.lock:
            return self._send_locked(frame)

    def recv(self, timeout=5.0, types=None):
        """Takes the oldest frame of one of `types` (any when None) from the
        inbox, waiting up to timeout; None at the deadline. Other frames stay."""
        def pick(_=None):
            for i, f in enumerate(self.inbox):
                if types is None or f[1] in types:
                    return i
            return None

        with self.cond:
            if not self.cond.wait_for(lambda: pick() is not None, timeout):
                return None
            return self.inbox.pop(pick())

    def recv_all(self, types):
        """Takes every waiting frame of `types` at once."""
        with self.cond:
            got = [f for f in self.inbox if f[1] in types]
            self.inbox = [f for f in self.inbox if f[1] not in types]
            return got

    def hello(self, node=None, window=256, timeout=5.0):
        """Sends HELLO; returns the WELCOME or ERROR frame (or None)."""
        self.send([1, T_HELLO, node or self.key.node, "dxb-test", window, HEARTBEAT_MS])
        self.hello_sent = True
        return self.recv(timeout, types=(T_WELCOME, T_ERROR))

    def publish(self, envelopes, timeout=10.0):
        """Sends one PUBLISH; returns {msg_id: code} from the PUBACK, the
        ERROR frame, or None at the deadline."""
        self.send([1, T_PUBLISH, envelopes])
        frame = self.recv(timeout, types=(T_PUBACK, T_ERROR))
        if frame is None or frame[1] != T_PUBACK:
            return frame
        return {bytes(r[0]): r[1] for r in frame[2]}

    def dack(self, msg_ids, code=0):
        return self.send([1, T_DACK, [[bytes(m), code] for m in msg_ids]])

    def take_deliveries(self, timeout=0.0):
        """Envelopes of the DELIVER frames that came (waits up to timeout for
        the first one)."""
        if timeout > 0:
            first = self.recv(timeout, types=(T_DELIVER,))
            frames = [first] if first else []
        else:
            frames = []
        frames += self.recv_all((T_DELIVER,))
        return [env for f in frames for env in f[2]]


class ApiClient:
    """An application on an agent's local API (PROTOCOL.md section 9)."""

    def __init__(self, endpoint, ctx=None):
        self.own_ctx = ctx is None
        self.ctx = ctx or zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.SNDTIMEO, 5000)  # a send never hangs a test
        self.sock.connect(endpoint)
        self.req = random.randint(1, 1 << 20)
        self.results = {}  # req -> (code, msg_id hex, text)
        self.messages = []  # received API_MESSAGE dicts, in arrival order

    def close(self):
        self.sock.close(0)
        if self.own_ctx:
            self.ctx.term()

    def _pump(self, timeout):
        if not self.sock.poll(int(timeout * 1000)):
            return False
        while True:
            try:
                data = self.sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                return True
            f = unpack(data)
            if f[1] == T_API_RESULT:
                self.results[f[2]] = (f[3], bytes(f[4]).hex(), f[5])
            elif f[1] == T_API_MESSAGE:
                self.messages.append({"msg_id": bytes(f[2]).hex(), "sender": f[3],
                                      "dataset": f[4], "seq": f[5], "created_ms": f[6],
                                      "name": f[7], "payload": bytes(f[8])})

    def publish_async(self, dataset, recipients, name, payload, ttl_s=0):
        self.req += 1
        self.sock.send(pack([1, T_API_PUBLISH, self.req, dataset, list(recipients), name,
                             payload, ttl_s]))
        return self.req

    def wait_result(self, req, timeout=15.0):
        deadline = time.monotonic() + timeout
        while req not in self.results:
            left = deadline - time.monotonic()
            if left <= 0:
                raise HarnessError(f"no API_RESULT for request {req} within {timeout}s")
            self._pump(left)
        return self.results.pop(req)

    def collect(self, timeout=0.0):
        """Reads whatever arrives within timeout; returns nothing."""
        self._pump(timeout)

    def publish(self, dataset, recipients, name, payload, ttl_s=0, timeout=15.0):
        """Publishes and waits; returns the message id (hex) or raises."""
        code, msg_id, text = self.wait_result(
            self.publish_async(dataset, recipients, name, payload, ttl_s), timeout)
        if code != E_OK:
            raise HarnessError(f"API_PUBLISH refused code={code} text={text}")
        return msg_id

    def subscribe(self, dataset="", timeout=10.0):
        self.req += 1
        req = self.req
        self.sock.send(pack([1, T_API_SUBSCRIBE, req, dataset]))
        code, _, text = self.wait_result(req, timeout)
        if code != E_OK:
            raise HarnessError(f"API_SUBSCRIBE refused code={code} text={text}")

    def ack(self, msg_id_hex):
        self.sock.send(pack([1, T_API_ACK, bytes.fromhex(msg_id_hex)]))


# ---- message-flow checking (Jepsen-style total-queue checker) --------------

class FlowChecker:
    """Classifies every message of a flow as the reliability anchors ask:
    lost (acked, never delivered), duplicated, reordered (per sender), and
    unexpected (delivered, never sent). Pass = all four empty."""

    def __init__(self):
        self.sent = {}  # (sender, seq) -> "ok" | "unknown"
        self.delivered = []  # (sender, seq) in delivery order

    def attempt(self, sender, seq):
        self.sent[(sender, seq)] = "unknown"

    def acked(self, sender, seq):
        self.sent[(sender, seq)] = "ok"

    def deliver(self, sender, seq):
        self.delivered.append((sender, seq))

    def acked_count(self):
        return sum(1 for v in self.sent.values() if v == "ok")

    def report(self):
        seen = {}
        dup, unexpected, reordered = [], [], []
        last = {}
        for sender, seq in self.delivered:
            k = (sender, seq)
            seen[k] = seen.get(k, 0) + 1
            if seen[k] == 2:
                dup.append(k)
            if k not in self.sent:
                unexpected.append(k)
            if seen[k] == 1:
                if sender in last and seq <= last[sender]:
                    reordered.append((k, last[sender]))
                last[sender] = max(seq, last.get(sender, seq))
        lost = sorted(k for k, v in self.sent.items() if v == "ok" and k not in seen)
        recovered = sum(1 for k, v in self.sent.items() if v == "unknown" and k in seen)
        return {"acked": self.acked_count(), "delivered": len(seen), "lost": lost,
                "duplicated": dup, "reordered": reordered, "unexpected": unexpected,
                "recovered": recovered}

    def assert_clean(self):
        r = self.report()
        summary = {k: (len(v) if isinstance(v, list) else v) for k, v in r.items()}
        assert not (r["lost"] or r["duplicated"] or r["reordered"] or r["unexpected"]), \
            f"flow check failed: {summary}; first lost={r['lost'][:5]} dup={r['duplicated'][:5]} " \
            f"reordered={r['reordered'][:5]} unexpected={r['unexpected'][:5]}"
        return r


def seq_payload(run, sender, seq, size=200):
    """A payload that names its sender and sequence number, padded to size."""
    head = f"dxb-test run={run} sender={sender} seq={seq}\n".encode()
    return head + b"x" * max(0, size - len(head))


def parse_seq_payload(data):
    first = data.split(b"\n", 1)[0].decode()
    fields = dict(p.split("=", 1) for p in first.split()[1:])
    return fields["run"], fields["sender"], int(fields["seq"])
