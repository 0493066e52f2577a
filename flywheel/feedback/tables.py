"""The feedback store's tables as SQLAlchemy Core objects: what queries are written against.

This is the schema at the newest migration (``migrations/versions``); a change here goes with a new
migration. The column types are plain (text, float, integer) so SQLite and Postgres hold the same
values: ``ts`` keeps the event's ISO text with its offset, ``ts_epoch`` orders and filters.
"""

from __future__ import annotations

from sqlalchemy import Column, Float, Index, Integer, MetaData, String, Table, Text

metadata = MetaData()

events = Table(
    "events",
    metadata,
    Column("event_id", Text, primary_key=True),
    Column("ts", Text, nullable=False),
    Column("ts_epoch", Float, nullable=False),
    Column("signal", Text, nullable=False),
    Column("polarity", Integer, nullable=False),
    Column("strength", Float, nullable=False),
    Column("user_id", Text),
    Column("session_id", Text),
    Column("consent", Integer, nullable=False),
    Column("prompt_version", Text),
    Column("model", Text),
    Column("confidence", Float),
    Column("reason", Text),
    Column("query", Text, nullable=False),
    Column("output", Text, nullable=False),
    Column("comment", Text),
    Column("correction", Text),
    Column("final_text", Text),
    Column("value", Float),
    Column("context_ids", Text),  # JSON list
    Column("metadata", Text),  # JSON object
    Column("pii_scrubbed", Text),  # comma-separated kinds
    Column("source", Text),
    Column("ingested_at", Float, nullable=False),
    Column("index_version", Text),
    Column("arm", Text),
    Index("events_polarity_ts", "polarity", "ts_epoch"),
    Index("events_ingested", "ingested_at"),
)

# The live service's ask policy (flywheel/ask_ledger.py): asks per user and UTC day, and opt-outs.
# Users as SHA-256 hashes of their ids. Beside the events, so every `serve` worker shares them.
ask_counts = Table(
    "serve_ask_counts",
    metadata,
    Column("user_key", String(64), primary_key=True),
    Column("day", String(10), primary_key=True),  # UTC date, ISO
    Column("asks", Integer, nullable=False),
)
opt_outs = Table(
    "serve_opt_outs",
    metadata,
    Column("user_key", String(64), primary_key=True),
    Column("at", Float, nullable=False),
)

# The migration (migrations/versions) whose schema the tables above describe; a test keeps them equal.
SCHEMA_REVISION = "0003"
