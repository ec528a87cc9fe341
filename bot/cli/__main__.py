"""`python -m bot.cli`: the `threadline` command."""

import sys

from bot.cli import main

sys.exit(main())
