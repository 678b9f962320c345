"""The checks of deployment files, beside what they check: no stack, no network; the fast tier.
The launcher and the dashboard builder are scripts, not packages: their folders go on the path."""

import sys
from pathlib import Path

DEPLOY = Path(__file__).parent
sys.path.insert(0, str(DEPLOY / "local"))
sys.path.insert(0, str(DEPLOY / "grafana"))
