"""PII told by the words before it or by a fixed shape: dates of birth, national ids, MAC addresses and
street addresses after an address cue. Detectors of :mod:`flywheel.feedback.scrub`.

A date, a 9-digit number or "83 Rolna" is ordinary text on its own (a release date, an order id); after
"born", "PESEL" or "I live at" it is personal. So these detectors look for the cue first and take only
what follows it, which keeps look-alikes elsewhere in the text untouched.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from flywheel.feedback.spans import Span

# -- dates of birth --------------------------------------------------------------------------------
_MONTH = (
    r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?"
    r"|(?:janvier|février|mars|avril|mai|juin|juillet|août|septembre|octobre|novembre|décembre)"
    r"|(?:januar|februar|märz|juni|juli|oktober|dezember)|(?:enero|febrero|marzo|abril|mayo|junio|julio"
    r"|agosto|septiembre|octubre|noviembre|diciembre)"
)
_DATE = (
    rf"(?:\d{{1,4}}[./-]\d{{1,2}}[./-]\d{{2,4}}"
    rf"|\d{{1,2}}\.?\s+(?:de\s+)?(?:{_MONTH})\s+(?:de\s+)?\d{{4}}"
    rf"|(?:{_MONTH})\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}})"
)
_DOB = re.compile(
    r"(?i:\b(?:born(?:\s+on)?|d\.?o\.?b\.?|date\s+of\s+birth|birth\s*date|birthday(?:\s+is)?|geboren(?:\s+am)?"
    r"|geburtsdatum|né(?:e)?\s+le|date\s+de\s+naissance|fecha\s+de\s+nacimiento|nacid[oa]\s+el|data\s+di\s+nascita"
    r"|data\s+de\s+nascimento|data\s+urodzenia|geboortedatum)(?:\s+is)?\s*[:=]?\s*)"
    rf"(?P<v>(?i:{_DATE}))(?!\w)"
)

# -- national ids: any token with a digit after the id's name ----------------------------------------
_ID = re.compile(
    r"(?i:\b(?:dni|nie|nif|cpf|cnpj|rg|bsn|pesel|nip|nir|codice\s+fiscale|tax\s+(?:code|id|number)|steuer-?id"
    r"|personalausweis(?:nummer)?|passport(?:\s+(?:number|no\.?))?|national\s+(?:id|insurance)(?:\s+number)?|nino"
    r"|id\s+(?:number|card)|sécurité\s+sociale|numéro\s+fiscal|sofinummer|burgerservicenummer|insee)"
    r"(?:\s+(?:is|number|no\.?|nr\.?))?\s*[:#=]?\s*)"
    r"(?P<v>(?=[\w./ -]{0,24}\d)[A-Za-z0-9](?:[A-Za-z0-9]|[./-](?=[A-Za-z0-9])| (?=\d)){5,24})(?![\w])"
)

# -- MAC addresses ------------------------------------------------------------------------------------
_MAC = re.compile(
    r"[0-9A-Fa-f](?<![\w:.-].)[0-9A-Fa-f]([:-])(?:[0-9A-Fa-f]{2}\1){4}[0-9A-Fa-f]{2}(?![\w:-])"
    r"|[0-9A-Fa-f](?<![\w.].)[0-9A-Fa-f]{3}\.[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}(?![\w.])"
)

# -- street addresses after a cue ("I live at", "ship to", "address:") ----------------------------------
_ADDRESS_CUE = re.compile(
    r"(?i:\b(?:live[sd]?\s+at|living\s+at|reside\s+at|ship(?:ped)?\s+(?:it\s+|them\s+)?to|deliver(?:ed)?\s+(?:it\s+)?to"
    r"|send\s+(?:it\s+|them\s+)?to|sent\s+to|left\s+at|moved\s+to|located\s+at|address(?:\s+is)?\s*:?|addr\.?\s*:"
    r"|wohne\s+(?:in\s+der\s+)?|adresse\s*:?|j'habite(?:\s+au)?|dirección\s*:?|vivo\s+en|indirizzo\s*:?|abito\s+in"
    r"|endereço\s*:?|moro\s+na|adres\s*:?|woon\s+(?:op|aan)|mieszkam\s+(?:na|przy))\s+)"
)
_STOP = (
    r"(?:in|and|or|by|but|instead|for|since|because|with|to|at|on|from|until|yesterday|today|last|next"
    r"|please|thanks|the|a|an|my|our|your|home|work|door|office|is|was|it|this|that"
    r"|apt|apartment|suite|ste|unit|flat)\b"
)
_WORD = rf"(?!{_STOP})[^\W\d_][\w'’.-]*+"
_HOUSE = r"\d{1,5}[A-Za-z]?(?:[/-]\d{1,4}[A-Za-z]?)?(?![\w/])"
_SECONDARY = r"(?:,?\s+(?i:apt|apartment|suite|ste|unit|flat|floor|#|piso|étage|wohnung|m\.)\.?\s*#?\w{1,6})?"
_ADDRESS_BODY = re.compile(
    rf"(?:{_HOUSE},?(?:\s+{_WORD}){{1,5}}|{_WORD}(?:\s+{_WORD}){{0,5}},?\s+{_HOUSE}){_SECONDARY}", re.IGNORECASE
)


# Words one of which every match of the cue patterns above contains (in lower case): a text without any
# skips the pattern (a substring test is far cheaper than a case-insensitive alternation at every position).
DOB_CUES = (
    "born",
    "dob",
    "d.o.b",
    "birth",
    "geboren",
    "geburt",
    "né",
    "naissance",
    "nacimiento",
    "nacid",
    "nascita",
    "nascimento",
    "urodzenia",
    "geboorte",
)
ID_CUES = (
    "dni",
    "nie",
    "nif",
    "cpf",
    "cnpj",
    "rg",
    "bsn",
    "pesel",
    "nip",
    "nir",
    "fiscal",
    "tax",
    "steuer",
    "personalausweis",
    "passport",
    "national",
    "nino",
    "id",
    "sécurité",
    "sofinummer",
    "burgerservicenummer",
    "insee",
)
ADDRESS_CUES = (
    "live",
    "living",
    "reside",
    "ship",
    "deliver",
    "send",
    "sent",
    "left",
    "moved",
    "located",
    "addr",
    "adresse",
    "wohne",
    "habite",
    "dirección",
    "vivo",
    "indirizzo",
    "abito",
    "endereço",
    "moro",
    "adres",
    "woon",
    "mieszkam",
)


def _group(pattern: re.Pattern[str], kind: str, text: str) -> Iterator[Span]:
    for m in pattern.finditer(text):
        yield Span(m.start("v"), m.end("v"), kind)


def _dobs(text: str) -> Iterator[Span]:
    yield from _group(_DOB, "dob", text)


def _national_ids(text: str) -> Iterator[Span]:
    yield from _group(_ID, "national_id", text)


def _macs(text: str) -> Iterator[Span]:
    for m in _MAC.finditer(text):
        yield Span(m.start(), m.end(), "mac")


def _cued_addresses(text: str) -> Iterator[Span]:
    """After an address cue: a house number with up to five words after or before it, any case."""
    for cue in _ADDRESS_CUE.finditer(text):
        body = _ADDRESS_BODY.match(text, cue.end())
        if body:
            yield Span(body.start(), body.end(), "address")
