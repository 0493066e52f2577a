"""Realistic stand-ins for scrubbed PII in training text.

A scrubbed example still says "Call [PHONE] if stuck."; a model trained on it would learn to emit
placeholders, and dropping every such example threw away most corrections from support agents. So the
placeholders in an example's query, answer and rejected output are replaced by surrogates from Faker:
the model learns the shape of an answer without anyone's data.

- **Seeded per example**: each surrogate comes from a Faker seeded by (example id, kind, n), so the same
  feedback gives byte-identical datasets (with the same Faker version, pinned in pyproject.toml).
- **Consistent within an example**: the original values are gone after scrubbing, so which
  placeholders stood for the same value cannot be known. The rule: the n-th ``[EMAIL]`` of each text of
  an example gets the same surrogate, so "my email is [EMAIL]" -> "write to [EMAIL]" stays one address
  in query and answer; two placeholders of a kind within one text get two different surrogates.
- **Safe values**: e-mails at example.com/org/net, phones in the fictional 555-01xx range, private IPs,
  secrets shaped ``sk-example-...``; names, addresses, cards, IBANs and SSNs as Faker makes them.

Every kind of ``PLACEHOLDERS`` has a surrogate, so no example is dropped for the PII it held.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING

from flywheel.feedback.scrub import PLACEHOLDERS

if TYPE_CHECKING:
    from faker import Faker

SURROGATES: dict[str, Callable[[Faker], str]] = {
    "secret": lambda f: "sk-example-" + f.hexify("^" * 24),
    "iban": lambda f: f.iban(),
    "card": lambda f: f.credit_card_number(),
    "ssn": lambda f: f.ssn(),
    "email": lambda f: f.safe_email(),
    "national_id": lambda f: f.bothify("ID-####-????").upper(),
    "ip": lambda f: f.ipv4_private(),
    "mac": lambda f: f.mac_address(),
    "dob": lambda f: f.date_of_birth(minimum_age=18, maximum_age=90).isoformat(),
    "phone": lambda f: f.numerify("+1 ### 555 01##"),
    "address": lambda f: f.street_address(),
    "name": lambda f: f"{f.first_name()} {f.last_name()}",
}
PLACEHOLDER = re.compile("|".join(re.escape(p) for p in PLACEHOLDERS.values()))
_KIND_OF = {placeholder: kind for kind, placeholder in PLACEHOLDERS.items()}


@cache
def _faker() -> Faker:
    from faker import Faker

    return Faker("en_US")


def _seed(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()[:8], "big")


@dataclass
class SurrogateTable:
    """The stand-ins of one example, made on first use: (kind, n) -> value."""

    example_id: str
    values: dict[tuple[str, int], str] = field(default_factory=dict)

    def value(self, kind: str, n: int) -> str:
        if (kind, n) not in self.values:
            fake = _faker()
            fake.seed_instance(_seed(self.example_id, kind, n))
            self.values[kind, n] = SURROGATES[kind](fake)
        return self.values[kind, n]

    def fill(self, text: str) -> str:
        """``text`` with its n-th placeholder of each kind replaced by this example's n-th surrogate."""
        seen: Counter[str] = Counter()

        def replace(m: re.Match[str]) -> str:
            kind = _KIND_OF[m.group(0)]
            seen[kind] += 1
            return self.value(kind, seen[kind] - 1)

        return PLACEHOLDER.sub(replace, text)

    def kinds(self) -> Counter[str]:
        """How many distinct surrogates of each kind this example got."""
        return Counter(kind for kind, _ in self.values)
