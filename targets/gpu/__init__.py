"""GPUs: a roofline model, or a kernel table profiled on the device."""

from hwcc.targets.gpu.target import GpuTarget

__all__ = ["GpuTarget"]
