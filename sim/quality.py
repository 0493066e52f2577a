"""The true quality of the variants a traffic generator plays against: how often a user of each
served variant (prompt version, index version, model) sends negative feedback.

A live product never knows this number; the simulator does, so that ``flywheel watch`` can be
checked against the truth. It is given explicitly (``QualityMap``, e.g. ``--rate prompt=3:0.40``)
or derived from golden scores by one documented, monotone mapping (:func:`rate_for_golden`):

    negative rate = best + (worst - best) * (1 - golden score)

with ``best`` 5% (a perfect golden score still draws some complaints: users are not graders) and
``worst`` 65% (a variant that fails every golden item is disliked most of the time, not always).
So golden 1.0 -> 5%, 0.9 -> 11%, 0.5 -> 35%: a better golden score gives a lower negative rate, and
a variant that drops the fixes of a cycle is clearly worse on live traffic too.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from flywheel.errors import UsageError

BEST_RATE = 0.05
WORST_RATE = 0.65
DEFAULT_RATE = 0.20
KEYS = {"prompt": "prompt_version", "index": "index_version", "model": "model"}


def rate_for_golden(score: float, *, best: float = BEST_RATE, worst: float = WORST_RATE) -> float:
    """The negative-feedback rate of a variant with this golden score (module docstring)."""
    return round(best + (worst - best) * (1.0 - min(1.0, max(0.0, score))), 4)


class Variant(BaseModel):
    """What one user was served, as ``GET /v1/champion`` said (and the event reports back)."""

    prompt_version: str | None = None
    index_version: str | None = None
    model: str | None = None

    def label(self) -> str:
        return f"prompt {self.prompt_version}, index {self.index_version or '-'}, model {self.model}"


class VariantQuality(BaseModel):
    """A negative rate for the variants that match: fields left None match anything."""

    prompt_version: str | None = None
    index_version: str | None = None
    model: str | None = None
    negative_rate: float = Field(ge=0.0, le=1.0)
    note: str = ""

    def matches(self, v: Variant) -> int | None:
        """How many set fields match ``v`` (None: one of them differs)."""
        hits = 0
        for name in KEYS.values():
            want = getattr(self, name)
            if want is None:
                continue
            if want != getattr(v, name):
                return None
            hits += 1
        return hits


class QualityMap(BaseModel):
    """Negative rate per variant: the most specific matching entry wins (the first of equals)."""

    variants: list[VariantQuality] = Field(default_factory=list)
    default_rate: float = Field(DEFAULT_RATE, ge=0.0, le=1.0, description="For variants no entry matches.")

    def rate(self, v: Variant) -> float:
        best, best_hits = self.default_rate, -1
        for entry in self.variants:
            hits = entry.matches(v)
            if hits is not None and hits > best_hits:
                best, best_hits = entry.negative_rate, hits
        return best

    @classmethod
    def parse(cls, specs: list[str], default_rate: float = DEFAULT_RATE) -> QualityMap:
        """From CLI specs ``prompt=3:0.40`` or ``prompt=3,model=ft-1:0.05`` (keys prompt, index, model)."""
        entries = []
        for spec in specs:
            where, sep, rate = spec.rpartition(":")
            if not sep or not where:
                raise UsageError(f"--rate {spec!r}: expected KEY=VALUE[,KEY=VALUE...]:RATE, e.g. prompt=3:0.40")
            fields: dict[str, str] = {}
            for part in where.split(","):
                key, eq, value = part.partition("=")
                if not eq or key.strip() not in KEYS or not value.strip():
                    raise UsageError(f"--rate {spec!r}: {part!r} is not one of prompt=, index=, model=")
                fields[KEYS[key.strip()]] = value.strip()
            try:
                value_f = float(rate)
            except ValueError:
                raise UsageError(f"--rate {spec!r}: {rate!r} is not a rate between 0 and 1") from None
            if not 0.0 <= value_f <= 1.0:
                raise UsageError(f"--rate {spec!r}: {rate!r} is not a rate between 0 and 1")
            entries.append(VariantQuality(**fields, negative_rate=value_f, note=spec))
        return cls(variants=entries, default_rate=default_rate)
