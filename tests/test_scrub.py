"""PII scrubbing patterns, including what must be left alone."""

from __future__ import annotations

import pytest

from flywheel.feedback.scrub import DETECTORS, find_pii, merged, scrub_text, scrub_value


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
        ("aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "secret", "[SECRET]"),
        ("secret=wJalrXUtnFEMI+K7MDENG/bPxRfiCYEXAMPLEKEY.", "secret", "[SECRET]"),
        ("iban DE89 3704 0044 0532 0130 00 please", "iban", "[IBAN]"),
        ("pay to GB82WEST12345698765432.", "iban", "[IBAN]"),
        ("my SSN 219099999", "ssn", "[SSN]"),
        ("social security number 219-09-9999", "ssn", "[SSN]"),
        ("the form says 123-45-6789", "ssn", "[SSN]"),
        ("ship it to 1600 Amphitheatre Parkway, Mountain View", "address", "[ADDRESS]"),
        ("at 221B Baker Street", "address", "[ADDRESS]"),
        ("12 Oak Drive and the garage", "address", "[ADDRESS]"),
        ("12 Rue de Rivoli, Paris", "address", "[ADDRESS]"),
        ("Hauptstraße 5, Berlin", "address", "[ADDRESS]"),
        ("ask Jane Doe about it", "name", "[NAME]"),
        ("Maria Garcia wrote", "name", "[NAME]"),
        ("Mark Johnson wrote", "name", "[NAME]"),
        ("talk to Dr. Okonkwo", "name", "[NAME]"),
        ("hello, my name is Xavier Quill", "name", "[NAME]"),
        ("I am Tom and I need help", "name", "[NAME]"),
        ("Thanks,\nJane", "name", "[NAME]"),
        ("call  me jan, thanks", "name", "[NAME]"),  # two spaces: the gate once wanted exactly "call me"
        ("whitelist aa:bb:cc:dd:ee:ff please", "mac", "[MAC]"),  # no digit: MACs were skipped with numbers
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
        '{"ts": "2026-11-10 10:00:00", "line": 3}',  # a timestamp in a quarantined line is not a phone
        "the Pro plan costs $12 per month, 50 GB uploads",
        "meeting at 12:30, ratio 3:4",
        "account 4411 and invoice INV-2024-0001",
        "4111 1111 1111 1112 fails the Luhn check",
        "price 1,299.00 EUR, ticket 987654, call back at 9:45 on 05/06/2024",
        "DE88 3704 0044 0532 0130 00 has a wrong checksum",
        "May I export my data? Will you help? New York office, Pro plan, Monday April 3",
        "Grace Period ends in June; Summer Sale; Mark Complete; Edit Settings",
        "The Team plan has 2 Nimbus Drive folders and 3 Google Drive accounts",
        "Use Settings > Security, then Reset password. Does Nimbus Pro support it?",
        "version 2.14.4 of pydantic, build 1234-5678",
    ],
)
def test_ordinary_numbers_and_words_are_left_alone(text: str) -> None:
    found: set[str] = set()
    assert scrub_text(text, found) == text and not found


def test_nested_metadata_is_scrubbed() -> None:
    found: set[str] = set()
    out = scrub_value({"a": ["x@y.io", {"b": "10.0.0.1"}], "n": 3}, found)
    assert out == {"a": ["[EMAIL]", {"b": "[IP]"}], "n": 3} and found == {"email", "ip"}


def test_a_whole_jwt_is_one_secret() -> None:
    jwt = (
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkphbmUifQ"
        ".dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
    )
    found: set[str] = set()
    assert scrub_text(f"token {jwt} expired", found) == "token [SECRET] expired" and found == {"secret"}


def test_overlapping_kinds_leave_no_part_of_a_value() -> None:
    # An IBAN whose digits also read as a card number: one placeholder, nothing of it left over.
    found: set[str] = set()
    out = scrub_text("IBAN GB82 WEST 1234 5698 7654 32 thanks", found)
    assert out == "IBAN [IBAN] thanks" and found == {"iban"}


def test_scrubbing_twice_changes_nothing() -> None:
    text = "Jane Doe (jane@x.io, SSN 219099999) lives at 221B Baker Street, IBAN GB82WEST12345698765432"
    once = scrub_text(text)
    assert scrub_text(once) == once and "[NAME]" in once and "[ADDRESS]" in once


def _long_token(n: int) -> str:
    return ("abcdefghij-" * (n // 11 + 1))[:n]


def test_time_grows_linearly_with_a_long_token() -> None:
    """A scaling check, not a speed target (that is benchmarks/bench_scrub.py): 40 times the text may
    take at most 100 times as long (quadratic is 1,600 times: a 200 KB dashed token took over a minute),
    or half a second, whichever is more, so a loaded machine cannot make it fail."""
    import time

    def seconds(n: int) -> float:
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            scrub_text(_long_token(n))
            best = min(best, time.perf_counter() - start)
        return best

    small, large = seconds(5_000), seconds(200_000)
    assert large < max(100 * small, 0.5), (small, large)


# Issue 27 part 6: kinds the scrubber missed (each case fails on the scrubber it reviewed).
@pytest.mark.parametrize(
    ("text", "value", "placeholder"),
    [
        ("I spoke with Tavrin Kolbeck yesterday", "Tavrin Kolbeck", "[NAME]"),  # on no name list
        ("Kind regards, Ganmikol Draarny", "Ganmikol Draarny", "[NAME]"),
        ("hi, my name is jan kowalski and i cannot log in", "jan kowalski", "[NAME]"),
        ("Alberico Seddio answered my ticket", "Alberico Seddio", "[NAME]"),  # Italian list
        ("refund to iban de89 3704 0044 0532 0130 00 please", "de89 3704 0044 0532 0130 00", "[IBAN]"),
        ("iban pl61109010140000071219812874", "pl61109010140000071219812874", "[IBAN]"),
        ("the key ASIAPN6KOCTQ7MSXNYV2 stopped working", "ASIAPN6KOCTQ7MSXNYV2", "[SECRET]"),
        ("write to josé.garcía@correo.es", "josé.garcía@correo.es", "[EMAIL]"),
        ("or to info@bücher.de", "info@bücher.de", "[EMAIL]"),
        ("my router's MAC is 5c:be:e3:89:12:0e", "5c:be:e3:89:12:0e", "[MAC]"),
        ("device 18-F6-95-90-12-AA keeps dropping", "18-F6-95-90-12-AA", "[MAC]"),
        ("born 12/03/1987", "12/03/1987", "[DOB]"),
        ("DOB: 1987-03-12", "1987-03-12", "[DOB]"),
        ("geboren am 12.03.1987", "12.03.1987", "[DOB]"),
        ("codice fiscale STRMRS83B12H989G is on file", "STRMRS83B12H989G", "[ID]"),
        ("PESEL: 17290781243", "17290781243", "[ID]"),
        ("I live at 377 michael springs", "377 michael springs", "[ADDRESS]"),
        ("we moved to ulica Rolna 83 in May", "ulica Rolna 83", "[ADDRESS]"),
        ("Please ship it to 48, rue Margaret Vasseur", "48, rue Margaret Vasseur", "[ADDRESS]"),
        ("billing address: Borgo Galiazzo, 94", "Borgo Galiazzo, 94", "[ADDRESS]"),
        ("I live at 94767 Meadows Drive Apt. 868", "94767 Meadows Drive Apt. 868", "[ADDRESS]"),
    ],
)
def test_kinds_issue_27_found_missing_are_caught(text: str, value: str, placeholder: str) -> None:
    assert scrub_text(text) == text.replace(value, placeholder)  # the whole value, nothing of it left


@pytest.mark.parametrize(
    "text",
    [
        "Order ORD-2016-457350 was charged 8,426.00 EUR.",  # an id's digits after a dash are no phone
        "Released on 1987-03-12 as v1.2.3, shipped on 12/03/2024.",  # dates with no birth cue
        "My name is not shown on the invoice. Call me back tomorrow please.",
        "I spoke with support twice; my manager approved the upgrade. Regards, the support team",
        "The parcel was left at the door 3 times.",
        "Aspect ratio 16:9 and timestamp 12:30:45 are off; our ASIA region is slow.",
    ],
)
def test_look_alikes_of_the_new_kinds_stay(text: str) -> None:
    assert scrub_text(text) == text


@pytest.mark.parametrize(
    "text",
    [
        "Jane Doe (jane@x.io, SSN 219099999) lives at 221B Baker Street, IBAN GB82WEST12345698765432",
        "Thanks,\nJane",
        "Dr. Okonkwo told me",
        "My colleague Tavrin Kolbeck, cc Ganmikol",
        "my name is jan kowalski",
        "name: anna maria",
        "call  me jan",
        "CALL\tME bob please",  # however much white space
        "device AABB.CCDD.EEFF keeps dropping",
        "whitelist aa:bb:cc:dd:ee:ff",  # MAC addresses without a digit
        "born 12/03/1987, DNI 12345678Z, I live at 377 michael springs",
        "from 192.168.10.4 and 2001:db8::8a2e:370:7334",
        "Hauptstraße 5, Calle Mayor 5, 12 Rue de Rivoli",
        "card 4111-1111-1111-1111, call +1 (415) 555-0132",
        "token ghp_0123456789abcdefghijklmnopqrstuvwxyz and Bearer eyJhbGciOiJIUzI1NiJ9.abc",
        "Order 12345678 shipped on 2024-05-01, version 2.14.4",
        "May I export my data on Monday?",
        "",
    ],
)
def test_gates_only_save_time(text: str) -> None:
    """Features, gates and cue words let a detector be skipped, never change what is found: every
    detector run on the whole text finds the same spans."""
    everything = [span for detector in DETECTORS for span in detector.find(text)]
    assert find_pii(text) == merged(everything)
