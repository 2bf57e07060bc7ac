"""Governance (issue 4; PROTOCOL.md section 10): the catalog declared by
agents, demands and grants, enforcement at the broker (every refusal with
EDENIED and an audit record), masking at the provider, objections.

Operator actions go through the admin socket (the same operations dxbctl
uses); agents declare their catalog from their config and receive their
governance view as JSON files."""
import json
import os

import pytest

from abuselib import admin_raw, admin_req
from dxbharness import wait_until

GOV = {"enforce": True}
FIELDS = [{"name": n, "type": "string", "sensitivity": s}
          for n, s in (("name", 2), ("id_no", 3), ("phone", 2), ("address", 1), ("dept", 0))]
CSV = ("name,id_no,phone,address,dept\n"
       "张三丰,32130219800101123X,13812345678,江苏省宿迁市宿城区洪泽湖路1号,人社局\n"
       "欧阳娜娜,321322199912310021,13900001111,\"江苏省宿迁市沭阳县人民路2号, 3楼\",民政局\n")


def op(h, b, command, *args, code=0):
    """Runs one governance operation as the operator; returns the rows."""
    rep = admin_raw(h, b, admin_req(command, [str(a) for a in args]))
    assert rep is not None, f"no answer to {command}"
    assert rep[2] == code, f"{command} {args}: code {rep[2]} ({rep[3]}), wanted {code}"
    return rep[4] if code == 0 else rep[3]


def world(h, share="conditional", level=1, consumer_clearance=2, extra_nodes=()):
    owner, consumer = h.keygen("sq.hrss"), h.keygen("sq.civil")
    others = [h.keygen(n) for n in extra_nodes]
    nodes = [{"key": owner, "clearance": 2}, {"key": consumer, "clearance": consumer_clearance}]
    nodes += [{"key": k, "clearance": 0} for k in others]
    b = h.broker(nodes, governance=GOV)
    ds = [{"id": "hr.employees", "recipients": ["sq.civil"],
           "catalog": {"title": "在职人员 employees", "description": "daily snapshot",
                       "level": level, "share": share, "frequency": "daily",
                       "region": "321300", "fields": FIELDS}}]
    o = h.agent(owner, b, datasets=ds)
    c = h.agent(consumer, b)
    h.wait_connected("sq.hrss")
    h.wait_connected("sq.civil")
    wait_until(lambda: op(h, b, "catalog.list"), 15, what="the catalog entry")
    return b, o, c


def audit_has(h, action, result=None, detail=None):
    for row in h.audit(500):
        if row["action"] == action and (result is None or row["result"] == result) and \
                (detail is None or detail in row["detail"]):
            return row
    return None


@pytest.mark.agent
def test_catalog_is_declared_by_the_owner_agent_and_changes_are_recorded(h):
    b, o, c = world(h)
    rows = op(h, b, "catalog.list")
    assert len(rows) == 1
    e = rows[0]
    assert (e["dataset"], e["owner"], e["level"], e["share"], e["n_fields"], e["version"]) == \
        ("hr.employees", "sq.hrss", 1, "conditional", 5, 1)
    show = op(h, b, "catalog.show", "hr.employees")[0]
    assert "id_no:string:3" in show["fields"] and show["description"] == "daily snapshot"
    assert audit_has(h, "catalog-add", "ok")
    # The consumer's agent got the catalog as a file.
    path = os.path.join(c.data_dir, "governance", "catalog.json")
    got = wait_until(lambda: os.path.exists(path) and json.load(open(path)), 15,
                     what="catalog.json at the consumer")
    assert got[0]["dataset"] == "hr.employees"
    # A changed declaration bumps the version and is audited; a restart with
    # the same declaration records nothing.
    o.datasets[0]["catalog"]["level"] = 2
    o.write_config()
    o.restart()
    wait_until(lambda: op(h, b, "catalog.list")[0]["version"] == 2, 15, what="version 2")
    assert audit_has(h, "catalog-change", "ok")
    n_audit = len(h.audit(1000))
    o.restart()
    h.wait_connected("sq.hrss")
    o.wait_log("AGT-CATALOG", count=2)
    assert op(h, b, "catalog.list")[0]["version"] == 2
    assert len([r for r in h.audit(1000) if r["action"].startswith("catalog")]) == 2
    assert len(h.audit(1000)) >= n_audit
    # Dropping the entry from the config removes it from the catalog.
    del o.datasets[0]["catalog"]
    o.write_config()
    o.restart()
    wait_until(lambda: op(h, b, "catalog.list") == [], 15, what="the entry removed")
    assert audit_has(h, "catalog-remove", "ok")


@pytest.mark.agent
def test_publish_without_grant_is_refused_with_edenied_and_audited(h):
    b, o, c = world(h)
    o.drop("hr.employees", "staff.csv", CSV.encode())
    o.wait_log("AGT-REFUSED", timeout=15)
    row = wait_until(lambda: audit_has(h, "publish", "EDENIED", "no valid grant for sq.civil"), 10,
                     what="the refusal in the audit log")
    assert row["actor"] == "sq.hrss"
    assert c.received("hr.employees") == {}


@pytest.mark.agent
def test_demand_approved_with_masking_delivers_masked_records(h):
    b, o, c = world(h)
    d = op(h, b, "demand.file", "hr.employees", "social assistance checks", "name,id_no,phone",
           "30", "sq.civil")[0]
    assert d["state"] == "pending" and d["owner"] == "sq.hrss"
    pend = op(h, b, "demand.list", "pending")
    assert [x["demand_id"] for x in pend] == [d["demand_id"]] and pend[0]["waited_s"] >= 0
    # The owner's agent hears of it.
    o.wait_log("AGT-DEMAND", timeout=15)
    mask = "name=keep:1,0;id_no=keep:6,4;phone=keep:3,4;address=redact;dept=hash"
    a = op(h, b, "demand.approve", d["demand_id"], "", mask, "7")[0]
    assert a["state"] == "approved" and a["grant_id"] > 0 and a["decided_by"] == "operator"
    g = op(h, b, "grant.list")[0]
    assert g["mask"] == mask and g["state"] == "active" and g["consumer"] == "sq.civil"
    # The owner agent learns the grant, then masks before sealing.
    gpath = os.path.join(o.data_dir, "governance", "grants.json")
    wait_until(lambda: os.path.exists(gpath) and json.load(open(gpath)), 15, what="grants.json")
    o.drop("hr.employees", "staff.csv", CSV.encode())
    data, meta = wait_until(lambda: c.received("hr.employees").get("staff.csv"), 20,
                            what="the masked file")
    text = data.decode()
    assert "张**" in text and "欧***" in text
    assert "321302********123X" in text and "138****5678" in text
    assert "13812345678" not in text and "洪泽湖路" not in text and "人社局" not in text
    assert text.count("***") >= 2
    o.wait_log("AGT-MASKED")
    assert audit_has(h, "demand-approve", "ok") and audit_has(h, "grant", "ok")


@pytest.mark.agent
def test_revoked_grant_stops_the_next_message(h):
    b, o, c = world(h)
    d = op(h, b, "demand.file", "hr.employees", "checks", "", "", "sq.civil")[0]
    a = op(h, b, "demand.approve", d["demand_id"])[0]
    o.drop("hr.employees", "one.csv", CSV.encode())
    wait_until(lambda: "one.csv" in c.received("hr.employees"), 20, what="first file")
    op(h, b, "grant.revoke", a["grant_id"], "audit finding")
    assert op(h, b, "grant.list")[0]["state"] == "revoked"
    o.drop("hr.employees", "two.csv", CSV.encode())
    wait_until(lambda: audit_has(h, "publish", "EDENIED", "no valid grant"), 15,
               what="the refusal after revocation")
    assert "two.csv" not in c.received("hr.employees")
    assert audit_has(h, "grant-revoke", "ok", "reason=audit finding")


@pytest.mark.agent
def test_clearance_below_level_is_refused_even_with_a_grant_and_denied_on_demand(h):
    b, o, c = world(h, level=3, consumer_clearance=2)
    d = op(h, b, "demand.file", "hr.employees", "checks", "", "", "sq.civil")[0]
    assert d["state"] == "denied" and "clearance" in d["reason"]
    msg = op(h, b, "demand.approve", d["demand_id"], code=18)
    assert "already denied" in msg
    o.drop("hr.employees", "x.csv", CSV.encode())
    wait_until(lambda: audit_has(h, "publish", "EDENIED", "clearance of sq.civil below"), 15,
               what="the clearance refusal")


@pytest.mark.agent
def test_share_none_is_never_granted_and_unconditional_is_automatic(h):
    b, o, c = world(h, share="none")
    d = op(h, b, "demand.file", "hr.employees", "checks", "", "", "sq.civil")[0]
    assert d["state"] == "denied" and "none" in d["reason"]
    o.drop("hr.employees", "x.csv", CSV.encode())
    wait_until(lambda: audit_has(h, "publish", "EDENIED", "share type none"), 15,
               what="share none refusal")
    # Switch the declaration to unconditional: a demand is approved at once
    # and, without any demand, delivery to a cleared node is allowed.
    o.datasets[0]["catalog"]["share"] = "unconditional"
    o.write_config()
    o.restart()
    wait_until(lambda: op(h, b, "catalog.list")[0]["share"] == "unconditional", 15,
               what="unconditional")
    d2 = op(h, b, "demand.file", "hr.employees", "checks", "", "", "sq.civil")[0]
    assert d2["state"] == "approved" and d2["grant_id"] > 0
    assert op(h, b, "grant.list")[0]["automatic"] is True
    o.drop("hr.employees", "y.csv", CSV.encode())
    wait_until(lambda: "y.csv" in c.received("hr.employees"), 20, what="unconditional delivery")


@pytest.mark.agent
def test_demand_errors_name_what_is_wrong(h):
    b, o, c = world(h)
    assert "not a field" in op(h, b, "demand.file", "hr.employees", "p", "salary", "", "sq.civil",
                               code=18)
    assert "not in the catalog" in op(h, b, "demand.file", "hr.nothing", "p", "", "", "sq.civil",
                                      code=17)
    assert "unknown consumer" in op(h, b, "demand.file", "hr.employees", "p", "", "", "sq.nobody",
                                    code=17)
    d = op(h, b, "demand.file", "hr.employees", "p", "", "", "sq.civil")[0]
    assert "masking policy" in op(h, b, "demand.approve", d["demand_id"], "", "name=explode",
                                  code=18)
    assert "needs a reason" in op(h, b, "demand.deny", d["demand_id"], code=18)
    assert op(h, b, "demand.deny", d["demand_id"], "not needed")[0]["state"] == "denied"
    assert op(h, b, "demand.list", "denied")[0]["reason"] == "not needed"


@pytest.mark.agent
def test_objection_is_routed_to_the_owner_and_tracked_to_closure(h):
    b, o, c = world(h)
    ob = op(h, b, "objection.file", "hr.employees", "id_no=32130219800101123X",
            "birth date wrong", "sq.civil")[0]
    assert ob["state"] == "open" and ob["owner"] == "sq.hrss"
    opath = os.path.join(o.data_dir, "governance", "objections.json")
    wait_until(lambda: os.path.exists(opath) and json.load(open(opath)), 15,
               what="objection visible at the owner")
    r = op(h, b, "objection.respond", ob["objection_id"], "corrected in tomorrow's snapshot")[0]
    assert r["state"] == "responded" and r["responded_ms"] >= ob["created_ms"]
    cl = op(h, b, "objection.close", ob["objection_id"])[0]
    assert cl["state"] == "closed" and cl["closed_ms"] >= r["responded_ms"]
    assert "closed" in op(h, b, "objection.respond", ob["objection_id"], "again", code=18)
    for action in ("objection", "objection-respond", "objection-close"):
        assert audit_has(h, action, "ok")


@pytest.mark.agent
def test_figures_by_dataset_and_node_count_deliveries_refusals_demands_objections(h):
    b, o, c = world(h, extra_nodes=("sq.idle",))
    o.drop("hr.employees", "refused.csv", CSV.encode())  # no grant yet: refused
    wait_until(lambda: audit_has(h, "publish", "EDENIED"), 15, what="a refusal")
    d = op(h, b, "demand.file", "hr.employees", "checks", "", "", "sq.civil")[0]
    op(h, b, "demand.approve", d["demand_id"])
    for i in range(3):
        o.drop("hr.employees", f"f{i}.csv", CSV.encode())
    wait_until(lambda: len(c.received("hr.employees")) == 3, 30, what="three files")
    h.wait_queue("sq.civil", 0)
    op(h, b, "objection.file", "hr.employees", "row 2", "wrong phone", "sq.civil")
    by_ds = {r["dataset"]: r for r in op(h, b, "stats.by", "dataset")}
    r = by_ds["hr.employees"]
    assert (r["deliveries"], r["delivered"], r["refused"]) == (3, 3, 1), r
    assert r["bytes_in"] > 3 * len(CSV.encode()) and r["bytes_out"] == r["bytes_in"]
    assert (r["demands"], r["demands_pending"], r["objections"], r["objections_open"]) == \
        (1, 0, 1, 1)
    by_node = {r["node"]: r for r in op(h, b, "stats.by", "node")}
    assert by_node["sq.hrss"]["deliveries"] == 3 and by_node["sq.hrss"]["refused"] == 1
    assert by_node["sq.civil"]["delivered"] == 3
    assert by_node["sq.hrss"]["demands"] == 1  # the owner answers for its response time
    assert by_node["sq.idle"]["deliveries"] == 0  # every registered node has a row
    # Since tomorrow: nothing yet.
    import time
    tomorrow = int(time.time() * 1000) + 86400 * 1000
    later = {r["dataset"]: r for r in op(h, b, "stats.by", "dataset", tomorrow)}
    assert later["hr.employees"]["deliveries"] == 0 and later["hr.employees"]["demands"] == 0
    # The figures survive a broker restart (they live in the store).
    b.restart()
    again = {r["dataset"]: r for r in op(h, b, "stats.by", "dataset")}
    assert again["hr.employees"]["deliveries"] == 3


def agent_gov(h, agent, op_name, *args, code=0):
    """GOV_REQ on an agent's local API: the agent relays it as its node."""
    import zmq
    from dxbharness import pack, unpack
    s = h.zctx.socket(zmq.DEALER)
    try:
        s.setsockopt(zmq.LINGER, 0)
        s.connect(agent.api)
        s.send(pack([1, 50, 77, op_name, [str(a) for a in args]]))
        assert s.poll(10000), f"no answer from the agent to {op_name}"
        rep = unpack(s.recv())
    finally:
        s.close(0)
    assert rep[:3] == [1, 51, 77], rep
    assert rep[3] == code, f"{op_name}: code {rep[3]} ({rep[4]}), wanted {code}"
    return rep[5] if code == 0 else rep[4]


@pytest.mark.agent
def test_demand_filed_and_approved_through_the_agents_as_their_nodes(h):
    b, o, c = world(h)
    d = agent_gov(h, c, "demand.file", "hr.employees", "eligibility checks", "name,phone", "10")[0]
    assert d["consumer"] == "sq.civil" and d["filed_by"] == "sq.civil" and d["state"] == "pending"
    # The consumer may not decide its own demand; the owner may.
    assert "only the owner" in agent_gov(h, c, "demand.approve", d["demand_id"], code=6)
    a = agent_gov(h, o, "demand.approve", d["demand_id"], "", "phone=keep:3,4")[0]
    assert a["state"] == "approved" and a["decided_by"] == "sq.hrss"
    # Each node sees only what it is a party to.
    assert [x["demand_id"] for x in agent_gov(h, c, "demand.list")] == [d["demand_id"]]
    assert agent_gov(h, c, "stats.by", "node", code=6) == "figures are for operators"
    g = agent_gov(h, c, "grant.list")[0]
    assert g["mask"] == "phone=keep:3,4" and g["fields"] == "name,phone"
    # The grant narrows the fields: only name and phone leave the provider.
    gpath = os.path.join(o.data_dir, "governance", "grants.json")
    wait_until(lambda: os.path.exists(gpath) and json.load(open(gpath)), 15, what="grants.json")
    o.drop("hr.employees", "staff.csv", CSV.encode())
    data, _ = wait_until(lambda: c.received("hr.employees").get("staff.csv"), 20, what="file")
    lines = data.decode().splitlines()
    assert lines[0] == "name,phone"
    assert lines[1] == "张三丰,138****5678"
    assert "32130219800101123X" not in data.decode() and "人社局" not in data.decode()
