"""Trains the zoo's digits models and writes their ONNX and ``zoo_digits.json``.

Usage::

    python -m hwcc.models.train_digits [--only NAME] [--out-dir DIR]

Training is deterministic: one thread, ``torch.use_deterministic_algorithms(True)``,
``torch.manual_seed`` before building the network, and per-epoch shuffles and augmentation
from ``numpy.random.default_rng(seed + epoch)``. Adam with a cosine learning-rate decay on
the train split, light augmentation (random shifts of up to one pixel). Each model is
exported with its BatchNormalization nodes kept (batch 1, ``[1, 1, 8, 8]`` -> ``logits``),
checked with ``onnx.checker`` (full check), and scored with onnxruntime on the test split.
All four train in under two minutes on one core.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import math
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from hwcc.models import digits, onnx_export
from hwcc.models.registry import all_specs, get_spec


@dataclasses.dataclass(frozen=True)
class TrainSettings:
    """Hyper-parameters of one training run.

    Attributes:
        epochs: passes over the train split.
        batch_size: samples per step.
        lr: peak Adam learning rate (cosine-decayed to 0 over the run).
        weight_decay: Adam L2 penalty.
        shift: maximum random translation in pixels (0 disables augmentation).
        seed: seeds weight init, shuffling and augmentation.
    """

    epochs: int = 30
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.0
    shift: int = 1
    seed: int = 0


def default_settings(name: str) -> TrainSettings:
    """Returns the settings the shipped model ``name`` was trained with."""
    overrides = {
        "lenet300-digits": {"epochs": 60, "lr": 5e-3},
        "lenet5-digits": {"epochs": 30, "lr": 2e-3},
        "mobilenet-digits": {"epochs": 20, "lr": 3e-3},
        "resnet-digits": {"epochs": 20, "lr": 2e-3},
    }
    return TrainSettings(**overrides.get(name, {}))


@contextlib.contextmanager
def deterministic(seed: int) -> Iterator[None]:
    """Runs a block single-threaded with deterministic kernels and a seeded torch RNG.

    The previous thread count, determinism flag and RNG state are restored afterwards.
    """
    threads = torch.get_num_threads()
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            yield
    finally:
        torch.use_deterministic_algorithms(was_deterministic)
        torch.set_num_threads(threads)


def _shift(x: np.ndarray, rng: np.random.Generator, max_shift: int) -> np.ndarray:
    """Translates each image by up to ``max_shift`` pixels, filling with zeros."""
    if max_shift == 0:
        return x
    n, _, h, w = x.shape
    padded = np.pad(x, ((0, 0), (0, 0), (max_shift, max_shift), (max_shift, max_shift)))
    dy, dx = rng.integers(0, 2 * max_shift + 1, size=(2, n))
    return np.stack([padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(n)])


def train(name: str, settings: TrainSettings | None = None) -> nn.Module:
    """Trains one digits model from scratch on the train split.

    Args:
        name: a trained zoo model, e.g. ``"lenet5-digits"``.
        settings: hyper-parameters; ``default_settings(name)`` if None.

    Returns:
        The trained module in eval mode. The same name and settings give bit-identical
        weights.
    """
    spec = get_spec(name)
    settings = settings or default_settings(name)
    x_train, y_train = digits.load_split("train")
    n = len(y_train)
    steps = settings.epochs * math.ceil(n / settings.batch_size)
    with deterministic(settings.seed):
        model = spec.builder()
        optimizer = torch.optim.Adam(
            model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay
        )
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * step / steps))
        )
        loss_fn = nn.CrossEntropyLoss()
        model.train()
        for epoch in range(settings.epochs):
            rng = np.random.default_rng(settings.seed + epoch)
            order = rng.permutation(n)
            x_epoch = torch.from_numpy(_shift(x_train[order], rng, settings.shift))
            y_epoch = torch.from_numpy(y_train[order])
            for start in range(0, n, settings.batch_size):
                batch = slice(start, start + settings.batch_size)
                optimizer.zero_grad()
                loss = loss_fn(model(x_epoch[batch]), y_epoch[batch])
                loss.backward()
                optimizer.step()
                schedule.step()
    return model.eval()


def torch_accuracy(model: nn.Module, split: str) -> float:
    """Top-1 accuracy of ``model`` on a digits split, computed in torch."""
    x, y = digits.load_split(split)
    with torch.no_grad():
        predicted = model(torch.from_numpy(x)).argmax(dim=1).numpy()
    return float(np.mean(predicted == y))


def export_trained(model: nn.Module, name: str, path: Path) -> Path:
    """Exports a trained digits model, keeping its BN nodes, and checks the file.

    Args:
        model: the trained network.
        name: its zoo name.
        path: destination ``.onnx``.

    Returns:
        ``path``.
    """
    import onnx

    spec = get_spec(name)
    x, _ = digits.load_split("test")
    onnx_export.export_onnx(model, (torch.from_numpy(x[:1]),), spec, path, keep_batchnorm=True)
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    return path


def train_and_export(name: str, out_dir: Path) -> dict:
    """Trains, exports and scores one model.

    Args:
        name: zoo name of a trained model.
        out_dir: folder for ``<name>.onnx``.

    Returns:
        The model's record for ``zoo_digits.json``.
    """
    settings = default_settings(name)
    start = time.perf_counter()
    model = train(name, settings)
    seconds = time.perf_counter() - start
    path = export_trained(model, name, out_dir / get_spec(name).onnx_file)
    _, y_test = digits.load_split("test")
    accuracy = digits.onnx_accuracy(path, "test")
    return record(model, settings, seconds, path, accuracy, len(y_test), torch_accuracy)


def record(
    model: nn.Module,
    settings: TrainSettings,
    seconds: float,
    path: Path,
    accuracy: float,
    test_samples: int,
    train_accuracy,
) -> dict:
    """A trained model's record for its zoo JSON: settings, size, accuracies, the ONNX's
    bytes and hash (``train_accuracy(model, "train")`` scores the train split in torch)."""
    return {
        "settings": {"optimizer": "adam", "schedule": "cosine", **dataclasses.asdict(settings)},
        "params": sum(p.numel() for p in model.parameters()),
        "train_accuracy_torch": train_accuracy(model, "train"),
        "test_accuracy": accuracy,
        "test_correct": round(accuracy * test_samples),
        "test_samples": test_samples,
        "train_seconds": round(seconds, 1),
        "onnx_bytes": path.stat().st_size,
        "onnx_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
    }


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point; see the module docstring."""
    import onnxruntime

    trained = [s.name for s in all_specs() if s.kind == "trained" and s.name.endswith("-digits")]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=trained, help="train just this model")
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=digits.DATA_DIR,
        help="where the .onnx files and zoo_digits.json go",
    )
    args = parser.parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)

    record_path = args.out_dir / "zoo_digits.json"
    record = json.loads(record_path.read_text()) if record_path.exists() else {}
    models = record.get("models", {})
    for name in [args.only] if args.only else trained:
        models[name] = train_and_export(name, args.out_dir)
        print(
            f"{name}: test accuracy {models[name]['test_accuracy']:.4f} "
            f"({models[name]['train_seconds']} s)"
        )
    x_train, _ = digits.load_split("train")
    x_test, _ = digits.load_split("test")
    record = {
        "data": {
            "file": "digits.npz",
            "split_seed": digits.SPLIT_SEED,
            "test_fraction": digits.TEST_FRACTION,
            "train_samples": len(x_train),
            "test_samples": len(x_test),
        },
        "versions": {
            "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__,
            "opset": onnx_export.OPSET,
        },
        "models": dict(sorted(models.items())),
    }
    with onnx_export.atomic_target(record_path) as tmp:
        tmp.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
