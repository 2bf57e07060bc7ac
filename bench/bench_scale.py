#!/usr/bin/env python3
"""Helpers of tools/bench's scale part (fan-out, offline queue, many nodes).

    bench_scale.py keys N DIR PREFIX
        N node identities bench.PREFIXnnnn: DIR/nodes.yaml (broker registry
        entries with inline public_key) and DIR/seeds.txt ("node seed-hex").
    bench_scale.py mdbstat ENVDIR PREFIX
        allocated size of ENVDIR/data.mdb and `mdb_stat -e -f -a` figures.
    bench_scale.py waitq DXBCTL ADMIN NODE OP COUNT TIMEOUT PREFIX [SINCE]
        polls `dxbctl --json queues` every 0.2 s until NODE's queue holds
        OP (ge|eq) COUNT messages (NODE "*" = every node); prints
        PREFIX_s (seconds since SINCE, a time.time() value; default: start).
    bench_scale.py conns ... (see conns_main)
        opens N CURVE DEALER connections that each send HELLO and wait for
        WELCOME, keeps them alive, measures PING round trips.

Results are "key=value" lines on stdout, as the C bench programs print them.
Run with Debian's python3 (python3-zmq, python3-msgpack, python3-nacl).
"""
import json
import os
import re
import subprocess
import sys
import threading
import time


def put(k, v):
    print(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}", flush=True)


# ---- keys ----------------------------------------------------------------

def keys_main(argv):
    import nacl.bindings as nb
    from zmq.utils import z85

    n, d, prefix = int(argv[0]), argv[1], argv[2]
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "nodes.yaml"), "w") as ny, open(os.path.join(d, "seeds.txt"), "w") as sf:
        for i in range(n):
            node = f"bench.{prefix}{i:04d}"
            seed = os.urandom(32)
            pk, _ = nb.crypto_sign_seed_keypair(seed)
            ny.write(f"  - id: {node}\n    public_key: '{z85.encode(pk).decode()}'\n"
                     f"    region: \"321300\"\n    level: department\n    clearance: 1\n")
            sf.write(f"{node} {seed.hex()}\n")
    os.chmod(os.path.join(d, "seeds.txt"), 0o600)


# ---- LMDB figures ----------------------------------------------------------

def mdbstat(envdir):
    """{'pages_used', 'pages_free', 'page_size', 'db': {name: {...}}}"""
    out = subprocess.run(["mdb_stat", "-e", "-f", "-a", envdir], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    r = {"db": {}}
    section = None
    for line in out.splitlines():
        m = re.match(r"^Status of (.*)$", line)
        if m:
            section = m.group(1)
            r["db"][section] = {}
            continue
        if line.startswith("Freelist Status"):
            section = "@free"
            r["db"][section] = {}
            continue
        m = re.match(r"^\s+([A-Za-z ]+):\s+(\d+)$", line)
        if not m:
            continue
        k, v = m.group(1).strip().lower().replace(" ", "_"), int(m.group(2))
        if k == "number_of_pages_used":
            r["pages_used"] = v
        elif k == "page_size":
            r["page_size"] = v
        elif k == "free_pages":
            r["pages_free"] = v
        elif section is not None:
            r["db"][section][k] = v
    return r


def mdbstat_main(argv):
    envdir, p = argv[0], argv[1]
    st = os.stat(os.path.join(envdir, "data.mdb"))
    put(f"{p}_file_bytes", st.st_size)
    put(f"{p}_file_alloc_bytes", st.st_blocks * 512)
    r = mdbstat(envdir)
    put(f"{p}_page_size", r.get("page_size", 4096))
    put(f"{p}_pages_used", r.get("pages_used", 0))
    put(f"{p}_pages_free", r.get("pages_free", 0))
    for name, d in sorted(r["db"].items()):
        if name in ("@free", "Main DB"):
            continue
        pages = d.get("branch_pages", 0) + d.get("leaf_pages", 0) + d.get("overflow_pages", 0)
        if pages == 0:
            continue  # absent keys read as 0
        put(f"{p}_db_{name}_pages", pages)
        put(f"{p}_db_{name}_overflow_pages", d.get("overflow_pages", 0))
        put(f"{p}_db_{name}_entries", d.get("entries", 0))


# ---- queue depth ---------------------------------------------------------------

def queues(dxbctl, admin):
    out = subprocess.run([dxbctl, "--admin", admin, "--json", "--timeout", "20000", "queues"],
                         capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        return None
    return {x["node"]: x for x in json.loads(out.stdout)}


def waitq_main(argv):
    dxbctl, admin, node, op, count, limit, p = argv[:7]
    since = float(argv[7]) if len(argv) > 7 else time.time()
    count, limit = int(count), float(limit)
    t_end = time.time() + limit
    last = None
    while True:
        q = queues(dxbctl, admin)
        now = time.time()
        if q is not None:
            vals = [x["msgs"] for x in q.values()] if node == "*" else [q.get(node, {}).get("msgs", 0)]
            last = vals
            if all((v >= count) if op == "ge" else (v == count) for v in vals):
                put(f"{p}_s", now - since)
                return 0
        if now > t_end:
            print(f"bench_scale: waitq {p}: queue of {node} is {last}, wanted {op} {count} "
                  f"after {limit:.0f} s", file=sys.stderr)
            return 1
        time.sleep(0.2)


# ---- many connections --------------------------------------------------------

T_HELLO, T_WELCOME, T_PING, T_PONG, T_ERROR, T_DIRECTORY, T_BYE = 1, 2, 8, 9, 10, 11, 12
E_EAUTH = 5


def proc_cpu_ticks(pid):
    st = open(f"/proc/{pid}/stat").read()
    f = st[st.rindex(")") + 2:].split()
    return int(f[11]) + int(f[12])


def proc_status(pid, key):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * q))] if xs else 0.0


def conns_main(argv):
    """conns SEEDS BROKER_PUB ENDPOINT ADMIN DXBCTL BROKER_PID PREFIX [-- CMD...]

    Opens one CURVE DEALER per line of SEEDS, sends HELLO on each, waits for
    every WELCOME, then for `dxbctl nodes` to show them all connected; keeps
    them alive (PING every 1.5 s), measures the broker's RSS, fds and CPU
    while idle, PING round trips one connection at a time and all at once,
    then runs CMD (if given) with the sessions still up and reports the
    broker's CPU during it. Ends the sessions with BYE."""
    import msgpack
    import nacl.bindings as nb
    import zmq
    from zmq.utils import z85

    cmd = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    seeds_path, broker_pub, endpoint, admin, dxbctl, bpid, p = argv[:7]
    bpid = int(bpid)
    tick = os.sysconf("SC_CLK_TCK")
    fields = dict(line.split(":", 1) for line in open(broker_pub) if ":" in line)
    server_key = nb.crypto_sign_ed25519_pk_to_curve25519(z85.decode(fields["public_key"].strip()))
    nodes = []
    for line in open(seeds_path):
        node, seed = line.split()
        pk, sk = nb.crypto_sign_seed_keypair(bytes.fromhex(seed))
        nodes.append((node, nb.crypto_sign_ed25519_pk_to_curve25519(pk),
                      nb.crypto_sign_ed25519_sk_to_curve25519(sk)))
    n = len(nodes)
    pack = lambda o: msgpack.packb(o, use_bin_type=True)  # noqa: E731
    put(f"{p}_n", n)
    put(f"{p}_rss_before_kib", proc_status(bpid, "VmRSS"))

    def commits():
        out = subprocess.run([dxbctl, "--admin", admin, "--json", "--timeout", "20000", "stats"],
                             capture_output=True, text=True, timeout=60)
        return json.loads(out.stdout)[0]["commits"] if out.returncode == 0 else 0

    commits0, cpu0 = commits(), proc_cpu_ticks(bpid)
    trace = [[] for _ in range(n)] if os.environ.get("DXB_BENCH_CONNS_TRACE") else None
    ctx = zmq.Context(io_threads=1)
    ctx.setsockopt(zmq.MAX_SOCKETS, n + 64)
    socks = []
    index = {}
    t0 = time.monotonic()
    for node, pub, sec in nodes:
        s = ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.RCVHWM, 0)
        s.curve_publickey = z85.encode(pub)
        s.curve_secretkey = z85.encode(sec)
        s.curve_serverkey = z85.encode(server_key)
        s.connect(endpoint)
        # queued until the CURVE handshake is done
        s.send(pack([1, T_HELLO, node, "dxb-bench", 256, 1000]))
        if trace is not None:
            trace[len(socks)].append(("hello", time.time()))
        index[s] = len(socks)
        socks.append(s)
    t_opened = time.monotonic() - t0
    poller = zmq.Poller()
    for s in socks:
        poller.register(s, zmq.POLLIN)
    welcome = [None] * n
    errors = []
    dir_bytes = 0
    dir_frames = 0
    last_ping = [time.monotonic()] * n
    up = [False] * n  # WELCOMEd and not told "no session" since
    gap = [0.0]  # longest time a session went without a frame from us
    loop_gap = [0.0, time.monotonic()]  # longest time between two serve() calls
    pending = {}  # (i, token) -> send time
    rtts = []
    token = [0]
    rehello = [0]

    def handle(i, raw, now):
        nonlocal dir_bytes, dir_frames
        f = msgpack.unpackb(raw, raw=False, strict_map_key=False)
        t = f[1]
        if t == T_WELCOME:
            if welcome[i] is None:
                welcome[i] = now - t0
            up[i] = True
            last_ping[i] = now
            if trace is not None:
                trace[i].append(("welcome", time.time()))
        elif t == T_DIRECTORY:
            dir_bytes += len(raw)
            dir_frames += 1
        elif t == T_PING:
            socks[i].send(pack([1, T_PONG, f[2]]), zmq.NOBLOCK)
        elif t == T_PONG:
            sent = pending.pop((i, f[2]), None)
            if sent is not None:
                rtts.append((now - sent) * 1e6)
        elif t == T_ERROR:
            errors.append((nodes[i][0], f[2], f[4]))
            for k in [k for k in pending if k[0] == i]:
                del pending[k]  # a PING refused (no session) gets no PONG
            if f[2] == E_EAUTH and up[i]:  # "no session: send HELLO": the broker dropped
                up[i] = False  # it; an agent would start a new session (once), so do that
                rehello[0] += 1
                if trace is not None:
                    trace[i].append(("eauth-rehello", time.time()))
                socks[i].send(pack([1, T_HELLO, nodes[i][0], "dxb-bench", 256, 1000]), zmq.NOBLOCK)

    def keepalive(now):
        loop_gap[0] = max(loop_gap[0], now - loop_gap[1])
        loop_gap[1] = now
        for i in range(n):
            if up[i] and now - last_ping[i] >= 1.5:
                gap[0] = max(gap[0], now - last_ping[i])
                last_ping[i] = now
                if trace is not None and len(trace[i]) < 40:
                    trace[i].append(("ping", time.time()))
                try:
                    socks[i].send(pack([1, T_PING, 0]), zmq.NOBLOCK)
                except zmq.Again:
                    pass

    def serve(timeout_ms):
        now = time.monotonic()
        for s, _ in poller.poll(timeout_ms):
            i = index[s]
            while True:
                try:
                    raw = s.recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
                handle(i, raw, time.monotonic())
        keepalive(now)

    limit = 120 + n * 0.1
    while sum(w is not None for w in welcome) < n:
        serve(100)
        if time.monotonic() - t0 > limit:
            print(f"bench_scale: conns: {sum(w is not None for w in welcome)} of {n} WELCOMEd "
                  f"after {limit:.0f} s; errors {errors[:5]}", file=sys.stderr)
            return 1
    t_welcome = time.monotonic() - t0
    w = sorted(x for x in welcome)
    put(f"{p}_open_s", t_opened)
    put(f"{p}_welcome_first_s", w[0])
    put(f"{p}_welcome_p50_s", pct(w, 0.5))
    put(f"{p}_welcome_all_s", t_welcome)
    put(f"{p}_directory_frames", dir_frames)
    put(f"{p}_directory_mib", dir_bytes / 2**20)
    put(f"{p}_connect_broker_cpu_s", (proc_cpu_ticks(bpid) - cpu0) / tick)

    # dxbctl's view, polled from a thread while the sessions are served here
    seen = {}
    names = {x[0] for x in nodes}

    def n_connected():
        out = subprocess.run([dxbctl, "--admin", admin, "--json", "--timeout", "20000", "nodes"],
                             capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            return None
        return sum(1 for x in json.loads(out.stdout) if x["connected"] and x["node"] in names)

    def count_connected():
        while True:
            c = n_connected()
            now = time.monotonic()
            if c is not None:
                seen["last"] = c
                if c >= n:
                    seen["t"] = now - t0
                    return
            if now - t0 > t_welcome + 60:
                return
            time.sleep(0.05)

    th = threading.Thread(target=count_connected, daemon=True)
    th.start()
    while th.is_alive():
        serve(50)
    put(f"{p}_connected_seen", seen.get("last", 0))
    put(f"{p}_connect_commits", commits() - commits0)
    if "t" in seen:
        put(f"{p}_connected_all_s", seen["t"])
    else:
        print(f"bench_scale: conns: dxbctl nodes shows {seen.get('last')} of {n} connected "
              f"60 s after the last WELCOME; errors: {errors[:5]}", file=sys.stderr)

    # idle: the broker with n sessions, only keepalives
    serve(0)
    c0, m0 = proc_cpu_ticks(bpid), time.monotonic()
    while time.monotonic() - m0 < float(os.environ.get("DXB_BENCH_CONNS_IDLE_S", "5")):
        serve(50)
    idle_pct = (proc_cpu_ticks(bpid) - c0) / tick / (time.monotonic() - m0) * 100
    put(f"{p}_broker_idle_cpu_pct", idle_pct)
    put(f"{p}_rss_kib", proc_status(bpid, "VmRSS"))
    put(f"{p}_rss_hwm_kib", proc_status(bpid, "VmHWM"))
    put(f"{p}_broker_fds", len(os.listdir(f"/proc/{bpid}/fd")))
    put(f"{p}_client_fds", len(os.listdir("/proc/self/fd")))

    # PING round trips: one connection at a time (each waits for its PONG)
    sent_pings = 0
    for i in range(n):
        if not up[i]:
            continue
        sent_pings += 1
        token[0] += 1
        tk = token[0]
        sent = time.monotonic()
        pending[(i, tk)] = sent
        socks[i].send(pack([1, T_PING, tk]))
        while (i, tk) in pending:
            if socks[i].poll(5000) == 0:
                pending.pop((i, tk), None)
                print(f"bench_scale: no PONG from the broker on {nodes[i][0]}", file=sys.stderr)
                break
            handle(i, socks[i].recv(), time.monotonic())
            if not up[i]:
                break
        if i % 100 == 99:
            serve(0)
    seq_rtts, rtts[:] = list(rtts), []
    put(f"{p}_ping_seq_p50_us", pct(seq_rtts, 0.5))
    put(f"{p}_ping_seq_p99_us", pct(seq_rtts, 0.99))
    put(f"{p}_ping_seq_max_us", max(seq_rtts) if seq_rtts else 0.0)

    # ... and all at once: a PING on every connection, then collect (3 rounds)
    burst_s = []
    cpu0 = proc_cpu_ticks(bpid)
    for _ in range(3):
        for i in range(n):
            if not up[i]:
                continue
            sent_pings += 1
            token[0] += 1
            pending[(i, token[0])] = time.monotonic()
            socks[i].send(pack([1, T_PING, token[0]]))
        b0 = time.monotonic()
        while pending and time.monotonic() - b0 < 30:
            serve(100)
        burst_s.append(time.monotonic() - b0)
        pending.clear()
        serve(0)
    put(f"{p}_ping_burst_p50_us", pct(rtts, 0.5))
    put(f"{p}_ping_burst_p99_us", pct(rtts, 0.99))
    put(f"{p}_ping_burst_max_us", max(rtts) if rtts else 0.0)
    put(f"{p}_ping_burst_all_ms", sum(burst_s) / len(burst_s) * 1e3)
    put(f"{p}_ping_burst_broker_cpu_ms", (proc_cpu_ticks(bpid) - cpu0) / tick * 1e3 / 3)
    put(f"{p}_ping_lost", sent_pings - len(rtts) - len(seq_rtts))

    # a workload next to the n idle sessions
    if cmd:
        c0, m0, me0 = proc_cpu_ticks(bpid), time.monotonic(), proc_cpu_ticks(os.getpid())
        child = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        out = []
        reader = threading.Thread(target=lambda: out.append(child.stdout.read()), daemon=True)
        reader.start()
        while child.poll() is None:
            serve(50)
        reader.join()
        secs = time.monotonic() - m0
        sys.stdout.write("".join(out))
        put(f"{p}_cmd_broker_cpu_s", (proc_cpu_ticks(bpid) - c0) / tick)
        put(f"{p}_cmd_s", secs)
        put(f"{p}_cmd_client_cpu_s", (proc_cpu_ticks(os.getpid()) - me0) / tick)
        if child.returncode != 0:
            print(f"bench_scale: conns: {' '.join(cmd)} failed (exit {child.returncode})",
                  file=sys.stderr)
            return 1
    # sessions the broker still counts as connected (none should have timed out)
    box = {}
    th = threading.Thread(target=lambda: box.update(c=n_connected()), daemon=True)
    th.start()
    while th.is_alive():
        serve(50)
    put(f"{p}_connected_end", box.get("c") or 0)
    put(f"{p}_errors", len(errors))
    put(f"{p}_rehello", rehello[0])
    put(f"{p}_keepalive_max_gap_s", gap[0])
    put(f"{p}_client_loop_max_gap_s", loop_gap[0])
    for e in errors[:5]:
        print(f"bench_scale: conns: ERROR from the broker: {e}", file=sys.stderr)
    if trace is not None:  # wall-clock times per node, to set beside the broker's log
        with open(os.environ["DXB_BENCH_CONNS_TRACE"], "w") as fh:
            for i in range(n):
                fh.write(nodes[i][0] + " " + " ".join(f"{k}@{t:.3f}" for k, t in trace[i]) + "\n")
    for s in socks:
        try:
            s.send(pack([1, T_BYE, "bench done"]), zmq.NOBLOCK)
        except zmq.ZMQError:
            pass
    time.sleep(0.5)
    for s in socks:
        s.close(0)
    ctx.term()
    return 0


def main():
    cmds = {"keys": keys_main, "mdbstat": mdbstat_main, "waitq": waitq_main, "conns": conns_main}
    if len(sys.argv) < 2 or sys.argv[1] not in cmds:
        print(__doc__, file=sys.stderr)
        return 2
    return cmds[sys.argv[1]](sys.argv[2:]) or 0


if __name__ == "__main__":
    sys.exit(main())
