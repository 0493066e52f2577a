"""PII scrubbing patterns, including what must be left alone."""

from __future__ import annotations

import pytest

from flywheel.feedback.scrub import scrub_text, scrub_value


@pytest.mark.parametrize(
    ("text", "kind", "placeholder"),
    [
        ("write to jane.doe+tag@mail.example.co.uk today", "email", "[EMAIL]"),
        ("call +1 (415) 555-0132 now", "phone", "[PHONE]"),
        ("or 020 7946 0958", "phone", "[PHONE]"),
        ("card 4111-1111-1111-1111", "card", "[CARD]"),
        ("from 192.168.10.4", "ip", "[IP]"),
        ("v6 2001:db8::8a2e:370:7334 here", "ip", "[IP]"),
        ("key sk-proj-abcdefghijklmnopQRST1234", "secret", "[SECRET]"),
        ("aws AKIAIOSFODNN7EXAMPLE", "secret", "[SECRET]"),
        ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.abc", "secret", "[SECRET]"),
        ("token ghp_0123456789abcdefghijklmnopqrstuvwxyz", "secret", "[SECRET]"),
    ],
)
def test_pii_is_replaced_and_recorded(text: str, kind: str, placeholder: str) -> None:
    found: set[str] = set()
    out = scrub_text(text, found)
    assert placeholder in out and kind in found


@pytest.mark.parametrize(
    "text",
    [
        "order 12345678 shipped on 2024-05-01",
        "the Pro plan costs $12 per month, 50 GB uploads",
        "meeting at 12:30, ratio 3:4",
        "account 4411 and invoice INV-2024-0001",
        "4111 1111 1111 1112 fails the Luhn check",
    ],
)
def test_ordinary_numbers_and_words_are_left_alone(text: str) -> None:
    found: set[str] = set()
    assert scrub_text(text, found) == text and not found


def test_nested_metadata_is_scrubbed() -> None:
    found: set[str] = set()
    out = scrub_value({"a": ["x@y.io", {"b": "10.0.0.1"}], "n": 3}, found)
    assert out == {"a": ["[EMAIL]", {"b": "[IP]"}], "n": 3} and found == {"email", "ip"}
