"""The ``hwcc`` command: flags mapped to the API, and what a terminal shows."""

from hwcc.cli.commands import main

__all__ = ["main"]
