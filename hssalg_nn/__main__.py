"""``python -m hssalg_nn``: the ``neural-hss`` command."""

import sys

from .cli import main

sys.exit(main())
