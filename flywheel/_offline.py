"""The offline switches, set in one place before Prefect, MLflow or Hugging Face load.

The faces that start a process apply them first (``flywheel.app`` for the CLI, the service and
the demo; ``flywheel.flows`` for a flow run; the tests' and benchmarks' own setup), so these
defaults are in the environment before any of those libraries reads its settings; importing the
core alone sets nothing. A value the user exported already wins.
"""

from __future__ import annotations

import os

OFFLINE_DEFAULTS: dict[str, str] = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    # 2-core CI machines start the ephemeral API slowly; 20 s (the default) is too tight.
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "DO_NOT_TRACK": "1",
}


def apply_offline_defaults() -> None:
    """Set every offline switch that the user has not set already."""
    for key, value in OFFLINE_DEFAULTS.items():
        os.environ.setdefault(key, value)
