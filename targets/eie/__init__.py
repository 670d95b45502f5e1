"""EIE (Han et al., ISCA 2016): the cost model, its work plan, the cycle simulator and the payload."""

from hwcc.targets.eie.target import EIE

__all__ = ["EIE"]
