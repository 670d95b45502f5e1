"""Where a model comes from: a path or a ``zoo:NAME`` reference, its file and its external data.

Only regular files are read: a named pipe or a device would block or never end.
External data is read only from inside the model's own folder: a location that is
absolute, or leads out of the folder (``..``, a symbolic link), is refused.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import onnx
from onnx import TensorProto

from hwcc.errors import ModelLoadError
from hwcc.ir.onnx_io.audit import REEXPORT, check_tensor_size, foreign
from hwcc.ir.onnx_io.protos import short

ZOO_PREFIX = "zoo:"
_MAX_MODEL_BYTES = 2**31 - 1  # protobuf cannot parse a larger message
_OTHER_FORMAT = "the file may be truncated or of another format; re-export it from your framework"


def zoo_name(ref: str | os.PathLike) -> str | None:
    """The bundled model or data set that ``ref`` names, or None when ``ref`` is a path.

    ``zoo:NAME`` names the bundled ``NAME`` (``hwcc zoo list``); this function is the one
    reader of that prefix, for models (:func:`resolve_model_path`) and data sets alike.
    """
    s = os.fspath(ref)
    return s[len(ZOO_PREFIX) :] if s.startswith(ZOO_PREFIX) else None


def resolve_model_path(src: str | os.PathLike) -> Path:
    """A model path, with ``zoo:NAME`` resolved to the bundled model's file."""
    name = zoo_name(src)
    if name is not None:
        from hwcc.models import model_path  # the zoo imports torch: only when one is named

        return Path(model_path(name))
    return Path(os.fspath(src))


def read_model(path: Path) -> onnx.ModelProto:
    """The model in the file at ``path``, without its external data.

    Raises:
        ModelLoadError: the file is missing, not a regular file, over protobuf's limit,
            or not an ONNX model.
    """
    size = _model_file_size(path)
    if size > _MAX_MODEL_BYTES:
        raise ModelLoadError(
            f"{path} is {size} bytes, more than protobuf's 2 GB limit for an ONNX file",
            "keep the weights of a model this large in external data (a .data file beside it)",
        )
    data = _read_regular_file(path)
    with foreign(f"{path} is not a readable ONNX model", _OTHER_FORMAT):
        model = onnx.load_model_from_string(data)
    if not model.opset_import or model.ir_version <= 0 or not model.HasField("graph"):
        raise ModelLoadError(
            f"{path} is not an ONNX model (no graph, IR version or opset imports)", _OTHER_FORMAT
        )
    return model


def _model_file_size(path: Path) -> int:
    """The size of the model file, refusing what is not a regular file before it is opened:
    reading a named pipe blocks until a writer comes, a device may never end."""
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        raise ModelLoadError(
            f"model file not found: {path}", "check the path, or use zoo:NAME (see 'hwcc zoo list')"
        ) from None
    except (OSError, ValueError) as e:  # ValueError: a NUL byte in the path
        raise ModelLoadError(
            f"cannot read the model file {short(str(path))}: {e}", "check the path"
        ) from None
    if stat.S_ISDIR(st.st_mode):
        raise ModelLoadError(
            f"{path} is a folder, not an ONNX file", "give the path of the .onnx file"
        )
    if not stat.S_ISREG(st.st_mode):
        raise ModelLoadError(
            f"{path} is not a regular file ({_file_kind(st.st_mode)})",
            "give the path of an .onnx file; copy a model from a pipe to a file first",
        )
    return st.st_size


def _file_kind(mode: int) -> str:
    kinds = {
        stat.S_ISFIFO: "a named pipe",
        stat.S_ISCHR: "a character device",
        stat.S_ISBLK: "a block device",
        stat.S_ISSOCK: "a socket",
    }
    return next((name for test, name in kinds.items() if test(mode)), "not a plain file")


def _read_regular_file(path: Path) -> bytes:
    """The bytes of ``path``, opened without blocking and checked again once open, in case
    the file was replaced by a pipe after :func:`_model_file_size` looked at it."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as e:
        raise ModelLoadError(
            f"cannot open the model file {path}: {e.strerror}", "check its permissions"
        ) from None
    with os.fdopen(fd, "rb") as f:
        mode = os.fstat(f.fileno()).st_mode
        if not stat.S_ISREG(mode):
            raise ModelLoadError(
                f"{path} is not a regular file ({_file_kind(mode)})",
                "give the path of an .onnx file",
            )
        try:
            return f.read()
        except OSError as e:
            raise ModelLoadError(f"cannot read the model file {path}: {e.strerror}") from None


def load_external_data(tensors: list[tuple[str, TensorProto]], path: Path) -> None:
    """Read the data of ``tensors`` (from :func:`hwcc.ir.onnx_io.audit.audit`) into them,
    from files in the folder of the model at ``path``."""
    base = Path(os.path.realpath(path.parent))
    for _, t in tensors:
        _check_external_location(t, base, path)
    for where, t in tensors:
        with foreign(
            f"cannot read external data of tensor {t.name!r} of {path}",
            "the .data file may be truncated or belong to another version of the model",
        ):
            onnx.external_data_helper.load_external_data_for_tensor(t, str(base))
        check_tensor_size(t, where, str(path))


# The keys ONNX's external-data entries may hold (onnx.external_data_helper.ExternalDataInfo).
EXTERNAL_DATA_KEYS = ("location", "offset", "length", "checksum", "basepath")


def _check_external_location(t: TensorProto, base: Path, path: Path) -> None:
    """Refuse an entry with a key ONNX does not know (onnx would ignore it with a warning:
    a damaged ``offset`` would read the data from the file's start), and a data location
    that leaves the model's folder or names no regular file."""
    unknown = [e.key for e in t.external_data if e.key not in EXTERNAL_DATA_KEYS]
    if unknown:
        raise ModelLoadError(
            f"tensor {t.name!r} of {path} has external-data key(s) ONNX does not know: "
            f"{', '.join(repr(short(k)) for k in unknown)}",
            REEXPORT,
        )
    loc = {e.key: e.value for e in t.external_data}.get("location", "")
    if "\0" in loc:
        raise ModelLoadError(
            f"tensor {t.name!r} of {path} keeps its data at {short(loc)!r}, a name with a NUL byte",
            REEXPORT,
        )
    try:
        target = Path(os.path.realpath(base / loc))
        inside = not os.path.isabs(loc) and os.path.commonpath([base, target]) == str(base)
        is_file = inside and target.is_file()
    except OSError as e:
        raise ModelLoadError(
            f"external data {short(loc)!r} of tensor {t.name!r} in {path} "
            f"cannot be opened: {e.strerror}",
            REEXPORT,
        ) from None
    if not inside:
        raise ModelLoadError(
            f"tensor {t.name!r} of {path} keeps its data at {short(loc)!r}, outside the model's "
            f"folder {base}",
            "external data must sit in the model's own folder; move the data file there",
        )
    if not is_file:
        raise ModelLoadError(
            f"external data file {short(loc)!r} for tensor {t.name!r} is missing from {base}",
            "copy the .data file that came with the model next to it",
        )
