"""EIE (Han et al., ISCA 2016): the cost model, work plan, cycle simulator and payload."""

from hwcc.targets.eie.target import EIE

__all__ = ["EIE"]
