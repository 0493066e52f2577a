"""Flywheel: a closed-loop improvement orchestrator for LLM products.

Importing it changes nothing global: the faces that start a process (the CLI and the service in
``flywheel.app``, a flow run in ``flywheel.flows``) set the offline switches and mask the logs.
"""

__version__ = "0.1.0"
