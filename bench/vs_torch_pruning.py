"""keraffe's structured pruning against Torch-Pruning, on the same CNN, the same data, the same budget, in one run.

The model: scikit-learn's digits upsampled to 16x16 (the demo's split: 1437
training, 360 test images), Conv(32)-BN-ReLU-MaxPool-Conv(64)-BN-ReLU-MaxPool-
Flatten-Dense(128)-ReLU-Dense(10), written twice: in Keras (the TensorFlow
backend) and in PyTorch. For every seed both start from the *same* weights
(generated once, copied across with the layouts converted: HWIO to OIHW
kernels, NHWC to NCHW flattening) and see the same batches in the same order
(Adam 1e-3, batch 32, BatchNorm with PyTorch's momentum and epsilon).

Then, for every MAC budget (a fraction of the dense model's MACs):

* keraffe: ``plan_channels(model, target_macs=budget, importance=l1)``, which
  searches one uniform ratio for every coupled channel group;
* Torch-Pruning (``torch-pruning`` from PyPI): ``MetaPruner`` with a uniform
  (not global) ratio, bisected to the largest MAC count within the budget, the
  classifier's outputs ignored, as keraffe keeps a model's outputs;
* the same importance criterion on both sides: the L1 norm of each output
  channel's filter (kernel and bias) in every layer that creates it, each
  layer's norms divided by their mean, averaged over the coupled layers
  (keraffe's "l1"; a small ``Importance`` class gives Torch-Pruning the same);
* both fine-tuned for the same epochs on the same batches.

Reported per budget, as mean and standard deviation over the seeds: test
accuracy right after pruning and after fine-tuning, MACs (counted by one
formula from the channel counts on both sides, and checked against keraffe's
``model_macs``), parameters, and latency. Latency is measured where both
results ship alike: the Torch-Pruning model is rebuilt as a Keras model with its
channel counts and weights (checked to compute the same outputs), both are
exported to Caffe, and OpenCV DNN times the two exports alternately (1 thread,
batch 1, median).

    python bench/vs_torch_pruning.py                   # 10 seeds, budgets 0.5 and 0.25
    python bench/vs_torch_pruning.py --seeds 1 --epochs 2 --fine-tune-epochs 1 --out /tmp/quick.json
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import importlib.metadata
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

CLASSES = 10
IMAGE = 16
EPSILON = 1e-5     # PyTorch's BatchNorm epsilon, used on both sides
MOMENTUM = 0.9     # Keras' name for PyTorch's momentum=0.1


@dataclasses.dataclass(frozen=True)
class Widths:
    """The channel counts of the CNN: conv1, conv2, the hidden Dense layer."""

    conv1: int = 32
    conv2: int = 64
    hidden: int = 128

    def macs(self) -> int:
        """Multiply-accumulates of one image, convolutions and dense layers (the one formula for both sides)."""
        pooled = IMAGE // 4
        return (IMAGE * IMAGE * 9 * 1 * self.conv1 + (IMAGE // 2) ** 2 * 9 * self.conv1 * self.conv2
                + pooled * pooled * self.conv2 * self.hidden + self.hidden * CLASSES)


def digits():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    images = (data.images / 16.0).astype("float32")
    images = np.repeat(np.repeat(images, 2, axis=1), 2, axis=2)[..., None]
    x_train, x_test, y_train, y_test = train_test_split(images, data.target, test_size=0.2, random_state=0,
                                                        stratify=data.target)
    return x_train, y_train.astype("int64"), x_test, y_test.astype("int64")


# --- the two models --------------------------------------------------------------------------------------

def keras_model(widths: Widths):
    import keras

    layers = keras.layers
    inputs = keras.Input((IMAGE, IMAGE, 1), name="image")
    x = inputs
    for index, filters in ((1, widths.conv1), (2, widths.conv2)):
        x = layers.Conv2D(filters, 3, padding="same", name=f"conv{index}")(x)
        x = layers.BatchNormalization(momentum=MOMENTUM, epsilon=EPSILON, name=f"bn{index}")(x)
        x = layers.ReLU(name=f"relu{index}")(x)
        x = layers.MaxPooling2D(name=f"pool{index}")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(widths.hidden, activation="relu", name="fc1")(x)
    return keras.Model(inputs, layers.Dense(CLASSES, name="fc2")(x), name="digits_cnn")


def torch_model(widths: Widths):
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(1, widths.conv1, 3, padding=1), nn.BatchNorm2d(widths.conv1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(widths.conv1, widths.conv2, 3, padding=1), nn.BatchNorm2d(widths.conv2), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(), nn.Linear((IMAGE // 4) ** 2 * widths.conv2, widths.hidden), nn.ReLU(),
        nn.Linear(widths.hidden, CLASSES))


def torch_widths(model) -> Widths:
    return Widths(model[0].out_channels, model[4].out_channels, model[9].out_features)


def initial_weights(widths: Widths, seed: int) -> dict:
    """He-normal kernels, zero biases, BatchNorm at its identity: the Keras layout, by layer name."""
    rng = np.random.default_rng(seed)

    def he(shape, fan_in):
        return rng.normal(0.0, np.sqrt(2.0 / fan_in), shape).astype("float32")

    pooled = (IMAGE // 4) ** 2 * widths.conv2
    bn = lambda c: [np.ones(c, "float32"), np.zeros(c, "float32"), np.zeros(c, "float32"),  # noqa: E731
                    np.ones(c, "float32")]
    return {
        "conv1": [he((3, 3, 1, widths.conv1), 9), np.zeros(widths.conv1, "float32")], "bn1": bn(widths.conv1),
        "conv2": [he((3, 3, widths.conv1, widths.conv2), 9 * widths.conv1), np.zeros(widths.conv2, "float32")],
        "bn2": bn(widths.conv2),
        "fc1": [he((pooled, widths.hidden), pooled), np.zeros(widths.hidden, "float32")],
        "fc2": [he((widths.hidden, CLASSES), widths.hidden), np.zeros(CLASSES, "float32")],
    }


def set_keras_weights(model, weights: dict) -> None:
    for name, values in weights.items():
        model.get_layer(name).set_weights(values)


def keras_weights(model) -> dict:
    return {name: [np.asarray(v) for v in model.get_layer(name).get_weights()]
            for name in ("conv1", "bn1", "conv2", "bn2", "fc1", "fc2")}


def _nhwc_rows_for_nchw(channels: int) -> np.ndarray:
    """For each NCHW-flattened feature (c, h, w), the row of the NHWC-flattened one (h, w, c)."""
    side = IMAGE // 4
    c, h, w = np.meshgrid(np.arange(channels), np.arange(side), np.arange(side), indexing="ij")
    return ((h * side + w) * channels + c).reshape(-1)


def to_torch(weights: dict, model) -> None:
    """Copy Keras-layout weights into the PyTorch model (kernels to OIHW, fc1's rows to NCHW flattening)."""
    import torch

    convs = {"conv1": (0, 1), "conv2": (4, 5)}
    with torch.no_grad():
        for name, (conv, bn) in convs.items():
            kernel, bias = weights[name]
            model[conv].weight.copy_(torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy()))
            model[conv].bias.copy_(torch.from_numpy(bias))
            gamma, beta, mean, variance = weights[f"bn{name[-1]}"]
            for target, value in zip((model[bn].weight, model[bn].bias, model[bn].running_mean,
                                      model[bn].running_var), (gamma, beta, mean, variance)):
                target.copy_(torch.from_numpy(value))
        kernel, bias = weights["fc1"]
        rows = _nhwc_rows_for_nchw(kernel.shape[0] // (IMAGE // 4) ** 2)
        model[9].weight.copy_(torch.from_numpy(kernel[rows].T.copy()))
        model[9].bias.copy_(torch.from_numpy(bias))
        kernel, bias = weights["fc2"]
        model[11].weight.copy_(torch.from_numpy(kernel.T.copy()))
        model[11].bias.copy_(torch.from_numpy(bias))


def from_torch(model) -> dict:
    """The PyTorch model's weights in the Keras layout (the inverse of :func:`to_torch`)."""
    def array(tensor):
        return tensor.detach().cpu().numpy().astype("float32")

    weights = {}
    for name, (conv, bn) in {"conv1": (0, 1), "conv2": (4, 5)}.items():
        weights[name] = [array(model[conv].weight).transpose(2, 3, 1, 0).copy(), array(model[conv].bias)]
        weights[f"bn{name[-1]}"] = [array(model[bn].weight), array(model[bn].bias), array(model[bn].running_mean),
                                    array(model[bn].running_var)]
    channels = model[4].out_channels
    rows = _nhwc_rows_for_nchw(channels)
    kernel = np.empty((len(rows), model[9].out_features), "float32")
    kernel[rows] = array(model[9].weight).T
    weights["fc1"] = [kernel, array(model[9].bias)]
    weights["fc2"] = [array(model[11].weight).T.copy(), array(model[11].bias)]
    return weights


# --- training, the same batches on both sides -----------------------------------------------------------

def batch_orders(count: int, epochs: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed + 1000)
    return [rng.permutation(count) for _ in range(epochs)]


def train_keras(model, x, y, orders, batch_size: int) -> None:
    import keras

    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    for order in orders:
        model.fit(x[order], y[order], batch_size=batch_size, epochs=1, shuffle=False, verbose=0)


def train_torch(model, x, y, orders, batch_size: int) -> None:
    import torch

    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
    loss_fn = torch.nn.CrossEntropyLoss()
    images = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
    labels = torch.from_numpy(y)
    model.train()
    for order in orders:
        for start in range(0, len(order), batch_size):
            index = torch.from_numpy(order[start:start + batch_size])
            optimizer.zero_grad()
            loss_fn(model(images[index]), labels[index]).backward()
            optimizer.step()
    model.eval()


def keras_accuracy(model, x, y) -> float:
    return float(np.mean(np.argmax(model.predict(x, verbose=0, batch_size=256), axis=-1) == y))


def torch_accuracy(model, x, y) -> float:
    import torch

    model.eval()
    with torch.no_grad():
        logits = model(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()))
    return float(np.mean(logits.argmax(-1).numpy() == y))


# --- pruning ---------------------------------------------------------------------------------------------

def prune_keraffe(model, budget: float):
    from keraffe.pruning.structured import model_macs, plan_channels

    plan = plan_channels(model, target_macs=budget, importance="l1")
    pruned = plan.apply().model
    assert model_macs(pruned) == plan.macs_after
    return pruned


def filter_l1_importance():
    """keraffe's "l1" for Torch-Pruning: per output channel, the L1 norm of its filter (kernel and bias) in every
    layer whose outputs the group prunes, each layer's norms divided by their mean, averaged over those layers."""
    import torch
    import torch_pruning as tp
    from torch_pruning.pruner import function

    class FilterL1(tp.importance.Importance):
        @torch.no_grad()
        def __call__(self, group):
            total, count = None, 0
            for index, (dependency, indices) in enumerate(group):
                layer = dependency.layer
                if dependency.pruning_fn not in (function.prune_conv_out_channels, function.prune_linear_out_channels):
                    continue
                norms = layer.weight.data[indices].flatten(1).abs().sum(1)
                if layer.bias is not None:
                    norms = norms + layer.bias.data[indices].abs()
                scores = torch.zeros(len(group[0].idxs))
                scores[torch.as_tensor(group[index].root_idxs)] = norms / norms.mean().clamp_min(1e-12)
                total = scores if total is None else total + scores
                count += 1
            return None if total is None else total / count

    return FilterL1()


def prune_torch_pruning(model, budget_macs: int):
    """Torch-Pruning with one uniform ratio, bisected to the most MACs within the budget."""
    import torch
    import torch_pruning as tp

    example = torch.randn(1, 1, IMAGE, IMAGE)

    def pruned_at(ratio):
        candidate = copy.deepcopy(model)
        pruner = tp.pruner.MetaPruner(candidate, example, importance=filter_l1_importance(), pruning_ratio=ratio,
                                      global_pruning=False, ignored_layers=[candidate[11]])
        pruner.step()
        return candidate

    low, high = 0.0, 0.9  # Torch-Pruning skips a layer whose ratio would leave no channel: stay well below 1
    best = pruned_at(high)
    if torch_widths(best).macs() > budget_macs:
        raise RuntimeError(f"Torch-Pruning cannot reach {budget_macs:,} MACs")
    for _ in range(20):
        middle = (low + high) / 2
        candidate = pruned_at(middle)
        if torch_widths(candidate).macs() <= budget_macs:
            high, best = middle, candidate
        else:
            low = middle
        if high - low < 1e-3:
            break
    return best


# --- latency, both shipped alike --------------------------------------------------------------------------

def keras_copy_of_torch(model):
    """The Torch-Pruning result as a Keras model with its channel counts and weights."""
    rebuilt = keras_model(torch_widths(model))
    set_keras_weights(rebuilt, from_torch(model))
    return rebuilt


def latencies(models: list, rounds: int = 5) -> list[float]:
    from keraffe.verify.latency import alternating_latency, export_for_timing

    with tempfile.TemporaryDirectory(prefix="keraffe-vs-tp-") as directory:
        exports = [export_for_timing(model, Path(directory), f"m{i}") for i, model in enumerate(models)]
        if any(isinstance(e, str) for e in exports):
            raise RuntimeError(f"export failed: {exports}")
        seconds = alternating_latency(exports, rounds=rounds, repeats=20, threads=1)
    return [statistics.median(s) * 1000.0 for s in seconds]


# --- one seed ---------------------------------------------------------------------------------------------

def run_seed(seed: int, budgets, epochs: int, fine_tune_epochs: int, batch_size: int) -> dict:
    import keras
    import torch

    keras.utils.set_random_seed(seed)
    torch.manual_seed(seed)
    x_train, y_train, x_test, y_test = digits()
    dense_widths = Widths()
    weights = initial_weights(dense_widths, seed)
    k_model, t_model = keras_model(dense_widths), torch_model(dense_widths)
    set_keras_weights(k_model, weights)
    to_torch(weights, t_model)
    orders = batch_orders(len(x_train), epochs + fine_tune_epochs, seed)
    start = time.perf_counter()
    train_keras(k_model, x_train, y_train, orders[:epochs], batch_size)
    train_torch(t_model, x_train, y_train, orders[:epochs], batch_size)
    row = {"seed": seed, "dense": {"keras_accuracy": keras_accuracy(k_model, x_test, y_test),
                                   "torch_accuracy": torch_accuracy(t_model, x_test, y_test),
                                   "macs": dense_widths.macs(), "params": int(k_model.count_params())},
           "budgets": {}}
    for budget in budgets:
        target = int(budget * dense_widths.macs())
        k_pruned = prune_keraffe(k_model, budget)
        t_pruned = prune_torch_pruning(t_model, target)
        k_widths = Widths(*(k_pruned.get_layer(n).get_weights()[0].shape[-1] for n in ("conv1", "conv2", "fc1")))
        t_widths = torch_widths(t_pruned)
        from keraffe.pruning.structured import model_macs

        assert model_macs(k_pruned) == k_widths.macs(), (model_macs(k_pruned), k_widths)
        t_keras = keras_copy_of_torch(t_pruned)
        check = np.random.default_rng(0).normal(size=(4, IMAGE, IMAGE, 1)).astype("float32")
        with torch.no_grad():
            reference = t_pruned(torch.from_numpy(check.transpose(0, 3, 1, 2).copy())).numpy()
        assert np.allclose(t_keras.predict(check, verbose=0), reference, rtol=1e-4, atol=1e-4), \
            "the Keras copy of the Torch-Pruning model computes something else"
        pruned_accuracy = {"keraffe": keras_accuracy(k_pruned, x_test, y_test),
                           "torch_pruning": torch_accuracy(t_pruned, x_test, y_test)}
        train_keras(k_pruned, x_train, y_train, orders[epochs:], batch_size)
        train_torch(t_pruned, x_train, y_train, orders[epochs:], batch_size)
        t_keras = keras_copy_of_torch(t_pruned)
        k_ms, t_ms = latencies([k_pruned, t_keras])
        row["budgets"][str(budget)] = {
            "target_macs": target,
            "keraffe": {"widths": dataclasses.asdict(k_widths), "macs": k_widths.macs(),
                        "params": int(k_pruned.count_params()), "accuracy_pruned": pruned_accuracy["keraffe"],
                        "accuracy": keras_accuracy(k_pruned, x_test, y_test), "latency_ms": k_ms},
            "torch_pruning": {"widths": dataclasses.asdict(t_widths), "macs": t_widths.macs(),
                              "params": int(sum(p.numel() for p in t_pruned.parameters())),
                              "accuracy_pruned": pruned_accuracy["torch_pruning"],
                              "accuracy": torch_accuracy(t_pruned, x_test, y_test), "latency_ms": t_ms},
        }
    row["seconds"] = time.perf_counter() - start
    return row


def summarise(rows: list[dict], budgets) -> dict:
    def stats(values):
        return {"mean": statistics.fmean(values), "std": statistics.pstdev(values) if len(values) > 1 else 0.0}

    summary = {"dense": {key: stats([r["dense"][key] for r in rows]) for key in ("keras_accuracy",
                                                                                   "torch_accuracy")}}
    summary["dense"]["macs"] = rows[0]["dense"]["macs"]
    summary["dense"]["params"] = rows[0]["dense"]["params"]
    for budget in budgets:
        entry = {}
        for tool in ("keraffe", "torch_pruning"):
            entry[tool] = {key: stats([r["budgets"][str(budget)][tool][key] for r in rows])
                           for key in ("accuracy", "accuracy_pruned", "macs", "params", "latency_ms")}
        summary[str(budget)] = entry
    return summary


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--budgets", type=float, nargs="+", default=[0.5, 0.25],
                        help="MAC budgets, as fractions of the dense model's MACs")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--fine-tune-epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--out", type=Path, default=Path("bench/results/vs_torch_pruning.json"))
    args = parser.parse_args(argv)
    import torch
    import torch_pruning

    torch.set_num_threads(1)
    rows = []
    for seed in range(args.seeds):
        rows.append(run_seed(seed, args.budgets, args.epochs, args.fine_tune_epochs, args.batch_size))
        line = ", ".join(f"{b}: keraffe {r['keraffe']['accuracy']:.2%} vs TP {r['torch_pruning']['accuracy']:.2%}"
                         for b, r in rows[-1]["budgets"].items())
        print(f"seed {seed}: dense {rows[-1]['dense']['keras_accuracy']:.2%} / "
              f"{rows[-1]['dense']['torch_accuracy']:.2%}; {line}", flush=True)
    summary = summarise(rows, args.budgets)
    result = {
        "recipe": f"digits 16x16 ({IMAGE}x{IMAGE}, 1437 train / 360 test), Conv(32)-BN-ReLU-Pool-Conv(64)-BN-ReLU-"
                  f"Pool-Dense(128)-Dense(10), same initial weights and batch order on both sides, Adam 1e-3, "
                  f"batch {args.batch_size}, {args.epochs} epochs, pruned to each MAC budget with L1 filter "
                  f"importance, then {args.fine_tune_epochs} fine-tuning epochs",
        "seeds": args.seeds, "budgets": args.budgets, "epochs": args.epochs,
        "fine_tune_epochs": args.fine_tune_epochs,
        "versions": {"torch_pruning": importlib.metadata.version("torch-pruning"), "torch": torch.__version__},
        "latency": "OpenCV DNN, Caffe exports of both pruned models, 1 thread, batch 1, alternated, median",
        "summary": summary, "runs": rows,
    }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    for budget in args.budgets:
        entry = summary[str(budget)]
        print(f"budget {budget:.0%} of MACs: keraffe {entry['keraffe']['accuracy']['mean']:.2%} "
              f"(+-{entry['keraffe']['accuracy']['std']:.2%}) vs Torch-Pruning "
              f"{entry['torch_pruning']['accuracy']['mean']:.2%} (+-{entry['torch_pruning']['accuracy']['std']:.2%})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
