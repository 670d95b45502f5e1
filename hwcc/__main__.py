"""``python -m hwcc``: the ``hwcc`` command."""

import sys

from hwcc.cli.commands import main

sys.exit(main())
