"""Loaded at start-up by the processes the resume and approval tests start (their PYTHONPATH begins
with this folder): FLYWHEEL_CRASH_AFTER=<checkpoint> kills the process there, as a crash would.
The product itself has no fault injection; it only names its checkpoints (loop/checkpoints.py)."""

import os

if os.environ.get("FLYWHEEL_CRASH_AFTER"):
    from flywheel.loop.checkpoints import on_checkpoint

    def _crash(step: str) -> None:
        if step == os.environ["FLYWHEEL_CRASH_AFTER"]:
            os._exit(137)

    on_checkpoint(_crash)

if os.environ.get("FLYWHEEL_TEST_LEASE_RENEWAL_SECONDS"):
    # Prefect renews a run's concurrency lease every 300 s x 0.75 (hard-coded in its flow engine); the
    # approval test renews every few seconds instead, so a renewal falls inside the test's wait.
    import prefect.concurrency._leases as _leases

    _leases._RENEWAL_FRACTION = float(os.environ["FLYWHEEL_TEST_LEASE_RENEWAL_SECONDS"]) / 300.0
