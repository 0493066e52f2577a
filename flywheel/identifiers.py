"""The grammar of identifier fields: ids, not text, so PII never hides in a field that is not scrubbed.

``event_id``, ``prompt_version``, ``index_version``, ``model`` and ``metadata`` keys are stored as they
come (they are keys, versions and names the loop groups by), so they must be identifiers:

- IDENTIFIER: a letter or digit, then up to 255 letters, digits or ``. _ : / @ + # = ~ -`` (no spaces).
  It admits UUIDs, ULIDs, ``ft:gpt-4o-mini:org::abc``, ``meta-llama/Llama-3.1-8B-Instruct``,
  ``anthropic.claude-3-5-sonnet-20240620-v1:0``, ``claude-3-5-sonnet@20240620``, ``prompt-v3``, ``1``,
  ``v2024.06.01``, ``ev-000123``; letters and digits may be any script's.
- DOCUMENT_ID (``context_ids`` items): the knowledge index's chunk ids are ``<document id>#<n>``, and a
  document id is a file's path under the knowledge directory, so single spaces between words, commas,
  parentheses, apostrophes and ``&`` are allowed as well (``Refund policy (2024).md#0``), up to 512.

A value that fits the grammar is still refused when the scrubber finds personal data in it (an e-mail
address, a phone number, an IBAN, a card, an SSN, an IP address, a street address, a name) or it starts
like an API key (``sk-``, ``AKIA``, ``ghp_``, ``xox?-``, ``AIza``, a JWT). The scrubber's generic "long
token" rule is not applied: UUIDs, hashes and ULIDs are what ids look like. A run of digits without
separators or ``+`` is a counter or a timestamp, not a phone number (a card number
that passes the Luhn check is still refused). Messages name the rule, never the value.
"""

from __future__ import annotations

import re

from flywheel.feedback.scrub import find_pii

_ID_CHARS = r"\w.:/@+#=~\-"
IDENTIFIER = re.compile(rf"[^\W_][{_ID_CHARS}]{{0,255}}", re.UNICODE)
DOCUMENT_ID = re.compile(rf"[^\W_](?:[{_ID_CHARS},()'&]| (?=[^ ])){{0,511}}", re.UNICODE)
IDENTIFIER_RULE = (
    "an identifier: a letter or digit, then up to 255 letters, digits or . _ : / @ + # = ~ - "
    "(no spaces), holding no personal data"
)
DOCUMENT_ID_RULE = (
    "a document id: a letter or digit, then up to 511 letters, digits, single spaces or "
    ". _ : / @ + # = ~ - , ( ) ' &, holding no personal data"
)
_KEY_PREFIX = re.compile(r"(?:sk|pk|rk)-|AKIA|ASIA|gh[pousr]_|xox[abprs]-|AIza|eyJ|Bearer")
_WHAT = {
    "email": "an e-mail address",
    "iban": "an IBAN",
    "card": "a card number",
    "ssn": "a social security number",
    "ip": "an IP address",
    "phone": "a phone number",
    "address": "a street address",
    "name": "a personal name",
    "national_id": "a national id number",
    "mac": "a MAC address",
    "dob": "a date of birth",
}


def personal_data(value: str) -> str | None:
    """What personal data (or secret) ``value`` holds, in words, or None; never the value itself."""
    if _KEY_PREFIX.match(value):
        return "a secret key"
    kinds = {
        span.kind
        for span in find_pii(value)
        if span.kind != "secret" and not (span.kind == "phone" and value[span.start : span.end].isdigit())
    }
    return " and ".join(sorted(_WHAT[k] for k in kinds)) or None


def identifier_problem(value: str, pattern: re.Pattern[str] = IDENTIFIER, rule: str = IDENTIFIER_RULE) -> str | None:
    """Why ``value`` is not an identifier of the given grammar, naming the rule, never the value."""
    if not pattern.fullmatch(value):
        return f"must be {rule}"
    if (found := personal_data(value)) is not None:
        return f"must be {rule}; this one looks like {found}"
    return None
