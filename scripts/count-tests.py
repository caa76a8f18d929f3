#!/usr/bin/env python3
"""Counts individual tests across meson test logs.

Criterion suites report TAP (one line per test); other tests count as one.
Prints failed tests by name and ends with 'N passed, N failed, N skipped'.
Exits 1 if any test failed or a log is missing.
"""
import json
import re
import sys

passed = failed = skipped = 0
failures = []
ok = True
for path in sys.argv[1:]:
    try:
        lines = open(path).read().splitlines()
    except OSError as e:
        print(f"count-tests: {path}: {e.strerror}: did meson test run?", file=sys.stderr)
        ok = False
        continue
    build = path.split("/")[0]
    for line in lines:
        t = json.loads(line)
        results = []
        if t.get("protocol") == "tap" or re.search(r"^TAP version", t.get("stdout", ""), re.M):
            for l in t.get("stdout", "").splitlines():
                m = re.match(r"^(not ok|ok)\b\s*(?:\d+)?\s*-?\s*(\S+)?(.*)$", l)
                if m:
                    results.append((m.group(1), m.group(2) or "?", m.group(3)))
        if not results or (t["result"] not in ("OK", "SKIP", "EXPECTEDFAIL") and
                           not any(r[0] == "not ok" for r in results)):
            # No per-test lines, or the binary itself failed (crash, timeout).
            results.append(("ok" if t["result"] == "OK" else
                            "skip" if t["result"] == "SKIP" else "not ok",
                            t["name"], " # " + t["result"]))
        for status, name, rest in results:
            if status == "skip" or "# SKIP" in rest:
                skipped += 1
            elif status == "ok":
                passed += 1
            else:
                failed += 1
                failures.append(f"{build}: {t['name']}: {name}{rest}")

for f in failures:
    print("FAILED", f)
print(f"{passed} passed, {failed} failed, {skipped} skipped")
sys.exit(0 if ok and failed == 0 else 1)
