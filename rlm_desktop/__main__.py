"""`python -m rlm_desktop` is the same as the `rlm-desktop` command."""

import sys

from rlm_desktop.cli import main

sys.exit(main())
