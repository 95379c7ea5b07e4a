"""`python3 -m gateway.site.config FILE`: check a config before the CLI exists."""
import sys

from .load import _main

sys.exit(_main())
