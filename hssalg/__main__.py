"""``python -m hssalg`` runs the ``hssalg`` command."""

import sys

from .cli import main

sys.exit(main())
