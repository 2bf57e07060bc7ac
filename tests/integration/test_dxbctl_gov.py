"""`dxbctl` governance commands (PROTOCOL.md section 10): catalog, demands,
grants, objections and `stats --by`, as the operator on the admin socket and
as a node through its agent (`--agent`).

Every governance step here goes through the dxbctl binary only, against a
real broker with governance enforced, an owner agent declaring hr.employees
in its catalog and a consumer agent; the data itself travels through the
agents' spool directories. The usage-error tests need no broker.

Run: DXB_BUILD=build /usr/bin/python3 -m pytest -q tests/integration/test_dxbctl_gov.py
"""
import json
import os
import re
import subprocess
import time

import pytest

from dxbharness import require_binary, wait_until

EX_USAGE = 64
GOV = {"enforce": True}
FIELDS = [{"name": n, "type": "string", "sensitivity": s}
          for n, s in (("name", 2), ("id_no", 3), ("phone", 2), ("address", 1), ("dept", 0))]
CSV = ("name,id_no,phone,address,dept\n"
       "张三丰,32130219800101123X,13812345678,江苏省宿迁市宿城区洪泽湖路1号,人社局\n"
       "欧阳娜娜,321322199912310021,13900001111,\"江苏省宿迁市沭阳县人民路2号, 3楼\",民政局\n")
NO_BROKER = "ipc:///nonexistent/dxbctl-gov.sock"
DEMAND_HEADERS = ["ID", "CONSUMER", "DATASET", "OWNER", "STATE", "WAITED", "PURPOSE"]


# ---- helpers ----------------------------------------------------------------

def ctl(*args, admin=None, agent=None, env=None, timeout_ms=10000):
    """Runs dxbctl against a broker's admin socket (admin) or an agent's local
    API (agent); returns the CompletedProcess."""
    argv = [require_binary("dxbctl"), "--timeout", str(timeout_ms)]
    if admin is not None:
        argv += ["--admin", admin]
    if agent is not None:
        argv += ["--agent", agent]
    full_env = {k: v for k, v in os.environ.items() if k not in ("DXB_ADMIN", "DXB_AGENT")}
    full_env.update(env or {})
    return subprocess.run(argv + list(args), capture_output=True, text=True, env=full_env,
                          timeout=timeout_ms / 1000 + 30)


def ok(out):
    assert out.returncode == 0, f"rc={out.returncode}\nstdout: {out.stdout}\nstderr: {out.stderr}"
    return out.stdout


def js(*args, **kw):
    """Runs a dxbctl command with --json and returns the parsed rows."""
    return json.loads(ok(ctl("--json", *args, **kw)))


def refused(out, code, text):
    """Checks that the broker refused: exit 1 and 'CODE: message' on stderr."""
    assert out.returncode == 1, f"rc={out.returncode}: {out.stdout} {out.stderr}"
    assert out.stdout == ""
    assert f": {code}: " in out.stderr and text in out.stderr, out.stderr


def table(text):
    """Splits a human table into rows of cells (columns are 2+ spaces apart)."""
    return [re.split(r"\s{2,}", line.strip()) for line in text.splitlines() if line.strip()]


def world(h):
    """A broker enforcing governance, the owner sq.hrss declaring
    hr.employees (conditional, level 1) and the consumer sq.civil
    (clearance 2), both connected and the entry in the catalog."""
    owner, consumer = h.keygen("sq.hrss"), h.keygen("sq.civil")
    b = h.broker([{"key": owner, "clearance": 2}, {"key": consumer, "clearance": 2}],
                 governance=GOV)
    ds = [{"id": "hr.employees", "recipients": ["sq.civil"],
           "catalog": {"title": "在职人员 employees", "description": "daily snapshot",
                       "level": 1, "share": "conditional", "frequency": "daily",
                       "region": "321300", "fields": FIELDS}}]
    o = h.agent(owner, b, datasets=ds)
    c = h.agent(consumer, b)
    h.wait_connected("sq.hrss")
    h.wait_connected("sq.civil")
    wait_until(lambda: js("catalog", "list", admin=b.admin), 15, what="the catalog entry")
    return b, o, c


def file_demand(b, *extra):
    rows = js("demands", "file", "hr.employees", "--purpose", "社会救助核查 assistance checks",
              "--for", "sq.civil", *extra, admin=b.admin)
    assert len(rows) == 1
    return rows[0]


def wait_grants_at(agent):
    path = os.path.join(agent.data_dir, "governance", "grants.json")
    wait_until(lambda: os.path.exists(path) and json.load(open(path)), 15,
               what=f"grants.json at {agent.node}")


def audit_refusal(b, detail):
    for row in js("audit", "tail", "--n", "500", admin=b.admin):
        if row["action"] == "publish" and row["result"] == "EDENIED" and detail in row["detail"]:
            return row
    return None


# ---- catalog ------------------------------------------------------------------

@pytest.mark.agent
def test_catalog_list_and_show_print_json_rows_and_readable_tables(h):
    b, o, c = world(h)
    rows = js("catalog", "list", admin=b.admin)
    assert [(r["dataset"], r["owner"], r["share"], r["level"], r["n_fields"]) for r in rows] == \
        [("hr.employees", "sq.hrss", "conditional", 1, 5)]

    t = table(ok(ctl("catalog", "list", admin=b.admin)))
    assert t[0][:6] == ["DATASET", "OWNER", "TITLE", "LEVEL", "SHARE", "FREQUENCY"]
    assert t[1][:5] == ["hr.employees", "sq.hrss", "在职人员 employees", "1", "conditional"]

    show = js("catalog", "show", "hr.employees", admin=b.admin)[0]
    assert show["description"] == "daily snapshot"
    assert "id_no:string:3" in show["fields"]

    text = ok(ctl("catalog", "show", "hr.employees", admin=b.admin))
    block, fields = text.split("\nfields:\n")
    kv = dict(line.split(None, 1) for line in block.splitlines() if line.strip())
    assert kv["dataset"] == "hr.employees" and kv["owner"] == "sq.hrss"
    assert kv["description"] == "daily snapshot" and kv["share"] == "conditional"
    # The fields one per line: name, type, sensitivity.
    ft = table(fields)
    assert ft[0] == ["NAME", "TYPE", "SENSITIVITY"]
    assert ft[1:] == [["name", "string", "2"], ["id_no", "string", "3"],
                      ["phone", "string", "2"], ["address", "string", "1"],
                      ["dept", "string", "0"]]

    refused(ctl("catalog", "show", "hr.nothing", admin=b.admin), "ENOTFOUND",
            "dataset hr.nothing is not in the catalog")


# ---- demands and grants -------------------------------------------------------

@pytest.mark.agent
def test_demand_filed_for_a_consumer_approved_with_a_mask_delivers_masked_records(h):
    b, o, c = world(h)
    d = file_demand(b, "--fields", "name,id_no,phone", "--days", "30")
    assert (d["state"], d["consumer"], d["owner"], d["filed_by"]) == \
        ("pending", "sq.civil", "sq.hrss", "operator")
    assert (d["fields"], d["period_days"]) == ("name,id_no,phone", 30)

    pend = js("demands", "--state", "pending", admin=b.admin)
    assert [x["demand_id"] for x in pend] == [d["demand_id"]]
    assert isinstance(pend[0]["waited_s"], int) and pend[0]["waited_s"] >= 0
    assert js("demands", "--state", "approved", admin=b.admin) == []

    t = table(ok(ctl("demands", "--state", "pending", admin=b.admin)))
    assert t[0] == DEMAND_HEADERS
    row = t[1]
    assert row[:5] == [str(d["demand_id"]), "sq.civil", "hr.employees", "sq.hrss", "pending"]
    assert re.fullmatch(r"\d+s|\d+m\d\ds", row[5]), row  # waited, as a duration
    assert row[6] == "社会救助核查 assistance checks"

    mask = "name=keep:1,0;id_no=keep:6,4;phone=keep:3,4"
    a = js("demands", "approve", str(d["demand_id"]), "--fields", "name,id_no,phone",
           "--mask", mask, "--expires", "7", admin=b.admin)[0]
    assert a["state"] == "approved" and a["grant_id"] > 0 and a["decided_by"] == "operator"

    grants = js("grants", admin=b.admin)
    assert [(g["grant_id"], g["consumer"], g["state"], g["mask"], g["fields"]) for g in grants] \
        == [(a["grant_id"], "sq.civil", "active", mask, "name,id_no,phone")]
    week_ms = 7 * 86400 * 1000
    assert abs(grants[0]["expires_ms"] - (grants[0]["created_ms"] + week_ms)) < 5000
    assert js("grants", "--dataset", "hr.other", admin=b.admin) == []
    gt = table(ok(ctl("grants", "--dataset", "hr.employees", admin=b.admin)))
    assert gt[0] == ["ID", "DATASET", "CONSUMER", "OWNER", "STATE", "FIELDS", "MASK", "EXPIRES",
                     "BY"]
    assert gt[1][:6] == [str(a["grant_id"]), "hr.employees", "sq.civil", "sq.hrss", "active",
                         "name,id_no,phone"]
    assert gt[1][6] == mask and re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", gt[1][7])

    # The owner's agent masks before sealing: the consumer gets only the
    # granted fields, masked.
    wait_grants_at(o)
    o.drop("hr.employees", "staff.csv", CSV.encode())
    data, _ = wait_until(lambda: c.received("hr.employees").get("staff.csv"), 20,
                         what="the masked file")
    lines = data.decode().splitlines()
    assert lines[0] == "name,id_no,phone"
    assert lines[1] == "张**,321302********123X,138****5678"
    assert lines[2].startswith("欧***,321322********0021,139****1111")
    for raw in ("32130219800101123X", "13812345678", "洪泽湖路", "人社局"):
        assert raw not in data.decode()


@pytest.mark.agent
def test_denied_demand_shows_its_reason_and_cannot_be_approved(h):
    b, o, c = world(h)
    d = file_demand(b)
    den = js("demands", "deny", str(d["demand_id"]), "--reason", "not needed", admin=b.admin)[0]
    assert den["state"] == "denied" and den["reason"] == "not needed"
    assert [x["reason"] for x in js("demands", "--state", "denied", admin=b.admin)] == \
        ["not needed"]
    refused(ctl("demands", "approve", str(d["demand_id"]), admin=b.admin), "EINVAL",
            "already denied")
    refused(ctl("demands", "approve", "999", admin=b.admin), "ENOTFOUND", "no demand 999")
    d2 = file_demand(b)
    refused(ctl("demands", "approve", str(d2["demand_id"]), "--mask", "name=explode",
                admin=b.admin), "EINVAL", "masking policy")
    refused(ctl("demands", "file", "hr.employees", "--purpose", "p", "--fields", "salary",
                "--for", "sq.civil", admin=b.admin), "EINVAL", "'salary' is not a field")


@pytest.mark.agent
def test_revoked_grant_refuses_the_next_message_as_the_audit_tail_shows(h):
    b, o, c = world(h)
    d = file_demand(b)
    a = js("demands", "approve", str(d["demand_id"]), admin=b.admin)[0]
    wait_grants_at(o)
    o.drop("hr.employees", "one.csv", CSV.encode())
    wait_until(lambda: "one.csv" in c.received("hr.employees"), 20, what="first file")
    assert audit_refusal(b, "no valid grant for sq.civil") is None

    r = js("grants", "revoke", str(a["grant_id"]), "--reason", "audit finding", admin=b.admin)[0]
    assert r["state"] == "revoked" and r["revoked_ms"] > 0
    assert [g["state"] for g in js("grants", admin=b.admin)] == ["revoked"]
    refused(ctl("grants", "revoke", str(a["grant_id"]), admin=b.admin), "EINVAL",
            "already revoked")

    o.drop("hr.employees", "two.csv", CSV.encode())
    row = wait_until(lambda: audit_refusal(b, "no valid grant for sq.civil"), 15,
                     what="the refusal in `dxbctl audit tail --json`")
    assert row["actor"] == "sq.hrss" and row["object"]
    assert any(x["action"] == "grant-revoke" and "reason=audit finding" in x["detail"]
               for x in js("audit", "tail", "--n", "500", admin=b.admin))
    assert "two.csv" not in c.received("hr.employees")


# ---- objections ---------------------------------------------------------------

@pytest.mark.agent
def test_objection_is_filed_responded_to_and_closed(h):
    b, o, c = world(h)
    ob = js("objections", "file", "hr.employees", "--record", "id_no=32130219800101123X",
            "--message", "birth date wrong", "--by", "sq.civil", admin=b.admin)[0]
    assert (ob["state"], ob["owner"], ob["filer"], ob["record"]) == \
        ("open", "sq.hrss", "sq.civil", "id_no=32130219800101123X")
    t = table(ok(ctl("objections", "--state", "open", admin=b.admin)))
    assert t[0][:5] == ["ID", "DATASET", "FILER", "OWNER", "STATE"]
    assert t[1][:5] == [str(ob["objection_id"]), "hr.employees", "sq.civil", "sq.hrss", "open"]
    assert t[1][-3:] == ["id_no=32130219800101123X", "birth date wrong", "-"]

    oid = str(ob["objection_id"])
    r = js("objections", "respond", oid, "--message", "corrected tomorrow", admin=b.admin)[0]
    assert r["state"] == "responded" and r["response"] == "corrected tomorrow"
    assert [x["objection_id"] for x in js("objections", "--state", "responded",
                                          admin=b.admin)] == [ob["objection_id"]]
    assert js("objections", "--state", "open", admin=b.admin) == []
    # What an action made prints, for a person, as a block of "key  value".
    block = ok(ctl("objections", "close", oid, admin=b.admin))
    kv = dict(line.split(None, 1) for line in block.splitlines())
    assert kv["id"] == oid and kv["state"] == "closed"
    assert kv["response"] == "corrected tomorrow" and kv["filer"] == "sq.civil"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", kv["closed"]), kv
    cl = js("objections", "--state", "closed", admin=b.admin)[0]
    assert cl["state"] == "closed" and cl["closed_ms"] >= r["responded_ms"]
    refused(ctl("objections", "respond", oid, "--message", "again", admin=b.admin), "EINVAL",
            "is closed")


# ---- figures ------------------------------------------------------------------

@pytest.mark.agent
def test_stats_by_dataset_and_node_count_with_numbers_and_since(h):
    b, o, c = world(h)
    o.drop("hr.employees", "refused.csv", CSV.encode())  # no grant yet: refused
    wait_until(lambda: audit_refusal(b, "no valid grant"), 15, what="a refusal")
    d = file_demand(b)
    js("demands", "approve", str(d["demand_id"]), admin=b.admin)
    wait_grants_at(o)
    for i in range(2):
        o.drop("hr.employees", f"f{i}.csv", CSV.encode())
    wait_until(lambda: len(c.received("hr.employees")) == 2, 30, what="two files")
    h.wait_queue("sq.civil", 0)
    js("objections", "file", "hr.employees", "--record", "row 2", "--message", "wrong phone",
       "--by", "sq.civil", admin=b.admin)

    by_ds = {r["dataset"]: r for r in js("stats", "--by", "dataset", admin=b.admin)}
    r = by_ds["hr.employees"]
    assert (r["deliveries"], r["delivered"], r["refused"]) == (2, 2, 1), r
    assert (r["demands"], r["demands_pending"], r["objections"], r["objections_open"]) == \
        (1, 0, 1, 1), r
    assert all(isinstance(v, int) for k, v in r.items() if k != "dataset"), r
    assert r["bytes_in"] > 2 * len(CSV.encode())

    by_node = {r["node"]: r for r in js("stats", "--by", "node", admin=b.admin)}
    assert by_node["sq.hrss"]["deliveries"] == 2 and by_node["sq.hrss"]["refused"] == 1
    assert by_node["sq.hrss"]["demands"] == 1
    assert by_node["sq.civil"]["delivered"] == 2 and by_node["sq.civil"]["deliveries"] == 0

    # --since: an age counts today; tomorrow (ISO 8601) counts nothing yet.
    assert {r["dataset"]: r for r in js("stats", "--by", "dataset", "--since", "1h",
                                        admin=b.admin)}["hr.employees"]["deliveries"] == 2
    tomorrow = time.strftime("%Y-%m-%dT00:00:00Z", time.gmtime(time.time() + 86400))
    later = js("stats", "--by", "dataset", "--since", tomorrow, admin=b.admin)
    assert [(x["dataset"], x["deliveries"], x["demands"]) for x in later] == \
        [("hr.employees", 0, 0)]
    assert later[0]["since_ms"] > int(time.time() * 1000)

    t = table(ok(ctl("stats", "--by", "node", admin=b.admin)))
    assert t[0][:4] == ["NODE", "DELIVERIES", "DELIVERED", "REFUSED"]
    hrss = next(row for row in t[1:] if row[0] == "sq.hrss")
    assert hrss[1:4] == ["2", "0", "1"] and re.fullmatch(r"[\d.]+ (B|KiB)", hrss[4]), hrss
    # Without --by, stats is still the broker's counters, one per line.
    counters = js("stats", admin=b.admin)
    assert len(counters) == 1 and counters[0]["published"] >= 2
    assert re.search(r"^published\s+\d+$", ok(ctl("stats", admin=b.admin)), re.M)


# ---- acting as a node through its agent ---------------------------------------

@pytest.mark.agent
def test_agent_mode_files_as_the_consumer_and_approves_as_the_owner(h):
    b, o, c = world(h)
    d = js("demands", "file", "hr.employees", "--purpose", "eligibility checks", "--fields",
           "name,phone", "--days", "10", agent=c.api)[0]
    assert (d["consumer"], d["filed_by"], d["state"]) == ("sq.civil", "sq.civil", "pending")
    # The consumer may not decide its own demand; the owner may.
    refused(ctl("demands", "approve", str(d["demand_id"]), agent=c.api), "EDENIED",
            "only the owner")
    a = js("demands", "approve", str(d["demand_id"]), "--mask", "phone=keep:3,4",
           agent=o.api)[0]
    assert a["state"] == "approved" and a["decided_by"] == "sq.hrss"
    g = js("grants", agent=c.api)
    assert [(x["consumer"], x["mask"], x["fields"]) for x in g] == \
        [("sq.civil", "phone=keep:3,4", "name,phone")]
    # Figures are the operator's.
    refused(ctl("stats", "--by", "node", agent=c.api), "EDENIED", "figures are for operators")
    # $DXB_AGENT stands in for --agent: filing needs no --for then.
    d2 = js("demands", "file", "hr.employees", "--purpose", "second", env={"DXB_AGENT": c.api})[0]
    assert d2["filed_by"] == "sq.civil"
    # ... unless --admin is given: then it is the operator, who must say for whom.
    out = ctl("demands", "file", "hr.employees", "--purpose", "third", admin=b.admin,
              env={"DXB_AGENT": c.api})
    assert out.returncode == EX_USAGE and "--for" in out.stderr
    # The owner objection flow through the agents: filer files, owner answers.
    ob = js("objections", "file", "hr.employees", "--record", "row 1", "--message", "typo",
            agent=c.api)[0]
    assert ob["filer"] == "sq.civil"
    refused(ctl("objections", "respond", str(ob["objection_id"]), "--message", "x", agent=c.api),
            "EDENIED", "only sq.hrss")
    assert js("objections", "respond", str(ob["objection_id"]), "--message", "fixed",
              agent=o.api)[0]["state"] == "responded"


# ---- command line -------------------------------------------------------------

@pytest.mark.parametrize("args,needle", [
    (["demands", "file", "hr.employees", "--purpose", "p"], "--for"),
    (["--agent", "ipc:///x/api.sock", "demands", "file", "hr.employees", "--purpose", "p",
      "--for", "sq.civil"], "--for"),
    (["objections", "file", "hr.employees", "--record", "r", "--message", "m"], "--by"),
    (["--agent", "ipc:///x/api.sock", "objections", "file", "hr.employees", "--record", "r",
      "--message", "m", "--by", "sq.civil"], "--by"),
    (["demands", "file", "hr.employees", "--for", "sq.civil"], "--purpose"),
    (["demands", "file", "hr.employees", "--purpose", "x" * 257, "--for", "sq.civil"],
     "--purpose"),
    (["--agent", "ipc:///x/api.sock", "demands", "file", "hr.employees", "--purpose", "x" * 1025],
     "--purpose"),
    (["demands", "approve", "7", "--mask", "m" * 300], "--mask"),
    (["demands", "approve", "seven"], "ID"),
    (["demands", "approve", "7", "--expires", "0"], "--expires"),
    (["demands", "approve", "7", "--purpose", "p"], "--purpose"),
    (["demands", "deny", "7"], "--reason"),
    (["demands", "--state", "open"], "--state"),
    (["objections", "--state", "pending"], "--state"),
    (["demands", "file", "HR", "--purpose", "p", "--for", "sq.civil"], "HR"),
    (["demands", "file", "hr.employees", "--purpose", "p", "--fields", "a,,b", "--for", "x"],
     "--fields"),
    (["grants", "revoke"], "ID"),
    (["grants", "--dataset", "Bad!"], "--dataset"),
    (["catalog"], "list or show"),
    (["catalog", "drop", "x"], "catalog drop"),
    (["stats", "--by", "region"], "--by"),
    (["stats", "--since", "7d"], "--since"),
    (["stats", "--by", "node", "--since", "last tuesday"], "--since"),
    (["--agent", "ipc:///x/api.sock", "stats"], "--agent"),
    (["--agent", "ipc:///x/api.sock", "nodes"], "--agent"),
    (["--agent", "ipc:///x/api.sock", "--admin", NO_BROKER, "catalog", "list"], "--agent"),
    (["demands", "--state", "pending", "--state", "denied"], "--state"),
    (["demands", "--bogus", "1"], "--bogus"),
])
def test_usage_errors_exit_64_naming_the_bad_option(args, needle):
    # --agent and --admin do not go together: name the admin socket only when
    # the line does not choose its own path.
    own_path = "--admin" in args or "--agent" in args
    out = ctl(*args, admin=None if own_path else NO_BROKER)
    assert out.returncode == EX_USAGE, (out.returncode, out.stderr)
    assert out.stdout == ""
    lines = out.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("dxbctl: ") and "--help" in lines[0], lines
    assert needle in lines[0], lines[0]


def test_admin_argument_limit_is_256_bytes_and_the_agent_limit_1024():
    # At the limit the request is sent (and, with nobody there, not answered).
    at = ctl("demands", "file", "hr.employees", "--purpose", "x" * 256, "--for", "sq.civil",
             admin=NO_BROKER, timeout_ms=200)
    assert at.returncode == 2 and "no answer from broker" in at.stderr
    over = ctl("demands", "file", "hr.employees", "--purpose", "x" * 257, "--for", "sq.civil",
               admin=NO_BROKER, timeout_ms=200)
    assert over.returncode == EX_USAGE and "257 bytes" in over.stderr and "256" in over.stderr
    agent_at = ctl("demands", "file", "hr.employees", "--purpose", "x" * 1024,
                   agent="ipc:///nonexistent/api.sock", timeout_ms=200)
    assert agent_at.returncode == 2 and "no answer from agent" in agent_at.stderr
    agent_over = ctl("demands", "file", "hr.employees", "--purpose", "x" * 1025,
                     agent="ipc:///nonexistent/api.sock", timeout_ms=200)
    assert agent_over.returncode == EX_USAGE and "1024" in agent_over.stderr


@pytest.mark.parametrize("cmd", ["catalog", "demands", "grants", "objections", "stats"])
def test_each_governance_command_has_help_with_examples(cmd):
    out = ctl(cmd, "--help")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"usage: dxbctl {cmd}")
    assert "examples:" in out.stdout and f"dxbctl {cmd} " in out.stdout.split("examples:")[1]
    top = ok(ctl("--help"))
    assert f"  {cmd}" in top and "--agent ENDPOINT" in top
