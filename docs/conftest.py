"""docs/configuration.py is a script beside the document it writes, not a package."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
