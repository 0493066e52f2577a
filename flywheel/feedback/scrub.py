"""PII scrubbing: applied to every text field before an event is stored.

What is removed, and the placeholder it leaves:

- ``[SECRET]`` API-key-like tokens: ``sk-...``, ``AKIA...``, ``ghp_...``, ``xox?-...``, ``AIza...``,
  bearer tokens, whole JWTs (header, payload and signature), AWS secret access keys (40 characters of
  base64 with ``/`` or ``+``), any 32+ character token mixing letters and digits;
- ``[EMAIL]`` e-mail addresses;
- ``[IBAN]`` IBANs, compact or in groups of four, when the country's length and the mod-97 checksum hold;
- ``[CARD]`` 13-19 digit numbers that pass the Luhn check;
- ``[SSN]`` US social security numbers: ``123-45-6789`` anywhere, without dashes after "SSN" or
  "social security (number)";
- ``[ID]`` national ids (DNI, codice fiscale, BSN, PESEL, CPF, NIR, passport...) after their name;
- ``[IP]`` IPv4 and IPv6 addresses; ``[MAC]`` MAC addresses (``5c:be:e3:89:12:0e``, ``5CBE.E389.120E``);
- ``[DOB]`` a date after "born", "DOB", "date of birth", "geboren am", "né le" and the like;
- ``[PHONE]`` phone numbers (9-15 digits, optional ``+`` country code, common separators);
- ``[ADDRESS]`` street addresses: a house number, capitalised words and a street suffix (``221B Baker
  Street``, ``1600 Amphitheatre Parkway``), ``12 Rue de Rivoli``, ``Hauptstraße 5``; after an address cue
  ("I live at", "ship it to", "address:") a house number with up to five words, any case and locale;
- ``[NAME]`` personal names: a first name from Faker's en_US, en_GB, de_DE, fr_FR and es_ES lists
  followed by a capitalised word (``Jane Doe``), a title and a name (``Dr. Smith``: the title stays), a
  name after "my name is", "I am", "this is", a greeting or a sign-off; any capitalised name after a
  relation or sign-off cue ("my colleague", "spoke with", "Kind regards,"), lower case after "my name is";
  the PERSON entities of a spaCy model when one is installed. A first name that is also a common word
  (May, Will, Mark, Grace) counts only before a known last name; a first name alone counts only after
  those phrases.

Over-scrubbing is preferred to a leak: a commit hash is scrubbed as a secret. Ordinary numbers (order
numbers, dates, prices, times, invoice ids) and product words are left alone.

Time is linear in the text: each kind has its own detector, every pattern can start only at the
beginning of a run of its characters and uses possessive quantifiers or bounded repeats, so no
position is scanned more than a bounded number of times (the old single pattern rescanned a long
token from each of its positions: quadratic, 300 KB took 68 s). Detectors find candidate spans
independently (a span one detector rejects never hides another kind's), and overlapping spans are
merged into one placeholder of the more sensitive kind, so no part of a value survives.

The name detectors are in :mod:`flywheel.feedback.names`, those of numbers, IBANs and IP addresses
in :mod:`flywheel.feedback.digits`; secrets, e-mails and street addresses are found here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from flywheel.feedback.cued import ADDRESS_CUES, DOB_CUES, ID_CUES, _cued_addresses, _dobs, _macs, _national_ids
from flywheel.feedback.digits import _IPV4, _IPV6, _cued_ssns, _ibans, _ips, _numbers
from flywheel.feedback.names import (
    PERSON_CUES,
    _lower_stated_names,
    _names,
    _ner_names,
    _person_cued_names,
    _stated_names,
    ner_installed,
)
from flywheel.feedback.spans import _CAP, _LOWER, _UPPER, Span

PLACEHOLDERS: dict[str, str] = {
    "secret": "[SECRET]",
    "iban": "[IBAN]",
    "card": "[CARD]",
    "ssn": "[SSN]",
    "email": "[EMAIL]",
    "national_id": "[ID]",
    "ip": "[IP]",
    "mac": "[MAC]",
    "phone": "[PHONE]",
    "dob": "[DOB]",
    "address": "[ADDRESS]",
    "name": "[NAME]",
}
_RANK = {kind: i for i, kind in enumerate(PLACEHOLDERS)}  # overlapping spans take the earlier kind


@dataclass(frozen=True, slots=True)
class Detector:
    """Finds one family of PII. ``gate`` is a cheap pattern that every text the detector finds anything
    in holds (a necessary condition, never a judgement: test_gates_only_save_time holds them to it):
    most short texts (a product question) skip most detectors without running them. Patterns that
    start with a character class or a literal (look-behinds come after the first character) let the
    regex engine skip ahead to candidate positions, which is what keeps a short text cheap."""

    find: Callable[[str], Iterator[Span]]
    gate: re.Pattern[str] | None = None
    cues: re.Pattern[str] | None = None  # a pattern the lower-cased text holds: for cue-led detectors, a cue word
    needs: frozenset[str] = frozenset()  # ``FEATURES`` the text must hold for the detector to find anything
    present: Callable[[], bool] = lambda: True  # False: it finds nothing in this process (no spaCy model)

    def __post_init__(self) -> None:
        if self.gate is not None and self.cues is not None:
            raise ValueError("a detector is gated on the text or on its lower-cased form, not both")


def _any_of(words: tuple[str, ...]) -> re.Pattern[str]:
    """One pattern of literal words: the engine skips to their first letters (cheaper than one test each)."""
    return re.compile("|".join(map(re.escape, sorted(words, key=len, reverse=True))))


# -- secrets and e-mails: one pattern each, nothing to validate afterwards ----------------------------
# Secrets are searched for only inside runs of token characters (16 or more): finding the runs is one
# fast pass, and the many alternatives below then run on a few short stretches, not at every position.
_TOKEN_RUN = re.compile(r"[A-Za-z0-9_/+=.~-]{16,}+")
_BEARER = re.compile(r"Bearer\s++[A-Za-z0-9._~+/=-]{16,}+")
_SECRET = re.compile(
    r"""
        (?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{4,}+\.[A-Za-z0-9_-]{4,}+(?:\.[A-Za-z0-9_-]++)?   # JWT
      | \b(?:sk|pk|rk)-[A-Za-z0-9_-]{16,}+
      | \b(?:AKIA|ASIA|AIDA|AROA|AGPA|ANPA|ANVA|AIPA|APKA)[0-9A-Z]{16}\b   # AWS key ids, temporary too
      | \bgh[pousr]_[A-Za-z0-9]{30,}+
      | \bxox[abprs]-[A-Za-z0-9-]{10,}+
      | \bAIza[0-9A-Za-z_-]{35}
      | (?<![A-Za-z0-9/+])                                   # AWS secret access key: 40 of base64,
        (?=[A-Za-z0-9]{0,39}[/+])(?=[A-Za-z/+]{0,39}\d)      # with a / or +, a digit,
        (?=[a-z0-9/+]{0,39}[A-Z])(?=[A-Z0-9/+]{0,39}[a-z])   # upper and lower case
        [A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])
      | (?<![A-Za-z0-9_-])(?=[A-Za-z_-]*+\d)(?=[0-9_-]*+[A-Za-z])[A-Za-z0-9_-]{32,}+(?![A-Za-z0-9_-])
    """,
    re.VERBOSE,
)
# Any script's letters in the local part and the domain (josé.garcía@correo.es, info@bücher.de).
_EMAIL = re.compile(r"(?<![\w.%+-])[\w.%+-]++@(?:[\w-]++\.(?=[\w-]))++[^\W\d_]{2,}+(?![\w-])")


def _matches(pattern: re.Pattern[str], kind: str) -> Callable[[str], Iterator[Span]]:
    def find(text: str) -> Iterator[Span]:
        for m in pattern.finditer(text):
            yield Span(m.start(), m.end(), kind)

    return find


def _secrets(text: str) -> Iterator[Span]:
    yield from _matches(_BEARER, "secret")(text)
    for run in _TOKEN_RUN.finditer(text):
        for m in _SECRET.finditer(text, run.start(), run.end()):
            yield Span(m.start(), m.end(), "secret")


# -- street addresses ------------------------------------------------------------------------------
_SUFFIX = r"Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Parkway|Pkwy|Terrace|Crescent|Highway|Hwy"
# Suffixes that also end product names ("2 Nimbus Drive folders", "3 Google Drive accounts"): an
# address only when no lowercase word follows, other than a few that go with addresses.
_PRODUCT_LIKE_SUFFIX = r"Drive|Dr|Way|Court|Ct|Place|Pl|Square|Sq|Close|Circle|Cir|Mews|Row|Gardens"
_NOT_A_NOUN_AFTER = r"(?![ \t]+(?!(?:in|and|or|near|by|at|on|with|apt|suite|unit|is)\b)[a-z])"
_PARTICLES = r"(?:(?:de|du|des|la|le|del|della|di|l')\s*)*"
_NUMBERED_ADDRESS = re.compile(  # 221B Baker Street, 12 Rue de Rivoli
    rf"\d(?<!\w\d)(?:\d{{0,4}}[A-Za-z]?(?:\s+[{_UPPER}][{_LOWER}]++){{1,4}}\s+"
    rf"(?:(?:{_SUFFIX})\b|(?:{_PRODUCT_LIKE_SUFFIX})\b{_NOT_A_NOUN_AFTER})\.?"
    rf"|\d{{0,3}}[a-z]?,?\s+(?:Rue|Avenue|Boulevard|Place|Calle|Avenida|Via|Viale|Piazza|Plaza|Paseo|Chemin)"
    rf"\s+{_PARTICLES}{_CAP})"
)
_NUMBER_LAST_ADDRESS = re.compile(  # Calle Mayor 5, Via Roma 12
    "(?:"
    + "|".join(f"{w}(?<!\\w{w})" for w in ("Rue", "Calle", "Avenida", "Via", "Viale", "Piazza", "Plaza", "Paseo"))
    + rf")\s+{_PARTICLES}{_CAP},?\s+\d{{1,4}}\b"
)
_GERMAN_ADDRESS = re.compile(
    rf"[{_UPPER}](?<!\w.)[{_LOWER}]*?(?:straße|strasse|weg|platz|allee|gasse)\s+\d{{1,4}}[a-z]?\b"
)


# What a text holds that whole groups of detectors need: a digit (every number, IBAN, date, id and
# numbered address), and a capitalised word after white space (every name pattern wants one: a surname
# after a first name or title, a name after a cue; a street name after its house number). Most short
# texts lack one or both, and two searches then skip a group at once.
DIGIT, CAPITAL = "digit", "capital"
FEATURES: dict[str, re.Pattern[str]] = {DIGIT: re.compile(r"\d"), CAPITAL: re.compile(rf"\s[{_UPPER}][{_LOWER}]")}
ON_DIGIT, ON_CAPITAL = frozenset({DIGIT}), frozenset({CAPITAL})

# Gates start with their rarest literal or character and look behind for the rest, so the engine jumps
# from candidate to candidate instead of trying the whole pattern at every position; gates on words
# look in the lower-cased text, where a literal needs no case-insensitive matching.
DETECTORS: tuple[Detector, ...] = (
    Detector(_secrets, _TOKEN_RUN),
    Detector(_matches(_EMAIL, "email"), re.compile("@")),
    Detector(_ips(_IPV6), re.compile(":[0-9A-Fa-f]{0,4}:")),
    Detector(_names, needs=ON_CAPITAL),
    Detector(_stated_names, cues=re.compile("name"), needs=ON_CAPITAL),
    Detector(_lower_stated_names, cues=re.compile(r"me(?:(?<=name)|(?<=\sme))")),  # "name", "call  me"
    Detector(_person_cued_names, cues=_any_of(PERSON_CUES), needs=ON_CAPITAL),
    Detector(_ner_names, present=ner_installed),
    Detector(_ibans, re.compile(r"\d(?<=[A-Za-z]{2}\d)\d"), needs=ON_DIGIT),  # two letters, two digits
    Detector(_dobs, cues=_any_of(DOB_CUES), needs=ON_DIGIT),
    Detector(_national_ids, cues=_any_of(ID_CUES), needs=ON_DIGIT),
    # A MAC address can be letters only (aa:bb:cc:dd:ee:ff), so it does not wait for a digit.
    Detector(
        _macs,
        re.compile(
            r"[:.-](?:(?<=[0-9A-Fa-f]{2}[:-])[0-9A-Fa-f]{2}[:-]"
            r"|(?<=[0-9A-Fa-f]{4}\.)[0-9A-Fa-f]{4}\.)"
        ),
    ),
    Detector(_cued_addresses, cues=_any_of(ADDRESS_CUES), needs=ON_DIGIT),
    Detector(_cued_ssns, cues=_any_of(("ssn", "ss#", "social")), needs=ON_DIGIT),
    Detector(_ips(_IPV4), re.compile(r"\.(?<=\d\.)\d"), needs=ON_DIGIT),  # a dotted quad: digit, dot, digit
    Detector(_numbers, re.compile(r"\d[\d\s().-]{7,}\d"), needs=ON_DIGIT),
    Detector(_matches(_NUMBERED_ADDRESS, "address"), needs=ON_DIGIT | ON_CAPITAL),
    Detector(
        _matches(_NUMBER_LAST_ADDRESS, "address"),
        re.compile("Rue|Calle|Avenida|Via|Piazza|Plaza|Paseo"),
        needs=ON_DIGIT,
    ),
    Detector(
        _matches(_GERMAN_ADDRESS, "address"),
        re.compile(r"(?:straße|strasse|weg|platz|allee|gasse)\s+\d"),
        needs=ON_DIGIT,
    ),
)


# -- putting it together ---------------------------------------------------------------------------
def merged(spans: Iterable[Span]) -> list[Span]:
    """Overlapping spans become one, of the most sensitive kind among them (``PLACEHOLDERS`` order)."""
    out: list[Span] = []
    for span in sorted(spans, key=lambda s: (s.start, -s.end)):
        if out and span.start < out[-1].end:
            last = out[-1]
            kind = min(last.kind, span.kind, key=_RANK.__getitem__)
            out[-1] = Span(last.start, max(last.end, span.end), kind)
        else:
            out.append(span)
    return out


_Find = Callable[[str], Iterator[Span]]
_Search = Callable[[str], Any]
# A plan: detectors that always run, those gated on the text, those gated on the lower-cased text.
_Plan = tuple[tuple[_Find, ...], tuple[tuple[_Search, _Find], ...], tuple[tuple[_Search, _Find], ...]]


def _plan(detectors: tuple[Detector, ...]) -> _Plan:
    """The detectors as bound searches and finds, looked up once, grouped so that the loop over them
    tests nothing but the gate: most feedback fields are short, and per-detector overhead is most
    of their cost."""
    return (
        tuple(d.find for d in detectors if d.gate is None and d.cues is None),
        tuple((d.gate.search, d.find) for d in detectors if d.gate is not None),
        tuple((d.cues.search, d.find) for d in detectors if d.cues is not None),
    )


_PLANS: dict[tuple[bool, bool], _Plan] = {}


def _made_plans() -> dict[tuple[bool, bool], _Plan]:
    """A plan for each (holds a digit, holds a capitalised word): the detectors whose needs it meets and
    that can find anything here. Made on first use: whether a spaCy model is installed is known then."""
    present = tuple(d for d in DETECTORS if d.present())
    for digit in (False, True):
        for capital in (False, True):
            held = (ON_DIGIT if digit else frozenset()) | (ON_CAPITAL if capital else frozenset())
            _PLANS[digit, capital] = _plan(tuple(d for d in present if d.needs <= held))
    return _PLANS


_HAS_DIGIT, _HAS_CAPITAL = FEATURES[DIGIT].search, FEATURES[CAPITAL].search


# Short texts recur across events (user and session ids, canned answers, corrections): their spans are
# remembered, for at most _CACHED texts of at most _CACHED_CHARS characters (a few MB at worst).
_CACHED_CHARS, _CACHED = 512, 16_384


def find_pii(text: str) -> list[Span]:
    """Every PII span in ``text``, merged, in order. A detector runs only when the text holds the
    ``FEATURES`` it needs, its gate matches the text and its cue pattern the lower-cased text."""
    if len(text) <= _CACHED_CHARS:
        return list(_find_short(text))
    return _find(text)


@lru_cache(maxsize=_CACHED)
def _find_short(text: str) -> tuple[Span, ...]:
    return tuple(_find(text))  # Span is frozen: the cached spans cannot be changed by a caller


def _find(text: str) -> list[Span]:
    always, gated, cued = (_PLANS or _made_plans())[_HAS_DIGIT(text) is not None, _HAS_CAPITAL(text) is not None]
    spans: list[Span] = []
    for find in always:
        spans.extend(find(text))
    for gate, find in gated:
        if gate(text) is not None:
            spans.extend(find(text))
    low = text.lower()
    for cues, find in cued:
        if cues(low) is not None:
            spans.extend(find(text))
    return merged(spans) if len(spans) > 1 else spans


def scrub_text(text: str, found: set[str] | None = None) -> str:
    """Return ``text`` with PII replaced by placeholders; add the kinds removed to ``found``."""
    if not text:
        return text
    spans = find_pii(text)
    if not spans:
        return text
    parts: list[str] = []
    at = 0
    for span in spans:
        parts += [text[at : span.start], PLACEHOLDERS[span.kind]]
        at = span.end
        if found is not None:
            found.add(span.kind)
    parts.append(text[at:])
    return "".join(parts)


def scrub_value(value: Any, found: set[str]) -> Any:
    """Scrub strings anywhere inside JSON-like data (metadata objects, lists)."""
    if isinstance(value, str):
        return scrub_text(value, found)
    if isinstance(value, dict):
        return {k: scrub_value(v, found) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub_value(v, found) for v in value]
    return value
