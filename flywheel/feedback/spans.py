"""What the PII detectors share: the span each one reports, and the letters of a capitalised word
(street names and personal names are both built from them)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Span:
    """Characters ``start:end`` of a text hold PII of ``kind``."""

    start: int
    end: int
    kind: str


# A capitalised word, accents included (Álvarez, Øster, Straße).
_UPPER, _LOWER = "A-ZÀ-ÖØ-Þ", "a-zß-öø-ÿ"
_CAP = rf"[{_UPPER}][{_LOWER}]++(?:['-][{_UPPER}][{_LOWER}]++)?"
