"""``python -m wakeword.cli``."""
import sys

from wakeword.cli import main

sys.exit(main())
