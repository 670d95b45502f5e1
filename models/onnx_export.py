"""Exporting zoo models to ONNX, and the on-disk cache of exported architectures.

Every export uses torch's TorchScript exporter (``dynamo=False``) at opset 17, batch 1 and
fixed shapes (no dynamic axes), with the inputs and outputs named as the model's spec says.

* Architectures are exported with ``do_constant_folding=True`` in eval mode: BatchNorm is
  folded into the preceding convolution and no weight is left dangling.
* Trained models keep their BatchNormalization nodes (``do_constant_folding=False``,
  ``TrainingMode.EVAL``), so BN folding has real test cases; their initializers keep the
  ``state_dict`` names, which is how :func:`hwcc.models.zoo.build_torch` reloads them.

Cached files live in ``$XDG_CACHE_HOME/hwcc/zoo/`` (``~/.cache/hwcc/zoo/`` by default) as
``<name>-<hash>.onnx``. The hash covers the source of the modules that define the model,
the source of this module (the export settings), the torch version and the opset, so a
changed definition re-exports (and the superseded file is deleted). Files are written
under a temporary name in the same folder and renamed into place, so a crash or a
concurrent export never leaves a half-written model.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import io
import logging
import os
import re
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from hwcc.models.registry import ModelSpec

OPSET = 17
_LOG = logging.getLogger(__name__)


def cache_dir() -> Path:
    """Returns the export cache folder (not created): ``$XDG_CACHE_HOME/hwcc/zoo``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(base) / "hwcc" / "zoo"


def _definition_modules(spec: ModelSpec) -> list[str]:
    """Names the modules whose source defines ``spec``: the builder's own module and the
    ``hwcc.models`` modules its globals come from (shared blocks such as ``conv_bn``)."""
    home = sys.modules[spec.builder.__module__]
    names = {home.__name__}
    for value in vars(home).values():
        origin = getattr(value, "__module__", None)
        if origin and origin.startswith("hwcc.models.") and origin != "hwcc.models.registry":
            names.add(origin)
    return sorted(names)


def definition_hash(spec: ModelSpec) -> str:
    """Short hash of everything that determines an architecture's exported ONNX.

    Args:
        spec: the model.

    Returns:
        12 hex digits of a SHA-256 over the defining source, this module, the seed,
        the input shapes, the torch version and the opset.
    """
    digest = hashlib.sha256()
    for name in _definition_modules(spec):
        digest.update(inspect.getsource(sys.modules[name]).encode())
    digest.update(inspect.getsource(sys.modules[__name__]).encode())  # export settings
    digest.update(repr((spec.name, spec.seed, dict(spec.input_shapes))).encode())
    digest.update(f"torch={torch.__version__};opset={OPSET}".encode())
    return digest.hexdigest()[:12]


def cached_path(spec: ModelSpec) -> Path:
    """Returns where the cached export of ``spec`` lives (it may not exist yet)."""
    return cache_dir() / f"{spec.name}-{definition_hash(spec)}.onnx"


@contextlib.contextmanager
def atomic_target(path: Path) -> Iterator[Path]:
    """Yields a temporary path beside ``path``; renames it onto ``path`` on success.

    Args:
        path: the final file.

    Yields:
        The temporary file to write. It is removed if the block raises.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        # mkstemp creates the file 0600; give the result the usual umask-derived mode.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _drop_initializer_inputs(graph) -> None:
    """Removes graph inputs that are initializers, leaving only the real inputs."""
    weights = {t.name for t in graph.initializer}
    real = [i for i in graph.input if i.name not in weights]
    del graph.input[:]
    graph.input.extend(real)


def export_onnx(
    module: nn.Module,
    inputs: tuple[torch.Tensor, ...],
    spec: ModelSpec,
    path: Path,
    *,
    keep_batchnorm: bool = False,
) -> Path:
    """Exports ``module`` to ``path`` atomically, batch 1, fixed shapes, opset 17.

    Every parameter becomes its own initializer, named as in the ``state_dict`` where no
    folding changed it. (Left to itself, the exporter merges initializers that happen to
    hold equal values, such as the all-zero biases of a freshly initialised network or
    the two BN biases of a projection block, whose gradients are equal, and reads the
    copies through ``Identity`` nodes. Exporting weights as graph inputs skips that
    merge; they are then removed from the inputs again.)

    Args:
        module: the network; it is put in eval mode.
        inputs: example inputs with the spec's shapes.
        spec: supplies the input and output names.
        path: destination file.
        keep_batchnorm: keep BatchNormalization nodes (no constant folding) instead of
            folding them into the convolutions.

    Returns:
        ``path``.
    """
    import onnx

    module.eval()
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        # The TorchScript exporter warns that it is legacy; it is the one that keeps
        # nn.LSTM as a single ONNX LSTM op and BN as BatchNormalization.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            inputs,
            buffer,
            dynamo=False,
            opset_version=OPSET,
            input_names=list(spec.input_shapes),
            output_names=list(spec.output_names),
            training=torch.onnx.TrainingMode.EVAL,
            do_constant_folding=not keep_batchnorm,
            keep_initializers_as_inputs=True,
        )
    proto = onnx.load_from_string(buffer.getvalue())
    del buffer
    _drop_initializer_inputs(proto.graph)
    onnx.checker.check_model(proto, full_check=True)
    with atomic_target(path) as tmp:
        onnx.save(proto, str(tmp))
    return path


def cached_export(spec: ModelSpec, build, example_inputs) -> Path:
    """Returns the cached ONNX of an architecture, exporting it on first use.

    Args:
        spec: the architecture.
        build: ``spec -> nn.Module`` (seeded, eval mode).
        example_inputs: ``spec -> tuple of tensors``.

    Returns:
        Path of the cached ``.onnx``.
    """
    path = cached_path(spec)
    if not path.exists():
        start = time.perf_counter()
        export_onnx(build(spec), example_inputs(spec), spec, path)
        elapsed = time.perf_counter() - start
        _LOG.info("exported zoo model %s to %s in %.1f s", spec.name, path, elapsed)
        _remove_stale(path, spec.name)
    return path


def _remove_stale(current: Path, name: str) -> None:
    """Deletes cached exports of ``name`` under other hashes (older definitions)."""
    pattern = re.compile(rf"{re.escape(name)}-[0-9a-f]{{12}}\.onnx")
    for old in current.parent.iterdir():
        if old != current and pattern.fullmatch(old.name):
            old.unlink(missing_ok=True)


def copy_atomic(src: Path, dst: str | os.PathLike) -> Path:
    """Copies ``src`` to ``dst`` through a temporary file and a rename.

    Args:
        src: existing file.
        dst: destination file; its folder is created.

    Returns:
        The destination path.
    """
    dst = Path(dst)
    with atomic_target(dst) as tmp:
        shutil.copyfile(src, tmp)
    return dst
