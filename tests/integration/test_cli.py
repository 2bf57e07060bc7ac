"""Command lines and configuration checking (DESIGN.md section 6)."""
import os
import re

import pytest

from dxbharness import BIN, write_yaml

EX_CONFIG = 78


@pytest.mark.smoke
@pytest.mark.parametrize("kind", ["broker", "agent", "dxbctl", "send", "recv"])
def test_help_of_every_binary_exits_zero(h, kind):
    out = h.run(kind, "--help", timeout=10)
    assert out.returncode == 0, f"{BIN[kind]} --help: rc={out.returncode} {out.stderr}"
    assert "usage" in (out.stdout + out.stderr).lower()


def _write_lines(path, lines):
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


@pytest.mark.smoke
def test_broker_check_config_reports_unknown_key_and_bad_region_with_positions(h):
    key = h.keygen("sq.hub")
    node = h.keygen("sq.hrss")
    path = os.path.join(h.dir, "bad.yaml")
    _write_lines(path, [
        "broker:",                                      # 1
        "  id: sq.hub",                                 # 2
        f"  key: {key.secret_path}",                    # 3
        f"  data_dir: {h.dir}/data",                    # 4
        "  colour: blue",                               # 5: unknown key
        "nodes:",                                       # 6
        "  - id: sq.hrss",                              # 7
        f"    public_key_file: {node.pub_path}",        # 8
        "    region: '32130'",                          # 9: five digits
        "    level: department",                        # 10
    ])
    out = h.run("broker", "--config", path, "--check-config", timeout=15)
    text = out.stdout + out.stderr
    assert out.returncode == EX_CONFIG, text
    positions = re.findall(re.escape(path) + r":(\d+):(\d+): ", text)
    lines = sorted({int(line) for line, _ in positions})
    assert 5 in lines, f"no error at line 5 (unknown key):\n{text}"
    assert 9 in lines, f"no error at line 9 (bad region):\n{text}"
    assert "colour" in text and "region" in text
    assert not os.path.exists(os.path.join(h.dir, "data")), "check-config must not create the store"


@pytest.mark.smoke
def test_broker_check_config_accepts_a_valid_config(h):
    b = h.broker([h.keygen("sq.hrss")], start=False)
    out = h.run("broker", "--config", b.config_path, "--check-config", timeout=15)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.smoke
def test_broker_refuses_to_start_on_a_bad_config(h):
    path = os.path.join(h.dir, "empty.yaml")
    _write_lines(path, ["broker:", "  id: Not_Valid"])
    out = h.run("broker", "--config", path, timeout=15)
    assert out.returncode == EX_CONFIG, out.stdout + out.stderr
    assert re.search(re.escape(path) + r":\d+:\d+: ", out.stdout + out.stderr)


@pytest.mark.smoke
@pytest.mark.agent
def test_agent_check_config_reports_unknown_key_with_position(h):
    b = h.broker([h.keygen("sq.hrss")], start=False)
    a = h.agent(h.keys["sq.hrss"], b, start=False)
    ok = h.run("agent", "--config", a.config_path, "--check-config", timeout=15)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    cfg = a.config()
    cfg["link"]["colour"] = "blue"
    path = os.path.join(h.dir, "agent-bad.yaml")
    write_yaml(path, cfg)
    out = h.run("agent", "--config", path, "--check-config", timeout=15)
    text = out.stdout + out.stderr
    assert out.returncode != 0, text
    assert re.search(re.escape(path) + r":\d+:\d+: .*colour", text), text


@pytest.mark.smoke
def test_dxbctl_without_a_broker_says_so_and_exits_2(h):
    out = h.run("dxbctl", "--admin", f"ipc://{h.dir}/nothing.sock", "--timeout", "300", "nodes")
    assert out.returncode == 2, out.stdout + out.stderr
    assert "no answer" in out.stderr


@pytest.mark.smoke
def test_keygen_writes_private_secret_and_refuses_to_overwrite(h):
    key = h.keygen("sq.hrss")
    assert os.stat(key.secret_path).st_mode & 0o077 == 0
    assert len(key.public_key) == 40
    again = h.run("dxbctl", "keygen", "--name", "sq.hrss", "--out", h.keydir)
    assert again.returncode != 0


def _example_setup(h, name):
    """Copies conf/NAME into a temp dir and creates every key file it names."""
    from dxbharness import REPO

    conf = os.path.join(h.dir, "conf")
    os.makedirs(conf, exist_ok=True)
    with open(os.path.join(REPO, "conf", name), encoding="utf-8") as f:
        text = f.read()
    with open(os.path.join(conf, name), "w", encoding="utf-8") as f:
        f.write(text)
    for node in sorted(set(re.findall(r"keys/([a-z0-9_.-]+)\.(?:pub|secret)", text))):
        if not os.path.exists(os.path.join(conf, "keys", node + ".pub")):
            h.run("dxbctl", "keygen", "--name", node, "--out", os.path.join(conf, "keys"),
                  check=True)
    return os.path.join(conf, name)


@pytest.mark.smoke
def test_example_broker_yaml_is_valid(h):
    path = _example_setup(h, "broker.yaml")
    out = h.run("broker", "--config", path, "--check-config", timeout=15)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.smoke
@pytest.mark.agent
def test_example_agent_yaml_is_valid(h):
    path = _example_setup(h, "agent.yaml")
    out = h.run("agent", "--config", path, "--check-config", timeout=15)
    assert out.returncode == 0, out.stdout + out.stderr
