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
- ``[IP]`` IPv4 and IPv6 addresses;
- ``[PHONE]`` phone numbers (9-15 digits, optional ``+`` country code, common separators);
- ``[ADDRESS]`` street addresses: a house number, capitalised words and a street suffix (``221B Baker
  Street``, ``1600 Amphitheatre Parkway``), ``12 Rue de Rivoli``, ``Hauptstraße 5``;
- ``[NAME]`` personal names: a first name from Faker's en_US, en_GB, de_DE, fr_FR and es_ES lists
  followed by a capitalised word (``Jane Doe``), a title and a name (``Dr. Smith``: the title stays), a
  name after "my name is", "I am", "this is", a greeting or a sign-off; and the PERSON entities of a
  spaCy model when one is installed. A first name that is also a common word (May, Will, Mark, Grace)
  counts only before a known last name; a first name alone counts only after those phrases.

Over-scrubbing is preferred to a leak: a commit hash is scrubbed as a secret. Ordinary numbers (order
numbers, dates, prices, times, invoice ids) and product words are left alone.

Time is linear in the text: each kind has its own detector, every pattern can start only at the
beginning of a run of its characters and uses possessive quantifiers or bounded repeats, so no
position is scanned more than a bounded number of times (the old single pattern rescanned a long
token from each of its positions: quadratic, 300 KB took 68 s). Detectors find candidate spans
independently (a span one detector rejects never hides another kind's), and overlapping spans are
merged into one placeholder of the more sensitive kind, so no part of a value survives.
"""

from __future__ import annotations

import importlib
import importlib.util
import ipaddress
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

PLACEHOLDERS: dict[str, str] = {
    "secret": "[SECRET]", "iban": "[IBAN]", "card": "[CARD]", "ssn": "[SSN]", "email": "[EMAIL]",
    "ip": "[IP]", "phone": "[PHONE]", "address": "[ADDRESS]", "name": "[NAME]",
}
_RANK = {kind: i for i, kind in enumerate(PLACEHOLDERS)}  # overlapping spans take the earlier kind

NAME_LOCALES = ("en_US", "en_GB", "de_DE", "fr_FR", "es_ES")
NER_MODELS = ("en_core_web_sm", "en_core_web_md", "en_core_web_lg", "en_core_web_trf")
NER_MAX_CHARS = 100_000  # a spaCy model on a megabyte field would take seconds: the pattern detectors cover it


@dataclass(frozen=True, slots=True)
class Span:
    """Characters ``start:end`` of a text hold PII of ``kind``."""

    start: int
    end: int
    kind: str


@dataclass(frozen=True, slots=True)
class Detector:
    """Finds one family of PII. ``gate`` is a cheap pattern that any text holding it contains: most
    short texts (a product question) skip most detectors without running them. Patterns that start
    with a character class or a literal (look-behinds come after the first character) let the regex
    engine skip ahead to candidate positions, which is what keeps a short text cheap."""

    find: Callable[[str], Iterator[Span]]
    gate: re.Pattern[str] | None = None


# -- secrets and e-mails: one pattern each, nothing to validate afterwards ----------------------------
# Secrets are searched for only inside runs of token characters (16 or more): finding the runs is one
# fast pass, and the many alternatives below then run on a few short stretches, not at every position.
_TOKEN_RUN = re.compile(r"[A-Za-z0-9_/+=.~-]{16,}+")
_BEARER = re.compile(r"Bearer\s++[A-Za-z0-9._~+/=-]{16,}+")
_SECRET = re.compile(
    r"""
        (?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{4,}+\.[A-Za-z0-9_-]{4,}+(?:\.[A-Za-z0-9_-]++)?   # JWT
      | \b(?:sk|pk|rk)-[A-Za-z0-9_-]{16,}+
      | \bAKIA[0-9A-Z]{16}\b
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
_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]++@(?:[A-Za-z0-9-]++\.(?=[A-Za-z0-9-]))++[A-Za-z]{2,}+(?![A-Za-z0-9-])"
)


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


# -- numbers: cards and phones, told from order numbers and dates ------------------------------------
_NUMBER = re.compile(r"(?<![\w+])\+?\(?\d[\d\s().-]{7,22}\d(?!\w)")
_SSN_DASHED = re.compile(r"\d{3}-\d\d-\d{4}")
# A date with the hour after it ("2026-11-10 10:00:00" stops the run at the colon): a timestamp.
_DATE_HOUR = re.compile(r"(?:19|20)\d\d[-/.][01]\d[-/.][0-3]\d[ T]?[0-2]?\d")


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _classify_number(text: str) -> str | None:
    """A run of digits and separators: a card, an SSN (``123-45-6789``, in any context), a phone number,
    or neither (an order number, a date)."""
    if _SSN_DASHED.fullmatch(text):
        return "ssn"
    if _DATE_HOUR.fullmatch(text):
        return None
    digits = re.sub(r"\D", "", text)
    if 13 <= len(digits) <= 19 and _luhn_ok(digits):
        return "card"
    if 9 <= len(digits) <= 15:
        # Phones are written with a country code or separators; a bare 9-15 digit run with neither
        # is as likely an id. Scrub it anyway when it starts with '+' or is grouped like a phone.
        if text.startswith("+") or re.search(r"[\s().-]", text):
            return "phone"
        if len(digits) >= 10:
            return "phone"
    return None


def _numbers(text: str) -> Iterator[Span]:
    for m in _NUMBER.finditer(text):
        kind = _classify_number(m.group(0))
        if kind:
            yield Span(m.start(), m.end(), kind)


# -- IP addresses ---------------------------------------------------------------------------------
_IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
_IPV4 = re.compile(r"\d(?<!\w\d)\d{0,2}\.\d{1,3}\.\d{1,3}\.\d{1,3}\b")


def _ips(pattern: re.Pattern[str]) -> Callable[[str], Iterator[Span]]:
    return lambda text: _valid_ips(pattern, text)


def _valid_ips(pattern: re.Pattern[str], text: str) -> Iterator[Span]:
    for m in pattern.finditer(text):
        try:
            ipaddress.ip_address(m.group(0))
        except ValueError:
            continue
        yield Span(m.start(), m.end(), "ip")


# -- IBANs: a country's fixed length and the mod-97 checksum ---------------------------------------
IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29,
    "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29,
    "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28,
    "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20,
    "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
    "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29,
    "RO": 24, "RS": 22, "SA": 24, "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}
_IBAN_START = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}")
_IBAN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")


def _iban_ok(compact: str) -> bool:
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


def _iban_end(text: str, start: int, length: int) -> int | None:
    """Where an IBAN of ``length`` characters starting at ``start`` ends (single spaces allowed), or None."""
    i, taken = start, 0
    while taken < length and i < len(text):
        ch = text[i]
        if ch in _IBAN_CHARS:
            taken += 1
        elif not (ch == " " and i + 1 < len(text) and text[i + 1] in _IBAN_CHARS and taken % 4 == 0):
            return None
        i += 1
    if taken < length or (i < len(text) and text[i].isalnum()):
        return None
    return i


def _ibans(text: str) -> Iterator[Span]:
    for m in _IBAN_START.finditer(text):
        length = IBAN_LENGTHS.get(m.group(0)[:2])
        end = _iban_end(text, m.start(), length) if length else None
        if end is not None and _iban_ok(text[m.start():end].replace(" ", "")):
            yield Span(m.start(), end, "iban")


# -- SSNs ----------------------------------------------------------------------------------------
_SSN_CUED = re.compile(
    r"(?i:\b(?:ssn|ss\#|social\s+security(?:\s+(?:number|no\.?|\#))?)\W{0,4}(?:is\s+)?)"
    r"(?P<bare>\d{3}[ -]?\d{2}[ -]?\d{4})(?!\w)"
)


def _cued_ssns(text: str) -> Iterator[Span]:
    for m in _SSN_CUED.finditer(text):
        yield Span(m.start("bare"), m.end("bare"), "ssn")


# -- street addresses ------------------------------------------------------------------------------
_UPPER, _LOWER = "A-ZÀ-ÖØ-Þ", "a-zß-öø-ÿ"
_CAP = rf"[{_UPPER}][{_LOWER}]++(?:['-][{_UPPER}][{_LOWER}]++)?"
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
    "(?:" + "|".join(f"{w}(?<!\\w{w})" for w in ("Rue", "Calle", "Avenida", "Via", "Viale", "Piazza", "Plaza", "Paseo"))
    + rf")\s+{_PARTICLES}{_CAP},?\s+\d{{1,4}}\b"
)
_GERMAN_ADDRESS = re.compile(rf"[{_UPPER}](?<!\w.)[{_LOWER}]*?(?:straße|strasse|weg|platz|allee|gasse)\s+\d{{1,4}}[a-z]?\b")


# -- personal names --------------------------------------------------------------------------------
# First names that are also everyday words: a name only before a known last name ("Mark Johnson").
_WORD_NAMES = frozenset(
    "May June April August Will Mark Bill Grace Hope Joy Faith Chase Dawn Summer Autumn Winter Guy Else Edit "
    "Max Rose Jack Jade Ray Don Sue Sam Till Wolf Lee Kim Art Rich Penny Holly Ruby Pearl Daisy Violet Olive "
    "Amber Crystal Angel Sunny Forest River Brook Stone Hunter Mason Miles Major Royal Prince Young Price Drew "
    "Gene Glen Dean Earl Frank Carol Sandy Rusty Sky Star Storm Lane Page Meta Lore Aura Luna Nova Iris Mar "
    "Sol Luz Paz Flor Amor Cruz Nada Gala Cord Brit Grit Ada Alba".split()
)
_COMMON = frozenset(
    "Monday Tuesday Wednesday Thursday Friday Saturday Sunday January February March July September "
    "October November December Settings Security Plan Plans Team Teams Pro Free Business Enterprise Support "
    "Account Password Upload Download Sync Error Help Home Drive Cloud App Apps Mobile Desktop Web Admin User "
    "Users Billing Invoice Export Import Share Folder File Files Data Mode Dark Light Beta Premium Basic Plus "
    "Standard Trial Menu Profile Dashboard Report Reports Street Road Avenue Lane Way Park Center Centre North "
    "South East West New Old Great Little Saint San Santa Hi Hello Dear Thanks Regards Cheers The And Or "
    "But If Then This That These Those What When Where Why How Who Which Yes No Not Please Sorry Ok Okay".split()
)
_TITLES = frozenset("Mr Mrs Ms Miss Mx Dr Prof Herr Frau Mme Mlle Sr Sra".split())
# A capitalised word; the look-behind comes after the first letter so the engine can skip to capitals.
_CAP_WORD = re.compile(rf"[{_UPPER}](?<![\w'-].)[{_LOWER}]++(?:['-][{_UPPER}][{_LOWER}]++)?(?![\w-])")
_FOLLOWING = re.compile(rf"\.?[ \t]+({_CAP})(?![\w-])")  # the next word: a surname (or the name after "Dr.")
_CUE_BEFORE = re.compile(
    r"(?i:\b(?:i\s+am|i'm|this\s+is|call\s+me|thanks|thank\s+you|regards|cheers|best|sincerely|dear|hi|hello|hey))"
    r",?\s+$"
)
_STATED = re.compile(rf"(?i:\bmy\s+name(?:\s+is|'s)|\bname\s*:)\s+({_CAP})(?:[ \t]+({_CAP}))?")


@dataclass(frozen=True)
class NameLists:
    """Faker's first and last names for ``NAME_LOCALES``, and the words that rule a name out."""

    first: frozenset[str]
    last: frozenset[str]
    common: frozenset[str]

    def is_first(self, word: str) -> bool:
        return word in self.first and word not in _WORD_NAMES

    def is_pair(self, first: str, last: str) -> bool:
        if first in _WORD_NAMES:
            return last in self.last and last not in self.common
        return self.is_first(first) and last not in self.common


@cache
def name_lists() -> NameLists:
    """Loaded on first use (about 50 ms): importing Faker's data modules, not a Faker instance."""
    first: set[str] = set()
    last: set[str] = set()
    for locale in NAME_LOCALES:
        provider = importlib.import_module(f"faker.providers.person.{locale}").Provider
        first.update(provider.first_names)
        last.update(provider.last_names)
    lorem = importlib.import_module("faker.providers.lorem.en_US").Provider.word_list
    common = _COMMON | {w.capitalize() for w in lorem}
    return NameLists(frozenset(first), frozenset(last - common), common)


def _names(text: str) -> Iterator[Span]:
    """A known first name with a surname or after a cue ("I am", "Thanks,"); a title and a surname."""
    names = name_lists()
    for m in _CAP_WORD.finditer(text):
        word = m.group(0)
        if word in _TITLES:
            span = _titled(text, m.end(), names)
        elif word in names.first or word in _WORD_NAMES:
            span = _first_named(text, m, names)
        else:
            continue
        if span is not None:
            yield span


def _first_named(text: str, m: re.Match[str], names: NameLists) -> Span | None:
    last = _FOLLOWING.match(text, m.end())
    if last and not text.startswith(".", m.end()) and names.is_pair(m.group(0), last.group(1)):
        return Span(m.start(), last.end(1), "name")
    if names.is_first(m.group(0)) and _CUE_BEFORE.search(text, max(0, m.start() - 24), m.start()):
        return Span(m.start(), m.end(), "name")
    return None


def _titled(text: str, end: int, names: NameLists) -> Span | None:
    """The name after a title; the title stays ("Dr. [NAME]")."""
    first = _FOLLOWING.match(text, end)
    if not first or first.group(1) in names.common:
        return None
    last = _FOLLOWING.match(text, first.end(1))
    stop = last.end(1) if last and not text.startswith(".", first.end(1)) and last.group(1) not in names.common else first.end(1)
    return Span(first.start(1), stop, "name")


def _stated_names(text: str) -> Iterator[Span]:
    """After "my name is" or "Name:", any capitalised word is a name, with a surname when one follows."""
    names = name_lists()
    for m in _STATED.finditer(text):
        if m.group(1) in names.common:
            continue
        end = m.end(2) if m.group(2) and m.group(2) not in names.common else m.end(1)
        yield Span(m.start(1), end, "name")


@cache
def _ner_model() -> Any | None:
    """A spaCy English model when one is installed (none is on the registry: the patterns are the default)."""
    if importlib.util.find_spec("spacy") is None:
        return None
    import spacy

    for model in NER_MODELS:
        if importlib.util.find_spec(model) is not None:
            return spacy.load(model)
    return None


def _ner_names(text: str) -> Iterator[Span]:
    nlp = _ner_model() if len(text) <= NER_MAX_CHARS else None
    if nlp is not None:
        for ent in nlp(text).ents:
            if ent.label_ == "PERSON":
                yield Span(ent.start_char, ent.end_char, "name")


DETECTORS: tuple[Detector, ...] = (
    Detector(_secrets, _TOKEN_RUN),
    Detector(_matches(_EMAIL, "email"), re.compile("@")),
    Detector(_ips(_IPV6), re.compile(":[0-9A-Fa-f]{0,4}:")),
    Detector(_names),
    Detector(_stated_names, re.compile("[Nn][Aa][Mm][Ee]")),
    Detector(_ner_names),
)
# Every one of these needs a digit: a text without one (most answers) skips them all at once.
DIGIT_DETECTORS: tuple[Detector, ...] = (
    Detector(_ibans, re.compile(r"[A-Z]{2}\d\d")),
    Detector(_cued_ssns, re.compile(r"[Ss](?:[Ss][Nn#]|[Oo][Cc][Ii][Aa][Ll])")),
    Detector(_ips(_IPV4)),
    Detector(_numbers, re.compile(r"\d[\d\s().-]{7,}\d")),
    Detector(_matches(_NUMBERED_ADDRESS, "address")),
    Detector(_matches(_NUMBER_LAST_ADDRESS, "address")),
    Detector(_matches(_GERMAN_ADDRESS, "address"), re.compile(r"(?:straße|strasse|weg|platz|allee|gasse)\s+\d")),
)
_DIGIT = re.compile(r"\d")


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


def find_pii(text: str) -> list[Span]:
    """Every PII span in ``text``, merged, in order."""
    spans: list[Span] = []
    for detector in DETECTORS + DIGIT_DETECTORS if _DIGIT.search(text) else DETECTORS:
        if detector.gate is None or detector.gate.search(text):  # inlined: this loop runs for every field
            spans.extend(detector.find(text))
    return merged(spans) if spans else spans


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
        parts += [text[at:span.start], PLACEHOLDERS[span.kind]]
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
