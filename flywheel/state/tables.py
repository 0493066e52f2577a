"""The state store's tables as SQLAlchemy Core objects: what its queries are written against.

This is the schema at the newest migration (``migrations/versions``); a change here goes with a new
migration, and a test keeps the two equal. Times are epoch seconds (float); documents are JSON text.
"""

from __future__ import annotations

from sqlalchemy import Column, Float, Index, Integer, LargeBinary, MetaData, Table, Text

metadata = MetaData()

cycles = Table(
    "cycles",
    metadata,
    Column("cycle_id", Text, primary_key=True),
    Column("started_at", Float, nullable=False),
    Column("finished_at", Float),
    Column("status", Text, nullable=False),
    Column("golden_version", Text),
    Column("champion_score", Float),
    Column("summary", Text),  # JSON object
)
candidates = Table(
    "candidates",
    metadata,
    Column("candidate_id", Text, primary_key=True),
    Column("cycle_id", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("doc", Text, nullable=False),  # the Candidate as JSON
    Column("decision", Text),
    Column("created_at", Float, nullable=False),
    Index("candidates_cycle", "cycle_id"),
)
drafts = Table(
    "drafts",
    metadata,
    Column("cycle_id", Text, primary_key=True),
    Column("cluster_id", Text, primary_key=True),
    Column("doc", Text, nullable=False),
)
eval_cache = Table(
    "eval_cache",
    metadata,
    Column("key", Text, primary_key=True),
    Column("created_at", Float, nullable=False),
    Column("doc", Text, nullable=False),
)
promotions = Table(
    "promotions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", Text, nullable=False),
    Column("action", Text, nullable=False),
    Column("from_version", Text),
    Column("to_version", Text, nullable=False),
    Column("candidate_id", Text),
    Column("at", Float, nullable=False),
    Column("by", Text),
    Column("note", Text),
    sqlite_autoincrement=True,
)
cluster_attempts = Table(
    "cluster_attempts",
    metadata,
    Column("cluster_id", Text, primary_key=True),
    Column("cycle_id", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("candidate_id", Text, primary_key=True),
    Column("outcome", Text, nullable=False),
    Column("at", Float, nullable=False),
)

# Knowledge index versions: Chroma holds one record per distinct chunk content; which records make
# up a version is kept here, so versions can branch, be rolled back and be rebuilt.
kb_versions = Table(
    "kb_versions",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("created_at", Float, nullable=False),
    Column("parent", Integer),
    Column("source", Text),
    Column("documents", Integer, nullable=False),
    Column("chunks", Integer, nullable=False),
    Column("status", Text, nullable=False),
    Column("note", Text),
    Column("provenance", Text),  # JSON object
)
kb_records = Table(
    "kb_records",
    metadata,
    Column("record_id", Text, primary_key=True),
    Column("chunk_id", Text, nullable=False),
    Column("doc_id", Text, nullable=False),
    Column("text", Text, nullable=False),
    Column("source", Text),
    Column("updated_at", Text),
)
kb_members = Table(
    "kb_members",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("record_id", Text, primary_key=True),
    sqlite_with_rowid=False,
)
pointers = Table(
    "pointers",
    metadata,
    Column("name", Text, primary_key=True),
    Column("value", Text, nullable=False),
)

# Fine-tune jobs: recorded before they are polled, so a restarted flow resumes the poll of the same
# job instead of submitting another; one job per dataset version and base model.
finetune_jobs = Table(
    "finetune_jobs",
    metadata,
    Column("job_id", Text, primary_key=True),
    Column("dataset_version", Text, nullable=False),
    Column("base_model", Text, nullable=False),
    Column("cycle_id", Text),
    Column("cluster_ids", Text, nullable=False),  # comma-separated
    Column("status", Text, nullable=False),
    Column("fine_tuned_model", Text),
    Column("model_version", Text),
    Column("error", Text),
    Column("doc", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Index("finetune_jobs_dataset", "dataset_version", "base_model", unique=True),
)

# Golden-set proposals, by content id: a proposal made twice is found, not duplicated, and a
# rejected one stays rejected.
golden_proposals = Table(
    "golden_proposals",
    metadata,
    Column("proposal_id", Text, primary_key=True),
    Column("status", Text, nullable=False),
    Column("category", Text, nullable=False),
    Column("doc", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("decided_at", Float),
    Index("golden_proposals_status", "status", "created_at"),
)

# API keys of the live service: a salted scrypt hash, never the key; read by every replica on every
# request (by primary key), so a revocation is refused everywhere at once.
api_keys = Table(
    "api_keys",
    metadata,
    Column("key_id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("scope", Text, nullable=False),
    Column("salt", Text, nullable=False),
    Column("hash", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("revoked_at", Float),
    Index("api_keys_name", "name"),
)

# Incremental triage (flywheel/state/triage.py): the clusters with their centroid sums and the counts
# priority needs, membership in chunks of event ids (appended per run, never rewritten by an
# incremental one), per-cluster user counts (the per-user cap), labelled reference vectors for category
# inference, and how far triage has read (``triage_meta``: one row).
triage_meta = Table(
    "triage_meta",
    metadata,
    Column("name", Text, primary_key=True),
    Column("watermark", Float, nullable=False),  # newest ingested_at (epoch) of the negatives read
    Column("fingerprint", Text, nullable=False),  # embedder and triage settings the clusters were made with
    Column("generation", Integer, nullable=False),  # bumped by every save: a concurrent triage does not double count
    Column("full_at", Float, nullable=False),  # when the last full re-cluster ran
)
triage_clusters = Table(
    "triage_clusters",
    metadata,
    Column("cluster_id", Text, primary_key=True),
    Column("category", Text, nullable=False),
    Column("withheld", Integer, nullable=False),  # text never embedded (remote embedder, no consent)
    Column("size", Integer, nullable=False),
    Column("weight", Float, nullable=False),  # events behind ``vsum``
    Column("vsum", LargeBinary),  # float64 sum of member query vectors
    Column("users", Integer, nullable=False),
    Column("capped", Integer, nullable=False),  # sum over users of min(events, per_user_cap)
    Column("strength", Float, nullable=False),  # sums over members
    Column("reasoned", Integer, nullable=False),
    Column("low_conf", Integer, nullable=False),
    Column("consented", Integer, nullable=False),
    Column("usable", Integer, nullable=False),
    Column("first_seen", Float, nullable=False),
    Column("last_seen", Float, nullable=False),
    Column("reasons", Text, nullable=False),  # JSON object
    Column("examples", Text, nullable=False),  # JSON list of consented queries
    Column("example_vecs", LargeBinary),  # float32 rows, one per example
)
triage_members = Table(
    "triage_members",
    metadata,
    Column("chunk", Integer, primary_key=True, autoincrement=True),
    Column("cluster_id", Text, nullable=False),
    Column("event_ids", Text, nullable=False),  # JSON list
    Index("triage_members_cluster", "cluster_id"),
    sqlite_autoincrement=True,
)
triage_users = Table(
    "triage_users",
    metadata,
    Column("cluster_id", Text, primary_key=True),
    Column("user_key", Text, primary_key=True),  # a hash of StoredEvent.user_key()
    Column("n", Integer, nullable=False),
    sqlite_with_rowid=False,
)
triage_labels = Table(
    "triage_labels",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("category", Text, nullable=False),
    Column("weight", Float, nullable=False),
    Column("vec", LargeBinary, nullable=False),  # float32
    sqlite_autoincrement=True,
)

# The migration (migrations/versions) whose schema the tables above describe; a test keeps them equal.
SCHEMA_REVISION = "0006"
