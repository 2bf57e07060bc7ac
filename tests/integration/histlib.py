"""histlib: JSONL histories of message flows and a Jepsen-style checker
(reliability anchors, section (c)).

A history is a file of JSON lines, one per event, in the order observed:

    {"t": 12.345, "node": "sq.hrss", "op": "send", "id": "sq.hrss:hr.seq:17",
     "outcome": "unknown"}

- `t`: seconds (time.monotonic) when the test saw the event.
- `node`: who saw it: the sending node for send/ack-of-publish/error, the
  receiving node for deliver/ack-of-delivery.
- `op`: send | ack | deliver | error.
- `id`: "sender:dataset:seq" (node ids and dataset ids never hold ':').
- `outcome`: ok | fail | unknown.
- optional `msg_id` (hex, deliver and delivery acks) and `detail`.

What each line means:

- send   (node = sender, unknown): the application asked its agent to publish.
- ack    (node = sender, ok | fail): the agent answered the publish: code 0
  (ok: durable in the agent's outbox, must be delivered) or a refusal (fail:
  must never be delivered).
- error  (node = sender, unknown): the publish was open when its agent died;
  its outcome stays unknown (it may or may not be delivered).
- deliver (node = receiver, ok, msg_id): the receiving application got the
  message (API_MESSAGE), recorded before it acknowledges it.
- ack    (node = receiver, msg_id): the receiving application's API_ACK of a
  delivery. outcome ok once the ack is known to be processed by the agent
  (a later request on the same connection was answered); unknown when the
  agent died before that was known.

Classification (check()):

- lost: publish acked ok, never delivered.
- unexpected: delivered but never sent, or delivered although refused.
- duplicated: delivered again to the application, unless the repeat is a
  legitimate re-offer: PROTOCOL.md section 9 keeps API messages until the
  application acknowledges them and offers every unacknowledged one again to a
  new subscription (after a receiving-agent restart, or a re-subscribe). So a
  repeat delivery is legitimate only when it carries the *same* msg_id as an
  earlier delivery of that id *and* no confirmed (outcome ok) application ack
  of that msg_id precedes it in the history. A repeat under a new msg_id, or
  after a confirmed ack, is a duplicate. Legitimate repeats are counted as
  `reoffered` (reported, never failed). The application itself de-duplicates
  nothing.
- reordered: per (receiver, sender, dataset), the first deliveries of each id
  must come in increasing seq order (gaps are fine: refused or lost-in-flight
  publishes with unknown outcome).
- recovered: outcome unknown, delivered.

Pass = lost, duplicated, reordered and unexpected all empty.
"""
import json
import time


class History:
    """Appends events to a JSONL file and keeps them in memory."""

    def __init__(self, path):
        self.path = path
        self.events = []
        self.f = open(path, "w", encoding="utf-8")

    def record(self, node, op, id_, outcome, **extra):
        ev = {"t": round(time.monotonic(), 6), "node": node, "op": op, "id": id_,
              "outcome": outcome}
        ev.update(extra)
        self.events.append(ev)
        self.f.write(json.dumps(ev, sort_keys=True) + "\n")
        return ev

    def flush(self):
        self.f.flush()

    def close(self):
        if not self.f.closed:
            self.f.close()


def load(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def make_id(sender, dataset, seq):
    return f"{sender}:{dataset}:{seq}"


def split_id(id_):
    sender, dataset, seq = id_.split(":")
    return sender, dataset, int(seq)


class Report:
    FAILING = ("lost", "duplicated", "reordered", "unexpected")

    def __init__(self):
        self.sent = 0
        self.acked = 0
        self.refused = 0
        self.unknown = 0
        self.delivered = 0  # distinct ids delivered
        self.deliveries = 0  # deliver events
        self.recovered = 0
        self.reoffered = 0
        self.app_acks = {"ok": 0, "unknown": 0}  # the receiving application's acks
        self.lost = []
        self.duplicated = []  # (id, msg_id, why)
        self.reordered = []  # (id, previous highest seq)
        self.unexpected = []

    @property
    def ok(self):
        return not any(getattr(self, k) for k in self.FAILING)

    def counts(self):
        return {"sent": self.sent, "acked": self.acked, "refused": self.refused,
                "unknown": self.unknown, "delivered": self.delivered,
                "deliveries": self.deliveries, "recovered": self.recovered,
                "reoffered": self.reoffered, "app_acks_ok": self.app_acks["ok"],
                "app_acks_unknown": self.app_acks["unknown"], "lost": len(self.lost),
                "duplicated": len(self.duplicated), "reordered": len(self.reordered),
                "unexpected": len(self.unexpected)}

    def describe(self, n=10):
        return (f"{self.counts()}; first lost={self.lost[:n]} duplicated={self.duplicated[:n]} "
                f"reordered={self.reordered[:n]} unexpected={self.unexpected[:n]}")


def check(events):
    """Classifies every message of a history (list of dicts); returns a Report."""
    r = Report()
    outcome = {}  # id -> "unknown" | "ok" | "fail" (publish outcome)
    delivered_mids = {}  # id -> set of msg_ids delivered so far
    confirmed = set()  # msg_ids whose application ack is confirmed
    highest = {}  # (receiver, sender, dataset) -> highest first-delivered seq
    for ev in events:
        op, id_, node = ev["op"], ev["id"], ev["node"]
        sender, dataset, seq = split_id(id_)
        if op == "send":
            r.sent += 1
            outcome.setdefault(id_, "unknown")
        elif op == "ack" and node == sender:
            if ev["outcome"] in ("ok", "fail"):
                outcome[id_] = ev["outcome"]
        elif op == "ack":  # the receiving application's API_ACK
            r.app_acks[ev["outcome"]] = r.app_acks.get(ev["outcome"], 0) + 1
            if ev["outcome"] == "ok":
                confirmed.add(ev["msg_id"])
        elif op == "deliver":
            r.deliveries += 1
            mid = ev.get("msg_id")
            seen = delivered_mids.get(id_)
            if seen is None:
                delivered_mids[id_] = {mid}
                key = (node, sender, dataset)
                if key in highest and seq < highest[key]:
                    r.reordered.append((id_, highest[key]))
                highest[key] = max(seq, highest.get(key, seq))
            elif mid in seen and mid not in confirmed:
                r.reoffered += 1
            else:
                why = "after a confirmed application ack" if mid in seen else \
                    "under a new msg_id"
                r.duplicated.append((id_, mid, why))
                seen.add(mid)
        elif op == "error":
            pass
        else:
            raise ValueError(f"unknown op in history: {ev!r}")
    for id_, o in outcome.items():
        if o == "ok":
            r.acked += 1
            if id_ not in delivered_mids:
                r.lost.append(id_)
        elif o == "fail":
            r.refused += 1
        else:
            r.unknown += 1
            if id_ in delivered_mids:
                r.recovered += 1
    # Judged at the end: a delivery may be seen before its publish's answer.
    r.unexpected = [i for i in delivered_mids if outcome.get(i) in (None, "fail")]
    r.delivered = len(delivered_mids)
    r.lost.sort(key=split_id)
    return r
