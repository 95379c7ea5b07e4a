"""`python -m gateway ...` is the `edgegw` command (tests and benchmarks use it)."""
import sys

from gateway.field.cli import main

sys.exit(main())
