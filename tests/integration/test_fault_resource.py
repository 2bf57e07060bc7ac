"""Resource faults in the broker's store: a full disk answers EFULL
(back-pressure) without SIGBUS or loss and resumes when space frees (anchor
D7); an fsync that fails with EIO fails its batch, is never acknowledged, and
stops all further writes, with nothing acknowledged lost after a restart
(anchor D5, "fsyncgate"). DESIGN.md section 4.
"""
import hashlib
import os
import random
import re
import secrets

import pytest

from dxbharness import (E_EFULL, E_EIO, E_OK, T_WELCOME, FlowChecker, make_envelope,
                        wait_until)
from faultlib import (ProductBug, SpoolFlow, fill_file, require_root, require_strace,
                      resize_tmpfs, seq_content, tmpfs, under, unwrap)

DATASET = "fault.store"
SENDER, RECEIVER, PROBE = "sq.hrss", "sq.civil", "sq.probe"


def _stop_all(h):
    for d in reversed(h.daemons):
        if d.alive():
            d.stop()


DISK_FULL_BUG = (
    "dxb bug: on a full disk LMDB's page flush makes a short pwrite and returns EIO "
    "('short write, filesystem full?'), which dxb_store_commit (common/dxb_store.c) treats as "
    "an fsync failure: DXB-STOREFAILED, all writes refused until restart, instead of EFULL "
    "back-pressure that resumes when space frees")
NO_ANSWER_BUG = (
    "dxb bug: once the store has failed, dxb_store_begin() returns EIO before s_store_publishes "
    "(broker/brk_server.c) sets *any, so s_phase_b returns without any PUBACK: publishers get "
    "no answer at all instead of EIO (9)")


@pytest.mark.agent

def test_full_disk_answers_efull_without_sigbus_loses_nothing_acked_and_resumes(h):
    require_root("mounting a tmpfs")
    a, c, p = h.keygen(SENDER), h.keygen(RECEIVER), h.keygen(PROBE)
    # The map is far larger than the disk: the disk fills, not the map.
    b = h.broker([a, c, p], start=False, store={"map_size": "256MiB"})
    bugs = []
    with tmpfs(b.data_dir, "8m"):
        try:
            filler = os.path.join(b.data_dir, "filler")
            fill_file(filler, 1 << 20)
            b.start()
            sender = h.agent(a, b, datasets=[{"id": DATASET, "recipients": [RECEIVER]}],
                             link={"publish_window": 16})
            receiver = h.agent(c, b, start=False)
            h.wait_connected(SENDER)
            flow = SpoolFlow(sender, receiver, DATASET)
            api = sender.client()
            rnd = random.Random()
            opened = {}  # req -> (seq, payload)

            def settle(req, code, _msg_id, text):
                s, data = opened.pop(req)
                assert code == E_OK, f"the agent refused publish {s}: code={code} {text}"
                flow.sent[s] = hashlib.sha256(data).hexdigest()

            full_at = None
            seq = 0
            # Publish 1..64 KiB messages through the agent's API until the
            # broker's store reports the disk full, then 20 more (those wait
            # in the agent's outbox).
            while seq < 900 and (full_at is None or seq < full_at + 20):
                while len(opened) < 16:
                    seq += 1
                    data = seq_content(flow.run, seq, rnd.randint(1024, 64 * 1024))
                    opened[api.publish_async(DATASET, [RECEIVER], f"m{seq:05d}.dat", data)] = \
                        (seq, data)
                api.collect(0.05)
                for req in [r for r in opened if r in api.results]:
                    settle(req, *api.results.pop(req))
                log = b.log_text()
                if full_at is None and ("DXB-STOREFULL" in log or "DXB-STOREFAILED" in log):
                    full_at = seq
            for req in list(opened):
                settle(req, *api.wait_result(req))
            assert full_at is not None, f"{seq} publishes never filled an 8 MiB tmpfs"
            assert b.alive(), f"broker died on a full disk (SIGBUS?): rc={b.proc.returncode}"
            assert "No space left on device" in b.log_text() or \
                "DXB-STOREFAILED" in b.log_text(), "the store filled, but not the disk"

            if "DXB-STOREFAILED" not in b.log_text():
                # Refused with EFULL: the agent backs off with EFULL, and a
                # fresh 64 KiB publish is refused with EFULL too.
                sender.wait_log("code=EFULL", timeout=10)
                probe = h.raw_peer(p, b)
                assert probe.hello()[1] == T_WELCOME
                env = make_envelope(PROBE, DATASET, [PROBE], body=secrets.token_bytes(64 * 1024))
                res = probe.publish([env])
                if "DXB-STOREFAILED" not in b.log_text():
                    # Room for one more 64 KiB message may be left by the
                    # aborted bigger batch: OK or EFULL are both right,
                    # anything else (no answer, EIO) is not.
                    assert isinstance(res, dict) and res[bytes(env[0][0])] in (E_OK, E_EFULL), \
                        f"a publish to a full disk was answered {res}"
            queued_full = h.queues()[RECEIVER]["msgs"]
            assert 0 < queued_full < len(flow.sent)

            # Space frees (a file is deleted, the disk grows): the agent's
            # retries get in again.
            os.unlink(filler)
            resize_tmpfs(b.data_dir, "32m")
            wait_until(lambda: h.queues()[RECEIVER]["msgs"] > queued_full
                       or "DXB-STOREFAILED" in b.log_text(), 20, interval=0.2,
                       what="the broker to take messages again after space was freed")
            if "DXB-STOREFAILED" in b.log_text():
                bugs.append(DISK_FULL_BUG)
                b.restart()  # the operator's remedy for a failed store
            assert h.stats()["store_failed"] is False

            # The recipient drains: every acked message arrives exactly once.
            receiver.start()
            flow.wait_all(timeout=60)
            summary = flow.assert_clean()
            h.wait_queue(RECEIVER, 0)
            assert b.alive() and sender.alive() and receiver.alive()
            assert "Bus error" not in b.log_text()
            log = b.log_text()
            print(f"disk full: store full after publish {full_at}; first EFULL at "
                  f"{log.find('DXB-STOREFULL')}, first STOREFAILED at "
                  f"{log.find('DXB-STOREFAILED')} (log offsets); {summary}")
        finally:
            _stop_all(h)
    if b.log_count("DXB-STOREFAILED") and DISK_FULL_BUG not in bugs:
        bugs.append(DISK_FULL_BUG)
    if bugs:
        raise ProductBug("; ".join(bugs))


def _sync_counts(trace_path):
    """{(tid, syscall): calls} from an `strace -f -o` file."""
    counts = {}
    pat = re.compile(r"^(\d+)\s+(fdatasync|fsync)\(")
    with open(trace_path, encoding="utf-8", errors="replace") as f:
        for line in f:
            m = pat.match(line)
            if m:
                k = (m.group(1), m.group(2))
                counts[k] = counts.get(k, 0) + 1
    return counts



def test_fsync_eio_fails_the_batch_unacked_stops_writes_and_loses_nothing_acked(h):
    require_strace()
    a, c = h.keygen(SENDER), h.keygen(RECEIVER)

    # Calibration on a throw-away broker with the same config: how many sync
    # calls a fresh broker makes up to a connected sender's first publish.
    cal = h.broker([a, c], name="calib", start=False)
    cal_trace = os.path.join(h.dir, "calib.strace")
    under(cal, ["strace", "-f", "-qq", "-o", cal_trace, "-e", "trace=fdatasync,fsync"])
    cal.start()
    pc = h.raw_peer(a, cal)
    assert pc.hello()[1] == T_WELCOME
    before = max(_sync_counts(cal_trace).values(), default=0)
    cal.stop()
    nth = before + 5

    b = h.broker([a, c], start=False)
    trace = os.path.join(h.dir, "broker.strace")
    under(b, ["strace", "-f", "-qq", "-o", trace, "-e", "trace=fdatasync,fsync",
             "-e", f"inject=fdatasync,fsync:error=EIO:when={nth}"])
    b.start()
    sender = h.raw_peer(a, b)
    assert sender.hello()[1] == T_WELCOME
    checker = FlowChecker()
    seq_of, codes = {}, {}
    first_fail = None
    # One envelope per PUBLISH frame: one group commit each. Stop 5 publishes
    # after the first that is not acknowledged.
    for seq in range(1, 61):
        env = make_envelope(SENDER, DATASET, [RECEIVER], seq=seq)
        mid = bytes(env[0][0])
        seq_of[mid] = seq
        checker.attempt(SENDER, seq)
        res = sender.publish([env], timeout=5 if first_fail is None else 2)
        # No PUBACK (None) or an ERROR frame: not acknowledged.
        codes[seq] = res.get(mid) if isinstance(res, dict) else None
        if codes[seq] == E_OK:
            checker.acked(SENDER, seq)
        elif first_fail is None:
            first_fail = seq
        if first_fail is not None and seq >= first_fail + 5:
            break
    assert first_fail is not None, \
        f"no publish failed: fdatasync/fsync #{nth} was never called; codes={codes}"
    with open(trace, encoding="utf-8", errors="replace") as f:
        assert "INJECTED" in f.read()
    b.wait_log("DXB-STOREFAILED", timeout=5)
    assert codes[first_fail] in (E_EIO, None), codes
    after = {s: codes[s] for s in codes if s > first_fail}
    assert E_OK not in after.values(), \
        f"a publish was acknowledged after the store failed: {after}"
    bugs = []
    if None in after.values():
        bugs.append(NO_ANSWER_BUG + f" (codes after the failure: {after})")
    else:
        assert list(after.values()) == [E_EIO] * len(after), \
            f"later publishes must be refused with EIO (9): {after}"
    assert h.stats(broker=b)["store_failed"] is True
    assert b.alive()
    acked = checker.acked_count()
    assert acked >= 1, codes

    # Restart without strace: every acknowledged message is delivered once.
    b.stop()
    unwrap(b).start()
    assert h.stats(broker=b)["store_failed"] is False
    receiver = h.raw_peer(c, b)
    assert receiver.hello()[1] == T_WELCOME

    def take(timeout):
        for env in receiver.take_deliveries(timeout=timeout):
            mid = bytes(env[0][0])
            checker.deliver(SENDER, seq_of.get(mid, -1))
            receiver.dack([mid])

    def drained():
        take(0.2)
        return h.queues(broker=b).get(RECEIVER, {}).get("msgs") == 0 and \
            len(set(checker.delivered)) >= acked

    wait_until(drained, 20, interval=0.0, what=f"{acked} acknowledged messages delivered")
    take(0.5)  # nothing more may come
    report = checker.assert_clean()
    # A publish that was refused must not reappear either ("recovered" would
    # mean a batch whose commit failed was kept after all).
    assert report["recovered"] == 0, report
    print(f"fsync EIO at call #{nth}: acked={acked} first failed publish={first_fail} "
          f"(code {codes[first_fail]}), after it: {list(after.values())}, "
          f"delivered={report['delivered']}")
    if bugs:
        raise ProductBug("; ".join(bugs))
