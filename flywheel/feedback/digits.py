"""PII written with digits: card, phone and social security numbers, IP addresses and IBANs, each
told from ordinary numbers (order numbers, dates, prices) by a checksum, a length or its shape.
Detectors of :mod:`flywheel.feedback.scrub`."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterator

from flywheel.feedback.spans import Span

# -- numbers: cards and phones, told from order numbers and dates ------------------------------------
_NUMBER = re.compile(r"(?<![\w+])(?<!\w-)\+?\(?\d[\d\s().-]{7,22}\d(?!\w)")
_SSN_DASHED = re.compile(r"\d{3}-\d\d-\d{4}")
# A date with the hour after it ("2026-11-10 10:00:00" stops the run at the colon): a timestamp.
_DATE_HOUR = re.compile(r"(?:19|20)\d\d[-/.][01]\d[-/.][0-3]\d[ T]?[0-2]?\d")
_NOT_DIGIT = re.compile(r"\D")
_SEPARATOR = re.compile(r"[\s().-]")


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
    digits = _NOT_DIGIT.sub("", text)
    if 13 <= len(digits) <= 19 and _luhn_ok(digits):
        return "card"
    if 9 <= len(digits) <= 15:
        # Phones are written with a country code or separators; a bare 9-15 digit run with neither
        # is as likely an id. Scrub it anyway when it starts with '+' or is grouped like a phone.
        if text.startswith("+") or _SEPARATOR.search(text):
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
    "AD": 24,
    "AE": 23,
    "AL": 28,
    "AT": 20,
    "AZ": 28,
    "BA": 20,
    "BE": 16,
    "BG": 22,
    "BH": 22,
    "BR": 29,
    "BY": 28,
    "CH": 21,
    "CR": 22,
    "CY": 28,
    "CZ": 24,
    "DE": 22,
    "DK": 18,
    "DO": 28,
    "EE": 20,
    "EG": 29,
    "ES": 24,
    "FI": 18,
    "FO": 18,
    "FR": 27,
    "GB": 22,
    "GE": 22,
    "GI": 23,
    "GL": 18,
    "GR": 27,
    "GT": 28,
    "HR": 21,
    "HU": 28,
    "IE": 22,
    "IL": 23,
    "IQ": 23,
    "IS": 26,
    "IT": 27,
    "JO": 30,
    "KW": 30,
    "KZ": 20,
    "LB": 28,
    "LC": 32,
    "LI": 21,
    "LT": 20,
    "LU": 20,
    "LV": 21,
    "MC": 27,
    "MD": 24,
    "ME": 22,
    "MK": 19,
    "MR": 27,
    "MT": 31,
    "MU": 30,
    "NL": 18,
    "NO": 15,
    "PK": 24,
    "PL": 28,
    "PS": 29,
    "PT": 25,
    "QA": 29,
    "RO": 24,
    "RS": 22,
    "SA": 24,
    "SC": 31,
    "SE": 24,
    "SI": 19,
    "SK": 24,
    "SM": 27,
    "ST": 25,
    "SV": 28,
    "TL": 23,
    "TN": 24,
    "TR": 26,
    "UA": 29,
    "VA": 22,
    "VG": 24,
    "XK": 20,
}
_IBAN_START = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2}\d{2}")  # "de89 3704 ...": typed in lower case too
_BASE36 = {ord(ch): str(int(ch, 36)) for ch in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"}  # A -> 10 ... Z -> 35


def _iban_body(length: int) -> re.Pattern[str]:
    """An IBAN of ``length`` letters and digits in groups of four, one space allowed between groups, with
    no letter or digit right after it: one match, where a loop over the characters cost more than the
    rest of the scrubber on a sentence holding an IBAN."""
    groups, rest = divmod(length, 4)
    tail = f"(?: ?[A-Za-z0-9]{{{rest}}})" if rest else ""
    return re.compile(f"[A-Za-z0-9]{{4}}(?: ?[A-Za-z0-9]{{4}}){{{groups - 1}}}{tail}(?![^\\W_])")


_IBAN_BODIES = {country: _iban_body(length) for country, length in IBAN_LENGTHS.items()}


def _iban_ok(compact: str) -> bool:
    """The mod-97 check: letters become 10-35, the first four characters move to the end."""
    return int((compact[4:] + compact[:4]).translate(_BASE36)) % 97 == 1


def _ibans(text: str) -> Iterator[Span]:
    for m in _IBAN_START.finditer(text):
        body = _IBAN_BODIES.get(m.group(0)[:2].upper())
        iban = body.match(text, m.start()) if body else None
        if iban and _iban_ok(iban.group(0).replace(" ", "").upper()):
            yield Span(m.start(), iban.end(), "iban")


# -- SSNs ----------------------------------------------------------------------------------------
_SSN_CUED = re.compile(
    r"(?i:\b(?:ssn|ss\#|social\s+security(?:\s+(?:number|no\.?|\#))?)\W{0,4}(?:is\s+)?)"
    r"(?P<bare>\d{3}[ -]?\d{2}[ -]?\d{4})(?!\w)"
)


def _cued_ssns(text: str) -> Iterator[Span]:
    for m in _SSN_CUED.finditer(text):
        yield Span(m.start("bare"), m.end("bare"), "ssn")
