"""pytest glue for the dxb integration tests: one Harness per test.

The `h` fixture gives each test a fresh temporary directory, keys, configs
and daemons (see dxbharness.py). At teardown every daemon is stopped with
SIGTERM; a daemon that then exits non-zero, or whose log holds a sanitizer
report, fails the test. When a test fails, the tail of every daemon's log is
printed and the directory is kept (its path is printed) for a closer look.
"""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import dxbharness  # noqa: E402


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


@pytest.fixture
def h(request):
    harness = dxbharness.Harness(request.node.name)
    yield harness
    problems = harness.close()
    failed = any(getattr(request.node, "rep_" + w, None) is not None
                 and getattr(request.node, "rep_" + w).failed for w in ("setup", "call"))
    if failed or problems:
        print(f"\n---- daemon logs of {request.node.name} (kept in {harness.dir}) ----")
        print(harness.logs())
    else:
        harness.remove()
    if problems and not failed:
        pytest.fail("teardown: " + "; ".join(problems), pytrace=False)
