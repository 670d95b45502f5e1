"""TPU v1 (Jouppi et al., ISCA 2017): the cost model and the int8 payload."""

from hwcc.targets.tpu.target import TPU

__all__ = ["TPU"]
