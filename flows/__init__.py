"""Prefect flows: the cycle, approval, reviews and the operators' flows (Prefect only)."""

from flywheel._offline import apply_offline_defaults

apply_offline_defaults()  # a flow run's process: before Prefect (imported next) reads its settings

from flywheel.flows import expected_errors
from flywheel.masking import install_log_masking

expected_errors.install()
install_log_masking()  # a flow run's records (Prefect's, MLflow's, the stores') reach the UI masked
