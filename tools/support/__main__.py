"""python -m tools.support: re-measure docs/SUPPORT.md."""
import sys

from . import main

sys.exit(main())
