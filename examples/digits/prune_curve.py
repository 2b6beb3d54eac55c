"""Accuracy of the digits CNN's generated C against how much of it is pruned; writes prune_curve.png.

    python examples/digits/prune_curve.py        (needs matplotlib, which Kiln itself does not)

Magnitude pruning zeroes the smallest weights over the whole model; channel pruning removes the
output channels with the smallest L1 norm from every layer (the next layer's bias takes their mean
activation on the calibration images, from the training split), so the C really gets smaller.
"""
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import codegen  # noqa: E402
from codegen.prune_report import prune_report  # noqa: E402
from codegen.verify import load_inputs  # noqa: E402

HERE = Path(__file__).resolve().parent
SWEEPS = {"magnitude": (0.0, 0.25, 0.5, 0.6, 0.7, 0.75, 0.8, 0.9),
          "channels": (0.0, 0.0625, 0.125, 0.1875, 0.25, 0.3125, 0.375, 0.5)}


def main():
    model = HERE / "digits.onnx"
    specs = codegen.compile(model).build().inputs
    samples, labels = load_inputs(HERE / "digits_test.npz", specs)
    rows = prune_report(model, samples, labels, calibration=HERE / "digits_calibration.npz", sweeps=SWEEPS)
    fig, ax = plt.subplots(figsize=(6.4, 4))
    for method, label in (("magnitude", "magnitude pruning (fraction of weights zeroed)"),
                          ("channels", "channel pruning (fraction of channels removed)")):
        pts = [(r["strength"], 100 * r["accuracy"]) for r in rows if r["method"] == method]
        ax.plot(*zip(*pts), marker="o", label=label)
    ax.set_xlabel("pruned fraction")
    ax.set_ylabel("held-out accuracy of the generated C (%)")
    ax.set_title("digits CNN: accuracy vs pruning (450 held-out images)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(HERE / "prune_curve.png", dpi=100)
    for r in rows:
        print(f"{r['method']:<10}{r['strength']:>7.3f}  acc {100 * r['accuracy']:6.2f}%  macs {r['macs']:>8,}  "
              f"weights {r['weight_bytes']:>7,} B  non-zero {r['nonzero_weights']:>6,}")


if __name__ == "__main__":
    main()
