"""The host an accelerator system would have: an embedded core priced from 45 nm energies."""

from hwcc.targets.host.target import EmbeddedHost

__all__ = ["EmbeddedHost"]
