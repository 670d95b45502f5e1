"""This machine's CPU, measured: the target, its kernel plan, its lookup table and timer."""

from hwcc.targets.cpu.target import CpuTarget

__all__ = ["CpuTarget"]
