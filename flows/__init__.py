"""Prefect flows (the orchestration layer). Importing the package sets Prefect's environment defaults.

* analytics off (no network calls home);
* the ephemeral API server gets 120 s to start instead of Prefect's 20 s: on a loaded 2-core machine
  (a test suite or a training run beside it) the default times out and the flow never starts.

Users' own settings win (``setdefault``).
"""

import os

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
