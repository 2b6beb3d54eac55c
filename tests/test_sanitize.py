"""The generated C under AddressSanitizer and UndefinedBehaviorSanitizer: every conformance case Kiln
compiles, the model fixtures, digits and every SIMD path of the int8 kernels run in a child pytest with KILN_SANITIZE=1, where every build
uses -fsanitize=address,undefined -fno-sanitize-recover=all; any finding aborts the child.

By hand:  KILN_SANITIZE=1 LD_PRELOAD="$(cc -print-file-name=libasan.so) $(cc -print-file-name=libstdc++.so)" \\
          ASAN_OPTIONS=detect_leaks=0 \\
          python -m pytest tests/test_conformance.py tests/test_models.py tests/test_sparse.py -p no:xdist
"""
import os
import subprocess
import sys

import pytest

from .conftest import ROOT


def _runtime(name):
    path = subprocess.run(["cc", f"-print-file-name={name}"], capture_output=True, text=True).stdout.strip()
    return path if os.path.isabs(path) and os.path.exists(path) else None


def _asan_runtime():
    """The ASan runtime to preload, with libstdc++ after it: ASan intercepts __cxa_throw and needs the
    real one at start-up, or the first C++ exception (onnx's shape inference throws and catches
    them) aborts the process."""
    asan = _runtime("libasan.so")
    return asan and " ".join(filter(None, [asan, _runtime("libstdc++.so")]))


@pytest.mark.skipif(_asan_runtime() is None, reason="the C compiler has no AddressSanitizer runtime")
def test_conformance_and_fixtures_are_clean_under_sanitizers(tmp_path):
    env = dict(os.environ, KILN_SANITIZE="1", LD_PRELOAD=_asan_runtime(), KILN_CACHE=str(tmp_path / "cache"),
               ASAN_OPTIONS="detect_leaks=0:abort_on_error=1", UBSAN_OPTIONS="print_stacktrace=1")
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:xdist", "-p", "no:cacheprovider",
           "tests/test_conformance.py", "tests/test_models.py", "tests/test_sparse.py", "tests/test_int8.py",
           "-k", "conformance or fixture or digits or sparse or simd_paths"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    tail = (proc.stdout + proc.stderr)[-3000:]
    assert proc.returncode == 0, tail
    assert " passed" in tail and "error" not in tail.lower().split("passed")[-1]
