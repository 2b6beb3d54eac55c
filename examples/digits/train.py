#!/usr/bin/env python3
"""Train a small CNN on scikit-learn's bundled 8x8 digits dataset and export it to ONNX.

Writes, next to this script:
  digits.onnx        input "image" (1,1,8,8) float32 in [0,1], output "logits" (1,10)
  digits_test.npz    x: held-out images float32 (N,1,8,8), y: int64 labels (N,)
  digits_calibration.npz  x: 256 training images, for calibration (pruning, int8)

Prints the held-out accuracy of the exported model, measured with onnxruntime
(1 thread, batch-1 loop). Runs on CPU in well under a minute; no downloads.
"""
import os
import random

import numpy as np
import onnx
import torch
import torch.nn as nn
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

SEED = 0
HERE = os.path.dirname(os.path.abspath(__file__))
ONNX_PATH = os.path.join(HERE, "digits.onnx")
NPZ_PATH = os.path.join(HERE, "digits_test.npz")
CALIB_PATH = os.path.join(HERE, "digits_calibration.npz")


class DigitsCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
            nn.MaxPool2d(2),                                   # 8x8 -> 4x4
            nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),                           # -> GlobalAveragePool
            nn.Flatten(),
        )
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        return self.fc(self.features(x))


def main():
    torch.set_num_threads(1)
    random.seed(SEED)
    np.random.seed(SEED)
    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)

    digits = load_digits()
    x = (digits.images.astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)
    y = digits.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=0.25, random_state=0, stratify=y)

    model = DigitsCNN()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=30)
    loss_fn = nn.CrossEntropyLoss()
    xt, yt = torch.from_numpy(x_tr), torch.from_numpy(y_tr)
    gen = torch.Generator().manual_seed(SEED)
    for epoch in range(30):
        model.train()
        perm = torch.randperm(len(xt), generator=gen)
        total = 0.0
        for i in range(0, len(xt), 32):
            idx = perm[i:i + 32]
            opt.zero_grad()
            loss = loss_fn(model(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        sched.step()
        if epoch % 5 == 4 or epoch == 29:
            model.eval()
            with torch.no_grad():
                acc = (model(torch.from_numpy(x_te)).argmax(1).numpy() == y_te).mean()
            print(f"epoch {epoch + 1:2d}  loss {total / len(xt):.4f}  torch test acc {acc:.4f}")

    model.eval()
    dummy = torch.from_numpy(x_te[:1])
    torch.onnx.export(
        model, (dummy,), ONNX_PATH, dynamo=False, opset_version=17,
        input_names=["image"], output_names=["logits"], do_constant_folding=True)
    m = onnx.load(ONNX_PATH)
    onnx.checker.check_model(m, full_check=True)
    np.savez(NPZ_PATH, x=x_te, y=y_te)
    np.savez(CALIB_PATH, x=x_tr[:256])     # calibration data comes from the training split

    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(ONNX_PATH, so, providers=["CPUExecutionProvider"])
    correct = 0
    max_diff = 0.0
    with torch.no_grad():
        ref = model(torch.from_numpy(x_te)).numpy()
    for i in range(len(x_te)):
        (logits,) = sess.run(["logits"], {"image": x_te[i:i + 1]})
        max_diff = max(max_diff, float(np.abs(logits[0] - ref[i]).max()))
        correct += int(logits[0].argmax() == y_te[i])
    acc = correct / len(x_te)
    print(f"onnx ops: {sorted({n.op_type for n in m.graph.node})}")
    print(f"max |ort - torch| = {max_diff:.2e}")
    print(f"onnxruntime held-out accuracy: {correct}/{len(x_te)} = {acc:.4f}")
    assert acc >= 0.97, acc


if __name__ == "__main__":
    main()
