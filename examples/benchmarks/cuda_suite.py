"""Build, verify and time models with the CUDA backend in one call (for a machine with a GPU).

    python examples/benchmarks/cuda_suite.py [--precision fp32,tf32] [--torchvision resnet18,mobilenet_v2] [MODEL.onnx ...]

Each model: Kiln compiles it, writes NAME.cu, builds it with nvcc (-O3 -arch=sm_90), runs it on the
fixture's inputs (or seeded random ones) and compares with onnxruntime on the CPU; then times it
(CUDA events, median of up to 50 runs, as many as fit ~2 s, after 3 warm-ups). --torchvision exports those torchvision
architectures (seeded random weights) and also times PyTorch eager on the same GPU, with its defaults
(cuDNN may use TF32 in convolutions) and in strict float32. --precision: Kiln's builds of each model
(fp32, tf32, fp16: the tensor cores). One table last.
"""
from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import codegen  # noqa: E402
from codegen import cuda  # noqa: E402
from codegen.verify import random_inputs  # noqa: E402


def kiln_cuda(path, arrays=None, precision="fp32"):
    import onnx
    t0 = time.time()
    compiled = codegen.compile(path, backend="cuda")
    sources = cuda.emit_cuda(compiled, precision)
    cuda.build_cuda(sources)
    build_s = time.time() - t0
    r = cuda.run_and_time(compiled, onnx.load(str(path)), [arrays or random_inputs(compiled._io_specs()[0])],
                          precision=precision)
    launches = len(re.findall(r"^    layer_\w+<<<", sources.cu, re.M))
    return dict(ok=r["ok"], max_rel=r["max_rel"], ms=r["ms"], build_s=build_s, launches=launches)


def _prebuild(path, precision) -> float:
    """Seconds to compile and nvcc the model (into the build cache)."""
    t0 = time.time()
    try:
        cuda.build_cuda(cuda.emit_cuda(codegen.compile(path, backend="cuda"), precision))
    except Exception:       # kiln_cuda reports it
        pass
    return time.time() - t0


def torch_eager(model, x, runs=50, tf32=True):
    import torch
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = tf32
    model = model.cuda().eval()
    x = torch.from_numpy(x).cuda()
    times = []
    with torch.no_grad():
        for _ in range(5):
            model(x)
        for _ in range(runs):
            start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            model(x)
            stop.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(stop))
    return float(np.median(times))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("models", nargs="*")
    p.add_argument("--torchvision", default="")
    p.add_argument("--light", default="", help="onnx light-zoo model names (light_<name>.onnx), comma-separated")
    p.add_argument("--precision", default="fp32", help="Kiln's precisions to build, comma-separated (fp32,tf32,fp16)")
    args = p.parse_args()
    precisions = args.precision.split(",")
    rows = []
    import onnx.backend.test
    light = Path(onnx.backend.test.__file__).parent / "data" / "light"
    tmp = Path(tempfile.mkdtemp())
    models, eager = {}, {}          # name -> (path, inputs); name -> PyTorch eager ms
    for path in list(args.models) + [light / f"light_{n}.onnx" for n in filter(None, args.light.split(","))]:
        path = Path(path)
        io = path.with_name(path.stem + "_io.npz")
        models[path.stem] = (path, [np.load(io)["x"]] if io.is_file() else None)
    for name in filter(None, args.torchvision.split(",")):
        import torch
        import torchvision
        torch.manual_seed(0)
        model = getattr(torchvision.models, name)(weights=None).eval()
        x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
        onnx_path = tmp / f"{name}.onnx"
        torch.onnx.export(model, torch.from_numpy(x), str(onnx_path), opset_version=17, dynamo=False,
                          input_names=["x"], output_names=["y"])
        models[name] = (onnx_path, [x])
        eager[name] = dict(torch_ms=torch_eager(model, x), torch_fp32_ms=torch_eager(model, x, tf32=False))
    jobs = [(name, precision) for name in models for precision in precisions]
    with ThreadPoolExecutor(8) as pool:      # nvcc is the slow part: build everything at once (cached)
        build_s = dict(zip(jobs, pool.map(lambda job: _prebuild(models[job[0]][0], job[1]), jobs)))
    for name, precision in jobs:
        path, arrays = models[name]
        try:
            r = dict(kiln_cuda(path, arrays, precision), build_s=build_s[name, precision])
            if name in eager:
                r.update(eager[name], ratio=r["ms"] / eager[name]["torch_ms"])
        except Exception as err:       # one row per model, whatever happens
            r = dict(error=f"{type(err).__name__}: {str(err)[:300]}")
        rows.append(dict(model=name, precision=precision, **r))
        print(rows[-1], flush=True)
    print(f"\n{'model':24s} {'prec':>5s} {'ok':>5s} {'max err/scale':>14s} {'kiln ms':>9s} {'torch ms':>9s} "
          f"{'torch fp32':>10s} {'ratio':>6s} {'launches':>8s} {'build s':>8s}")
    for r in rows:
        if "error" in r:
            print(f"{r['model']:24s} {r['precision']:>5s} ERROR {r['error']}")
            continue
        print(f"{r['model']:24s} {r['precision']:>5s} {str(r['ok']):>5s} {r['max_rel']:14.2e} {r['ms']:9.3f} "
              f"{r.get('torch_ms', float('nan')):9.3f} {r.get('torch_fp32_ms', float('nan')):10.3f} "
              f"{r.get('ratio', float('nan')):6.2f} {r['launches']:8d} {r['build_s']:8.1f}")


if __name__ == "__main__":
    main()
