"""``python -m remove_background.cli``: the same as the ``remove-background`` command."""

import sys

from .commands import main

sys.exit(main())
