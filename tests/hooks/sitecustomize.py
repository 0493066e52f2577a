"""Loaded at start-up by the `flywheel` processes the resume test starts (their PYTHONPATH begins
with this folder): FLYWHEEL_CRASH_AFTER=<checkpoint> kills the process there, as a crash would.
The product itself has no fault injection; it only names its checkpoints (loop/checkpoints.py)."""

import os

if os.environ.get("FLYWHEEL_CRASH_AFTER"):
    from loop.checkpoints import on_checkpoint

    def _crash(step: str) -> None:
        if step == os.environ["FLYWHEEL_CRASH_AFTER"]:
            os._exit(137)

    on_checkpoint(_crash)
