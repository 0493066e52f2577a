"""Alembic's entry point for the feedback store. Flywheel runs it programmatically
(``flywheel/feedback/migrate.py``) on a connection it already holds, inside a transaction it has
locked against concurrent migrators; this file only hands that connection to Alembic."""

from __future__ import annotations

from alembic import context

connection = context.config.attributes["connection"]
version_table = context.config.attributes.get("version_table", "alembic_version")
context.configure(connection=connection, version_table=version_table, transaction_per_migration=False)
with context.begin_transaction():
    context.run_migrations()
