"""What reading and writing ONNX protos share: copies, raw attributes, text for messages."""

from __future__ import annotations

from onnx import AttributeProto


class RawAttribute:
    """An attribute the IR carries without interpreting (a subgraph, a type, a
    reference to a function attribute, a tensor of an exotic element type)."""

    def __init__(self, proto: AttributeProto):
        self.proto = proto

    def __deepcopy__(self, memo: dict) -> RawAttribute:
        p = AttributeProto()
        p.CopyFrom(self.proto)
        return RawAttribute(p)

    def __repr__(self) -> str:
        return f"RawAttribute({AttributeProto.AttributeType.Name(self.proto.type)})"


def clone(p):
    """A copy of the proto message ``p``."""
    c = type(p)()
    c.CopyFrom(p)
    return c


def short(text: str | bytes, limit: int = 80) -> str | bytes:
    """``text`` cut to ``limit`` characters, so that a hostile name keeps a message readable."""
    if len(text) <= limit:
        return text
    return text[:limit] + (b"..." if isinstance(text, bytes) else "...")


def text(value: str | bytes) -> str:
    """A doc string as text: a malformed one (``bytes``) with its bad bytes replaced."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
