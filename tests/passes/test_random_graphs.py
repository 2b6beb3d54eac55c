"""Property test: on seeded random graphs of convolutions, batch norms, pools and elementwise ops
(with branches, residuals and values read by several nodes), -O0, -O1 and -O2 all compute what
onnxruntime computes."""
import numpy as np
import pytest
from onnx import helper

from ..graphs import model, same_function

UNARY = ["Relu", "Sigmoid", "Tanh", "LeakyRelu", "HardSwish", "HardSigmoid", "Clip"]
BINARY = ["Add", "Mul", "Sub", "Max", "Min"]


def random_graph(seed):
    rng = np.random.default_rng(seed)
    c, h = int(rng.integers(2, 5)), int(rng.integers(4, 8))
    shape = (1, c, h, h)
    values, nodes, inits = ["x"], [], {}

    def const(name, arr):
        inits[name] = np.asarray(arr, np.float32)
        return name

    for i in range(int(rng.integers(3, 10))):
        src = values[-1] if rng.random() < 0.6 else values[int(rng.integers(len(values)))]
        out = f"v{i}"
        kind = rng.choice(["conv", "conv", "bn", "unary", "unary", "binary", "channel", "pool"])
        if kind == "conv":
            group = c if rng.random() < 0.3 else 1
            w = const(f"w{i}", rng.standard_normal((c, c // group, 3, 3)) * 0.5)
            b = const(f"b{i}", rng.standard_normal(c))
            nodes.append(helper.make_node("Conv", [src, w, b], [out], pads=[1, 1, 1, 1], group=group, name=f"n{i}"))
        elif kind == "bn":
            stats = [const(f"bn{i}_{k}", rng.uniform(0.5, 1.5, c) if k in ("s", "v") else rng.standard_normal(c))
                     for k in ("s", "b", "m", "v")]
            nodes.append(helper.make_node("BatchNormalization", [src, *stats], [out], name=f"n{i}"))
        elif kind == "unary":
            op = str(rng.choice(UNARY))
            extra = [const(f"lo{i}", -0.5), const(f"hi{i}", 0.7)] if op == "Clip" else []
            nodes.append(helper.make_node(op, [src, *extra], [out], name=f"n{i}"))
        elif kind == "binary":
            other = values[int(rng.integers(len(values)))]
            nodes.append(helper.make_node(str(rng.choice(BINARY)), [src, other], [out], name=f"n{i}"))
        elif kind == "channel":
            k = const(f"k{i}", rng.uniform(0.5, 1.5, (1, c, 1, 1)) if rng.random() < 0.7 else rng.uniform(0.5, 1.5))
            nodes.append(helper.make_node(str(rng.choice(["Mul", "Add", "Sub", "Div"])), [src, k], [out], name=f"n{i}"))
        else:
            nodes.append(helper.make_node("MaxPool", [src], [out], kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                                          name=f"n{i}"))
        values.append(out)
    outputs = [(values[-1], shape)]
    if rng.random() < 0.3 and values[-2] != "x":
        outputs.append((values[-2], shape))            # an intermediate that is also an output
    return model(nodes, [("x", shape)], outputs, inits, name=f"random{seed}")


@pytest.mark.parametrize("seed", range(40))
def test_optimised_equals_unoptimised(seed):
    m = random_graph(seed)
    same_function(m, seed=seed, opt_level=1)
    same_function(m, seed=seed, opt_level=2)
