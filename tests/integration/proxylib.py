"""proxylib: a userspace TCP proxy for the dxb integration tests.

Why a proxy rather than dxb's own counters or a network namespace:

- Independent measurement. The resume test (issue 6) must show that an
  interrupted transfer re-sends little. Counting the bytes that really
  crossed the link, outside dxb, measures that without trusting the code
  under test: a proxy between an agent and the broker sees every byte of
  every connection the agent ever made, across reconnects and restarts of
  either end (the counters belong to the proxy, not to a connection).
- Cutting the link without touching the processes. cut() resets every
  current connection (both sides get an RST, as when a NAT box or firewall
  drops state), while the processes stay untouched and the listener stays
  open, so the agent's ZeroMQ socket reconnects through the proxy at once.
  Unlike the nftables helpers in faultlib this needs neither root nor
  network namespaces, so it runs everywhere the tests run.

The proxy is one thread per Proxy running a selectors loop over
non-blocking sockets with 1 MiB reads; a direction stops reading while its
bytes wait to be written (back-pressure), so memory stays bounded at about
1 MiB per direction per connection. On loopback it forwards several hundred
MB/s, well above what the daemons need.

    p = Proxy("127.0.0.1", broker.port)      # listens on 127.0.0.1:p.port
    agent config: {"agent": {"broker": p.endpoint}}
    p.cut()                                   # RST every current connection
    p.pause(); p.resume()                     # stop / restart accepting
    p.c2s, p.s2c                              # bytes client->server, server->client
    p.close()
"""

import errno
import queue
import selectors
import socket
import struct
import threading
import time

RECV_SIZE = 1 << 20
_LINGER_RST = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST


def _rst_close(sock):
    """Closes a socket abruptly: SO_LINGER 0 makes close() send an RST."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class _Conn:
    """One proxied connection: the accepted client socket and the socket to
    the target, with the bytes read from one and not yet written to the
    other, per direction."""

    def __init__(self, client, server, ident):
        self.ident = ident
        self.client = client
        self.server = server
        self.pending = {client: b"", server: b""}  # bytes waiting to be written TO that socket
        self.eof = {client: False, server: False}  # that socket sent FIN
        self.closed = False

    def peer(self, sock):
        return self.server if sock is self.client else self.client


class Proxy:
    """A TCP proxy on a free 127.0.0.1 port forwarding to (host, port).

    Counters (bytes read from one side, hence put on the wire by that side's
    process) are totals over the proxy's whole life:
      c2s  client -> server (e.g. agent -> broker)
      s2c  server -> client
    plus `accepted` (connections accepted), `cuts` (cut() calls) and
    `refused` (clients closed because the target was not reachable).
    """

    def __init__(self, target_host, target_port, listen_host="127.0.0.1", name="proxy"):
        self.target = (target_host, int(target_port))
        self.name = name
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind((listen_host, 0))
        self.lsock.listen(64)
        self.lsock.setblocking(False)
        self.host, self.port = self.lsock.getsockname()
        self.endpoint = f"tcp://{self.host}:{self.port}"
        self.lock = threading.Lock()
        self.c2s = 0
        self.s2c = 0
        self.accepted = 0
        self.cuts = 0
        self.refused = 0
        self.sel = selectors.DefaultSelector()
        self.conns = {}  # socket -> _Conn (both sockets of each connection)
        self.next_ident = 0
        self.accepting = True
        self.commands = queue.Queue()
        self.wake_r, self.wake_w = socket.socketpair()
        self.wake_r.setblocking(False)
        self.wake_w.setblocking(False)
        self.sel.register(self.wake_r, selectors.EVENT_READ, "wake")
        self.sel.register(self.lsock, selectors.EVENT_READ, "listen")
        self.stopped = False
        self.thread = threading.Thread(target=self._loop, name=f"proxy-{name}", daemon=True)
        self.thread.start()

    # ---- public API (any thread) ------------------------------------------

    def counts(self):
        """(c2s, s2c) bytes so far."""
        with self.lock:
            return self.c2s, self.s2c

    def connections(self):
        """Number of connections open right now."""
        done = threading.Event()
        box = []
        self._call(lambda: box.append(len({id(c) for c in self.conns.values()})), done)
        return box[0] if box else 0

    def cut(self, timeout=5.0):
        """Resets (RST) every current connection on both sides. The listener
        stays: clients reconnect through the proxy. Returns how many
        connections were cut."""
        box = []
        self._call(lambda: box.append(self._cut_all()), timeout=timeout)
        with self.lock:
            self.cuts += 1
        return box[0] if box else 0

    def pause(self, timeout=5.0):
        """Stops accepting (connections queue in the backlog). Existing
        connections are not touched; combine with cut() for an outage."""
        self._call(self._pause, timeout=timeout)

    def resume(self, timeout=5.0):
        """Accepts again (the backlog is served first)."""
        self._call(self._resume, timeout=timeout)

    def close(self):
        """Stops the loop, resets every connection and closes the listener.
        Idempotent."""
        if self.stopped:
            return
        self.stopped = True
        self._wake()
        self.thread.join(5.0)
        for sock in list(self.conns):
            _rst_close(sock)
        self.conns.clear()
        for s in (self.lsock, self.wake_r, self.wake_w):
            try:
                s.close()
            except OSError:
                pass
        try:
            self.sel.close()
        except Exception:  # noqa: BLE001 - best effort
            pass

    def __repr__(self):
        c2s, s2c = self.counts()
        return f"<Proxy {self.name} {self.endpoint} -> {self.target} c2s={c2s} s2c={s2c}>"

    # ---- loop-thread side ---------------------------------------------------

    def _wake(self):
        try:
            self.wake_w.send(b"x")
        except OSError:
            pass

    def _call(self, fn, done=None, timeout=5.0):
        """Runs fn in the loop thread and waits for it."""
        if self.stopped:
            return
        done = done or threading.Event()
        self.commands.put((fn, done))
        self._wake()
        if not done.wait(timeout):
            raise TimeoutError(f"proxy {self.name}: command not run within {timeout}s")

    def _pause(self):
        if self.accepting:
            self.sel.unregister(self.lsock)
            self.accepting = False

    def _resume(self):
        if not self.accepting:
            self.sel.register(self.lsock, selectors.EVENT_READ, "listen")
            self.accepting = True

    def _cut_all(self):
        seen = {}
        for c in self.conns.values():
            seen[id(c)] = c
        for c in seen.values():
            self._drop(c, rst=True)
        return len(seen)

    def _interest(self, conn, sock):
        """Re-registers sock for what it needs now: read while the other
        direction has nothing waiting, write while bytes wait for it."""
        if conn.closed:
            return
        ev = 0
        if not conn.eof[sock] and not conn.pending[conn.peer(sock)]:
            ev |= selectors.EVENT_READ
        if conn.pending[sock]:
            ev |= selectors.EVENT_WRITE
        try:
            key = self.sel.get_key(sock)
        except KeyError:
            key = None
        if ev == 0:
            if key is not None:
                self.sel.unregister(sock)
        elif key is None:
            self.sel.register(sock, ev, conn)
        elif key.events != ev:
            self.sel.modify(sock, ev, conn)

    def _drop(self, conn, rst):
        if conn.closed:
            return
        conn.closed = True
        for sock in (conn.client, conn.server):
            try:
                self.sel.unregister(sock)
            except (KeyError, ValueError):
                pass
            self.conns.pop(sock, None)
            if rst:
                _rst_close(sock)
            else:
                try:
                    sock.close()
                except OSError:
                    pass

    def _accept(self):
        while True:
            try:
                client, _ = self.lsock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            server.settimeout(2.0)
            try:
                server.connect(self.target)
            except OSError:
                # Target down (broker killed): refuse the client the way the
                # target would have, so its reconnect timer runs.
                _rst_close(server)
                _rst_close(client)
                with self.lock:
                    self.refused += 1
                continue
            for s in (client, server):
                s.setblocking(False)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.next_ident += 1
            conn = _Conn(client, server, self.next_ident)
            self.conns[client] = conn
            self.conns[server] = conn
            with self.lock:
                self.accepted += 1
            self._interest(conn, client)
            self._interest(conn, server)

    def _on_read(self, conn, sock):
        try:
            data = sock.recv(RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._drop(conn, rst=True)  # RST from one side: pass it on
            return
        other = conn.peer(sock)
        if not data:
            conn.eof[sock] = True
            if not conn.pending[other]:
                self._finish_eof(conn, sock)
            else:
                self._interest(conn, sock)
            return
        with self.lock:
            if sock is conn.client:
                self.c2s += len(data)
            else:
                self.s2c += len(data)
        # Try to write at once; what does not fit waits (and reading from
        # sock stops until it is written).
        try:
            n = other.send(data)
        except (BlockingIOError, InterruptedError):
            n = 0
        except OSError:
            self._drop(conn, rst=True)
            return
        conn.pending[other] = data[n:]
        self._interest(conn, sock)
        self._interest(conn, other)

    def _on_write(self, conn, sock):
        buf = conn.pending[sock]
        try:
            n = sock.send(buf)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._drop(conn, rst=True)
            return
        conn.pending[sock] = buf[n:]
        other = conn.peer(sock)
        if not conn.pending[sock] and conn.eof[other]:
            self._finish_eof(conn, other)
            return
        self._interest(conn, sock)
        self._interest(conn, other)

    def _finish_eof(self, conn, sock):
        """sock sent FIN and everything it sent is written: pass the FIN on;
        when both directions are finished, close."""
        other = conn.peer(sock)
        try:
            other.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        if conn.eof[other]:
            self._drop(conn, rst=False)
        else:
            self._interest(conn, sock)
            self._interest(conn, other)

    def _loop(self):
        while not self.stopped:
            try:
                events = self.sel.select(0.5)
            except OSError as exc:
                if exc.errno == errno.EINTR:
                    continue
                raise
            for key, mask in events:
                if self.stopped:
                    break
                if key.data == "wake":
                    try:
                        while self.wake_r.recv(4096):
                            pass
                    except (BlockingIOError, InterruptedError):
                        pass
                    except OSError:
                        pass
                    continue
                if key.data == "listen":
                    self._accept()
                    continue
                conn = key.data
                if conn.closed:
                    continue
                if mask & selectors.EVENT_WRITE:
                    self._on_write(conn, key.fileobj)
                if not conn.closed and mask & selectors.EVENT_READ:
                    self._on_read(conn, key.fileobj)
            while True:
                try:
                    fn, done = self.commands.get_nowait()
                except queue.Empty:
                    break
                try:
                    fn()
                finally:
                    done.set()


def wait_for_connections(proxy, n=1, timeout=15.0):
    """Waits until the proxy holds at least n open connections."""
    deadline = time.monotonic() + timeout
    while proxy.connections() < n:
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{proxy.name}: fewer than {n} connections after {timeout}s")
        time.sleep(0.05)
