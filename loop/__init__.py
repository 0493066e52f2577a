"""The improvement cycle as plain steps, without Prefect (the flow in ``flows/cycle.py`` is the one
orchestration that calls them): a context opened once per cycle, triage, one step per candidate
kind, evaluation on the golden set, the gate, the report; promotion, rollback and status; the
fine-tuning jobs and the weekly review. Built on ``improvers``, ``evals`` and the core ``flywheel``.
"""
