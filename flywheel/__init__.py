"""Flywheel: a closed-loop improvement orchestrator for LLM products."""

from flywheel._offline import apply_offline_defaults

apply_offline_defaults()

__version__ = "0.1.0"
