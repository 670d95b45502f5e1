"""Trains the zoo's glyphs models and writes their ONNX and ``zoo_glyphs.json``.

Usage::

    python -m hwcc.models.train_glyphs [--only NAME] [--out-dir DIR]

Training is deterministic, as for the digits models (``train_digits.deterministic``: one
thread, deterministic kernels, ``torch.manual_seed`` before building): Adam with a cosine
learning-rate decay on the train split (16 fonts), per-epoch shuffles and random shifts of
up to two pixels from ``numpy.random.default_rng(seed + epoch)``. Each model is exported
with its BatchNormalization nodes kept (``[1, 1, 32, 32]`` -> ``logits``), checked with
``onnx.checker`` and scored with onnxruntime on the test split (5 unseen fonts).

Each model's latency is then measured as the CPU target times whole models
(``hwcc.targets.cpu.measure.measure_models``: one thread, median thread CPU time,
round-robin visits) together with its overhead probe
(:func:`hwcc.models.arch_glyphs.overhead_probe`: the same kernels at 1 channel and 1x1),
and ``probe / full`` is recorded as the overhead share (an upper bound: the probe runs
the same Conv kernels plus layout reorders). On one core mobilenet-glyphs trains in about
4.5 minutes, resnet-glyphs in about 2.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from hwcc.models import arch_glyphs, glyphs, onnx_export
from hwcc.models.registry import get_spec
from hwcc.models.train_digits import TrainSettings, deterministic, record

MODELS = ("mobilenet-glyphs", "resnet-glyphs")
RECORD_FILE = "zoo_glyphs.json"


def default_settings(name: str) -> TrainSettings:
    """Returns the settings the shipped model ``name`` was trained with."""
    overrides = {
        "mobilenet-glyphs": {"epochs": 20, "lr": 3e-3},
        "resnet-glyphs": {"epochs": 20, "lr": 2e-3},
    }
    return TrainSettings(batch_size=64, shift=2, weight_decay=1e-5, **overrides[name])


def _shift(x: np.ndarray, rng: np.random.Generator, max_shift: int) -> np.ndarray:
    """Translates each image by up to ``max_shift`` pixels, filling with edge values."""
    if max_shift == 0:
        return x
    n, _, h, w = x.shape
    m = max_shift
    padded = np.pad(x, ((0, 0), (0, 0), (m, m), (m, m)), mode="edge")
    dy, dx = rng.integers(0, 2 * m + 1, size=(2, n))
    return np.stack([padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(n)])


def train(name: str, settings: TrainSettings | None = None, limit: int | None = None) -> nn.Module:
    """Trains one glyphs model from scratch on the train split.

    Args:
        name: ``"mobilenet-glyphs"`` or ``"resnet-glyphs"``.
        settings: hyper-parameters; ``default_settings(name)`` if None.
        limit: train on only the first ``limit`` samples of each shuffled epoch (tests).

    Returns:
        The trained module in eval mode. The same name and settings give bit-identical
        weights.
    """
    spec = get_spec(name)
    settings = settings or default_settings(name)
    x_train, y_train = glyphs.load_split("train")
    n = len(y_train) if limit is None else min(limit, len(y_train))
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
            order = rng.permutation(len(y_train))[:n]
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
    """Top-1 accuracy of ``model`` on a glyphs split, computed in torch."""
    x, y = glyphs.load_split(split)
    with torch.no_grad():
        predicted = torch.cat([model(torch.from_numpy(b)) for b in np.split(x, 10)])
    return float(np.mean(predicted.argmax(dim=1).numpy() == y))


def export_trained(model: nn.Module, name: str, path: Path) -> Path:
    """Exports a trained glyphs model with its BN nodes kept, and checks the file."""
    x, _ = glyphs.load_split("test")
    spec = get_spec(name)
    onnx_export.export_onnx(model, (torch.from_numpy(x[:1]),), spec, path, keep_batchnorm=True)
    return path


def _kernels(model: bytes) -> int:
    """Nodes onnxruntime runs for ``model`` after its optimisations (one thread)."""
    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as folder:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.log_severity_level = 3
        options.optimized_model_filepath = str(Path(folder) / "optimized.onnx")
        ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        return len(onnx.load(options.optimized_model_filepath).graph.node)


def measure_overhead(name: str, path: Path) -> dict:
    """Times the shipped model against its overhead probe, as the CPU target times models.

    Args:
        name: zoo name.
        path: the model's ``.onnx``.

    Returns:
        ``latency_s`` and ``probe_latency_s`` (medians, one thread), ``overhead_share``
        (their ratio) and the kernel counts onnxruntime runs for each.
    """
    # The CPU target's timing protocol, so that the numbers match what `cpu` measures.
    from hwcc.targets.cpu.measure import measure_models

    with deterministic(0):
        probe = arch_glyphs.overhead_probe(name)
    with tempfile.TemporaryDirectory() as folder:
        probe_path = Path(folder) / "probe.onnx"
        example = (torch.zeros(arch_glyphs.PROBE_INPUT),)
        onnx_export.export_onnx(probe, example, get_spec(name), probe_path, keep_batchnorm=True)
        models = [path.read_bytes(), probe_path.read_bytes()]
    full, overhead = measure_models(models, threads=1, rounds=9)
    return {
        "latency_s": full,
        "probe_latency_s": overhead,
        "overhead_share": overhead / full,
        "kernels": _kernels(models[0]),
        "probe_kernels": _kernels(models[1]),
        "threads": 1,
    }


def train_and_export(name: str, out_dir: Path) -> dict:
    """Trains, exports, scores and times one model; returns its record."""
    settings = default_settings(name)
    start = time.perf_counter()
    model = train(name, settings)
    seconds = time.perf_counter() - start
    path = export_trained(model, name, out_dir / get_spec(name).onnx_file)
    _, y_test = glyphs.load_split("test")
    accuracy = glyphs.onnx_accuracy(path, "test")
    return {
        **record(model, settings, seconds, path, accuracy, len(y_test), torch_accuracy),
        "overhead": measure_overhead(name, path),
    }


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point; see the module docstring."""
    import onnxruntime

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=MODELS, help="train just this model")
    parser.add_argument(
        "--remeasure",
        action="store_true",
        help="only re-time the shipped models (overhead share), without training",
    )
    parser.add_argument(
        "--out-dir", type=Path, default=glyphs.DATA_DIR, help=f"where .onnx and {RECORD_FILE} go"
    )
    args = parser.parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)

    record_path = args.out_dir / RECORD_FILE
    record = json.loads(record_path.read_text()) if record_path.exists() else {}
    models = record.get("models", {})
    for name in [args.only] if args.only else MODELS:
        if args.remeasure:
            path = args.out_dir / get_spec(name).onnx_file
            models[name]["overhead"] = measure_overhead(name, path)
        else:
            models[name] = train_and_export(name, args.out_dir)
        entry = models[name]
        print(
            f"{name}: test accuracy {entry['test_accuracy']:.4f} ({entry['train_seconds']} s), "
            f"latency {1e3 * entry['overhead']['latency_s']:.3f} ms, "
            f"overhead share {entry['overhead']['overhead_share']:.3f}"
        )
    x_train, _ = glyphs.load_split("train")
    x_test, _ = glyphs.load_split("test")
    record = {
        "data": {
            "file": glyphs.GLYPHS_FILE.name,
            "classes": glyphs.LETTERS,
            "train_fonts": list(glyphs.TRAIN_FONTS),
            "test_fonts": list(glyphs.TEST_FONTS),
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
