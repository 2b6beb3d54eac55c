"""Shared test helpers: where fixtures live, how tests build, and the conformance tally."""
from __future__ import annotations

import collections
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"

# Tests build with -O2 (not the user default -march=native) so results do not depend on the CPU
# the suite runs on; every build still uses -std=c99 -Wall -Wextra -Wpedantic -Werror.
# KILN_SANITIZE=1 builds with AddressSanitizer and UndefinedBehaviorSanitizer instead, which needs the
# ASan runtime preloaded into Python (see tests/test_sanitize.py for the command).
SANITIZE_CFLAGS = ["-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined", "-fno-sanitize-recover=all"]
TEST_CFLAGS = SANITIZE_CFLAGS if os.environ.get("KILN_SANITIZE") == "1" else ["-O2"]


@pytest.fixture(scope="session", autouse=True)
def _kiln_cache(tmp_path_factory):
    if "KILN_CACHE" not in os.environ:
        os.environ["KILN_CACHE"] = str(tmp_path_factory.getbasetemp().parent / "kiln-cache")
    yield


_tally = collections.defaultdict(collections.Counter)


def pytest_runtest_logreport(report):
    if report.when != "call":
        return
    found = [value for key, value in report.user_properties if key == "conformance"]
    if found:
        ops, outcome = found[-1]
        outcome = outcome if report.passed else "FAILED"
        for op in ops:
            _tally[op][outcome] += 1
        _tally["*"][outcome] += 1


def pytest_terminal_summary(terminalreporter):
    if not _tally:
        return
    total = _tally.pop("*")
    from onnx.backend.test.case.node import collect_testcases
    n_all = len(collect_testcases())
    w = terminalreporter
    w.section("ONNX conformance")
    w.line(f"{total['passed']} passed of {n_all} ONNX node conformance cases "
           f"({total['rejected']} of the selected cases rejected with a clear error, {total['FAILED']} failed)")
    w.line(f"{'op':<28}{'passed':>8}{'rejected':>10}{'failed':>8}")
    for op in sorted(_tally):
        c = _tally[op]
        w.line(f"{op:<28}{c['passed']:>8}{c['rejected']:>10}{c['FAILED']:>8}")
