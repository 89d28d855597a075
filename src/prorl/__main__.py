"""``python -m prorl``: the ``prorl`` command, in the form launchers take (``torchrun -m prorl train ...``)."""

import sys

from prorl.cli import main

sys.exit(main())
