#!/usr/bin/env python3
"""tools/analysis_filter.py: applies tools/analysis-suppressions.txt to the
output of cppcheck or clang-tidy (tools/check, stages "cppcheck" and
"clang-tidy").

    analysis_filter.py TOOL SUPPRESSIONS SOURCES_LIST OUTPUT...

TOOL is cppcheck or clang-tidy. SOURCES_LIST names the analysed source files,
one a line, relative to the repository root (the working directory). Each
OUTPUT is a text file of diagnostics in the compiler format
"FILE:LINE:COL: warning|error: MESSAGE [CHECK]" followed by notes and source
excerpts (cppcheck is run with a --template that prints this form). Relative
paths are resolved against the directory given by --base (default: the
working directory; clang-tidy prints them relative to build/). When
OUTPUT.rc exists and holds a non-zero status while OUTPUT has no diagnostic,
the run itself failed, which counts as a finding against the source that
OUTPUT is named after ("agents__agt_spool.c.out" for agents/agt_spool.c).

A suppression names the tool, the check, the file and the enclosing function
(or "-" for file scope), and must give a reason:

    clang-tidy  clang-analyzer-core.NullDereference  tools/x.c  s_parse  why...

It does not name a line, so it survives edits elsewhere in the file, but it
covers only that check in that one function. "clang-tidy@deep" marks a false
positive that the analyzer reports only with a larger path budget than CI's
(DXB_TIDY_NODES): it applies the same way, but is not reported as stale when
a run does not see it. The enclosing function is found
the way the house style writes C: the nearest line above that starts with
"name(" in column 0, unless a "}" in column 0 (the end of an earlier
function or struct) comes first.

Prints every finding that is not suppressed, with its notes; warns about
suppressions that matched nothing (stale); the last line is
"clean=N dirty=N findings=N suppressed=N". Exit status: 0 when nothing is
left, 1 when findings are left, 2 on a usage or suppression-file error.
"""

import argparse
import os
import re
import sys

DIAG = re.compile(r"^(?P<path>[^\s:][^:]*):(?P<line>\d+):(?P<col>\d+): "
                  r"(?P<sev>warning|error): (?P<msg>.*)$")
CHECK = re.compile(r"\s\[(?P<check>[A-Za-z0-9_.\-]+)(?:,[^\]]*)?\]\s*$")
FUNC_START = re.compile(r"^([A-Za-z_]\w*)\(")


def load_suppressions(path, tool):
    entries = []
    with open(path, encoding="utf-8") as f:
        for no, raw in enumerate(f, 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split(None, 4)
            if len(parts) < 5 or not parts[4].strip():
                raise ValueError(f"{path}:{no}: want 'TOOL CHECK FILE FUNCTION REASON'")
            name, _, tag = parts[0].partition("@")
            if name not in ("cppcheck", "clang-tidy") or tag not in ("", "deep"):
                raise ValueError(f"{path}:{no}: unknown tool '{parts[0]}'")
            if name == tool:
                entries.append({"where": f"{path}:{no}", "check": parts[1], "file": parts[2],
                                "func": parts[3], "deep": tag == "deep", "used": 0})
    return entries


_source_cache = {}


def enclosing_function(path, line):
    """Name of the function whose body holds `line` (1-based), or "-"."""
    if path not in _source_cache:
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                _source_cache[path] = f.read().splitlines()
        except OSError:
            _source_cache[path] = []
    lines = _source_cache[path]
    for i in range(min(line, len(lines)) - 1, -1, -1):
        text = lines[i]
        m = FUNC_START.match(text)
        if m:
            return m.group(1)
        if text.startswith("}") and i != line - 1:
            return "-"
    return "-"


def read_blocks(path, base, root):
    """[(file, line, check, text)] of the diagnostics in one output file."""
    blocks = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for raw in f:
            text = raw.rstrip("\n")
            m = DIAG.match(text)
            if m is None:
                if blocks:
                    blocks[-1][3].append(text)
                continue
            p = m.group("path")
            if not os.path.isabs(p):
                p = os.path.join(base, p)
            p = os.path.relpath(os.path.normpath(p), root)
            c = CHECK.search(m.group("msg"))
            check = c.group("check") if c else "unknown"
            blocks.append((p, int(m.group("line")), check, [text]))
    return blocks


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("tool", choices=("cppcheck", "clang-tidy"))
    ap.add_argument("suppressions")
    ap.add_argument("sources")
    ap.add_argument("outputs", nargs="*")
    ap.add_argument("--base", default=".")
    args = ap.parse_intermixed_args()
    root = os.getcwd()
    base = os.path.abspath(args.base)
    try:
        entries = load_suppressions(args.suppressions, args.tool)
        with open(args.sources, encoding="utf-8") as f:
            sources = [ln.strip() for ln in f if ln.strip()]
    except (OSError, ValueError) as exc:
        print(f"analysis_filter: {exc}", file=sys.stderr)
        return 2

    seen = set()
    left = []
    suppressed = 0
    failures = []
    for out in args.outputs:
        blocks = read_blocks(out, base, root)
        rc_path = out + ".rc"
        if not blocks and os.path.exists(rc_path):
            with open(rc_path, encoding="utf-8") as f:
                rc = f.read().strip() or "?"
            if rc != "0":
                with open(out, encoding="utf-8", errors="replace") as f:
                    tail = f.read().splitlines()[-20:]
                name = os.path.basename(out)
                src = name[:-len(".out")].replace("__", "/") if name.endswith(".out") else out
                failures.append((src, rc, tail))
        for path, line, check, text in blocks:
            key = (path, line, check, text[0])
            if key in seen:  # a header's finding, once per translation unit
                continue
            seen.add(key)
            func = enclosing_function(path, line)
            hit = next((e for e in entries if e["check"] == check and e["file"] == path
                        and e["func"] == func), None)
            if hit is not None:
                hit["used"] += 1
                suppressed += 1
                continue
            left.append((path, func, check, text))

    for path, func, check, text in left:
        print(f"---- {path} ({func}): {check}")
        print("\n".join(text))
    for src, rc, tail in failures:
        print(f"---- {args.tool} failed on {src} (exit {rc}); its output ends:")
        print("\n".join(tail))
    for e in entries:
        if e["used"] == 0 and not e["deep"]:
            print(f"analysis_filter: warning: {e['where']}: suppression matched nothing "
                  f"({e['check']} in {e['file']} {e['func']}): remove it if the code changed",
                  file=sys.stderr)
    dirty = {p for p, _, _, _ in left} | {src for src, _, _ in failures}
    clean = sum(1 for s in sources if s not in dirty)
    findings = len(left) + len(failures)
    print(f"clean={clean} dirty={len(dirty)} findings={findings} suppressed={suppressed}")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
