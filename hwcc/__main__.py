import sys

from hwcc.cli import main

sys.exit(main())
