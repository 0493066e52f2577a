"""Alembic's entry point for the state store. Flywheel runs it programmatically
(``flywheel/schema_migrations.py``) on a connection it already holds, inside a transaction it has
locked against concurrent migrators; this file only hands that connection to Alembic, with the state
store's own revision table (it may share a Postgres database with the feedback store)."""

from __future__ import annotations

from alembic import context

connection = context.config.attributes["connection"]
context.configure(
    connection=connection, version_table=context.config.attributes["version_table"], transaction_per_migration=False
)
with context.begin_transaction():
    context.run_migrations()
