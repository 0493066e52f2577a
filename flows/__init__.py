"""Prefect flows: the cycle, approval, reviews and the operators' flows (Prefect only)."""

from flows import expected_errors

expected_errors.install()
