"""PII recall, clean-text false positives and speed of the scrubber, on seeded generated feedback.

Issue 27 found values the scrubber let through by reading it; this measures instead. Faker (offline,
seeded) makes values in eight locales, each planted in a feedback sentence; clean sentences hold
look-alikes (versions, order ids, prices, dates that are no birthdays, times, SKUs, URLs, cue words
followed by ordinary words) that must come through unchanged.

Definitions, per scrubber (a function from a text to the character spans it would replace):

- A planted value is *caught* when every one of its identifying characters lies inside a replaced
  span. Its identifying characters are its letters and digits (any script); separators, spaces and
  punctuation inside it (``-``, ``.``, ``@``, ``:``, ``/``, ``(``) identify nothing and may survive. A
  title before a name (``Dr.``) and a cue (``born``, ``SSN``) are not part of the value. So a value
  half replaced, or a card whose last group survives, counts as missed.
- *Recall* of a kind: caught values / planted values of that kind; overall: over all values.
- *False positives*: the share of clean sentences in which the scrubber replaces anything.
- *Throughput*: UTF-8 megabytes per second when every sentence (planted and clean) is scrubbed as its
  own field, one call each, in this one process; the best of three passes, counted in the CPU time of
  the scrubbing thread (one core's work, so other jobs on the machine do not change it; the wall-clock
  figure is reported beside it as ``wall_mb_per_s``).

Scrubbers measured: ``flywheel`` (this tree's), ``baseline`` (the scrubber at ``BASELINE_REV``, the
one issue 27 reviewed, run from ``git archive`` in a child process) and ``presidio`` (Presidio's
analyzer with its predefined recognizers, spaCy's blank English pipeline instead of a model, which
cannot be downloaded here; measured only when ``presidio-analyzer`` is installed: it is not a
dependency). Targets apply to ``flywheel``: recall >= 0.97 overall and >= 0.9 per kind, false
positives <= 2 %, >= 2 MB/s. Figures go to ``benchmarks/out/pii.json``.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import string
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from faker import Faker

from benchmarks._util import out_dir, parse_args, report

SEED = 27
PER_KIND = 150
CLEAN = 1500
LOCALES = ("en_US", "de_DE", "fr_FR", "es_ES", "it_IT", "nl_NL", "pl_PL", "pt_BR")
BASELINE_REV = "568903b"  # the scrubber as issue 27 part 6 reviewed it
ROOT = Path(__file__).resolve().parent.parent

Spans = list[tuple[int, int]]


@dataclass(frozen=True)
class Case:
    """A sentence and, unless it is clean, the planted value's kind and character range."""

    text: str
    kind: str = "clean"
    start: int = 0
    end: int = 0


# -- the generated corpus -------------------------------------------------------------------------------
class Gen:
    """One seeded random source and one seeded Faker per locale."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.fakers = {loc: Faker(loc) for loc in LOCALES}
        for i, fake in enumerate(self.fakers.values()):
            fake.seed_instance(seed + i)

    def fake(self, locales: tuple[str, ...] = LOCALES) -> Faker:
        return self.fakers[self.rng.choice(locales)]

    def pick(self, items: list[str] | tuple[str, ...]) -> str:
        return self.rng.choice(items)

    def chars(self, alphabet: str, n: int) -> str:
        return "".join(self.rng.choice(alphabet) for _ in range(n))


def plant(template: str, value: str, kind: str) -> Case:
    """Put ``value`` where ``template`` says ``{}``."""
    head, tail = template.split("{}")
    return Case(head + value + tail, kind, len(head), len(head) + len(value))


def _name(g: Gen) -> tuple[str, str]:
    fake = g.fake()
    name = f"{fake.first_name()} {fake.last_name()}"
    return name, g.pick(
        [
            "{} from accounting called me about the invoice.",
            "Please forward this to {} in billing.",
            "Dr. {} told me to file a ticket.",
            "{} answered my ticket within minutes.",
            "Hi, I'm {} and the export fails.",
            "Thanks, {}",
            "I spoke with {} on the phone yesterday.",
            "My manager {} approved the upgrade.",
            "Can {} get admin rights?",
            "The invoice went to {} by mistake.",
        ]
    )


_SYLLABLES = "ta vrin kol beck mi ra zen dor qui lo sa vet ny ar bel tho rix gan ul fe dra mo kes".split()


def _invented(g: Gen) -> str:
    """A name on no list: the only evidence is the cue before it."""

    def word() -> str:
        return "".join(g.pick(_SYLLABLES) for _ in range(g.rng.randint(2, 3))).capitalize()

    return f"{word()} {word()}"


def _name_cued(g: Gen) -> tuple[str, str]:
    name = _invented(g)
    if g.rng.random() < 0.25:  # people type their own name in lower case after a clear cue
        return name.lower(), g.pick(
            ["hi, my name is {} and i cannot log in", "name: {}", "call me {}, thanks", "my name is {}, account holder"]
        )
    return name, g.pick(
        [
            "I spoke with {} yesterday and nothing happened.",
            "My colleague {} reported the same bug.",
            "Contact person: {}",
            "Signed, {}",
            "My manager {} approved it.",
            "According to {}, the refund is due.",
            "cc {}",
            "The ticket was assigned to {} last week.",
            "The agent, {}, was very helpful.",
            "My wife {} also uses the app.",
            "Regards,\n{}",
            "Best wishes, {}",
            "Kind regards, {}",
            "Ask for {} at the front desk.",
            "Written by {} on behalf of the team.",
            "Customer: {}",
        ]
    )


_IDN = ["correo.es", "bücher.de", "café.fr", "mañana.es", "münchen.de", "exämple.com", "post.pl", "żółw.pl"]


def _email(g: Gen) -> tuple[str, str]:
    fake = g.fake()
    if g.rng.random() < 0.5:
        value = fake.email()
    else:
        first, last = (n.lower().replace(" ", "") for n in (fake.first_name(), fake.last_name()))
        value = f"{first}{g.pick(['.', '_', ''])}{last}@{g.pick(_IDN)}"
    return value, g.pick(
        [
            "Please reply to {} instead.",
            "My login is {}",
            "send the receipt to {}.",
            "I changed my email to {} last week.",
            "contact: {}",
        ]
    )


_INTL = [
    "+44 20 7946 0958",
    "+49 30 12345678",
    "+33 6 12 34 56 78",
    "+34 612 345 678",
    "+39 347 123 4567",
    "+31 6 12345678",
    "+48 512 345 678",
    "+55 11 91234-5678",
    "0049 89 1234567",
    "+1-415-555-0132",
]


def _phone(g: Gen) -> tuple[str, str]:
    if g.rng.random() < 0.3:
        value = "".join(
            ch if not ch.isdigit() or i < 3 else str(g.rng.randint(0, 9)) for i, ch in enumerate(g.pick(_INTL))
        )
    else:
        value = g.fake().phone_number().split("x")[0].strip()  # the extension identifies nothing on its own
    return value, g.pick(
        [
            "Call me back on {} please.",
            "My number is {}",
            "reach me at {} after 5pm",
            "Phone: {}",
            "I tried calling from {} twice.",
        ]
    )


def _group(value: str, size: int = 4) -> str:
    return " ".join(value[i : i + size] for i in range(0, len(value), size))


def _iban(g: Gen) -> tuple[str, str]:
    value = g.fake().iban()
    if g.rng.random() < 0.5:
        value = _group(value)
    if g.rng.random() < 0.4:
        value = value.lower()
    return value, g.pick(
        [
            "Refund to IBAN {} please.",
            "my iban is {}",
            "Bank account: {}",
            "I paid from {} but nothing arrived.",
            "iban {}",
        ]
    )


def _card(g: Gen) -> tuple[str, str]:
    value = g.fake().credit_card_number(card_type=g.pick(["visa", "mastercard", "amex", "discover", "jcb"]))
    sep = g.pick(["", " ", "-"])
    if sep:
        value = sep.join([value[:4], value[4:10], value[10:]]) if len(value) == 15 else _group(value).replace(" ", sep)
    return value, g.pick(
        ["Charged twice on card {}.", "my card number is {}", "Card: {} exp 09/27", "the payment with {} failed"]
    )


def _national_id(g: Gen) -> tuple[str, str]:
    loc = g.pick(["en_US", "en_US", "fr_FR", "it_IT", "nl_NL", "pl_PL", "pt_BR", "es_ES"])
    fake = g.fakers[loc]
    if loc == "en_US":
        value, cue = fake.ssn(), g.pick(["SSN {}", "my social security number is {}", "the form shows {}", "SSN: {}"])
    elif loc == "fr_FR":
        value, cue = fake.ssn(), "numéro de sécurité sociale : {}"
    elif loc == "it_IT":
        value, cue = fake.ssn(), g.pick(["codice fiscale {}", "my tax code is {}"])
    elif loc == "nl_NL":
        value, cue = fake.ssn(), "BSN {}"
    elif loc == "pl_PL":
        value, cue = fake.ssn(), "PESEL: {}"
    elif loc == "pt_BR":
        value, cue = fake.cpf(), "CPF {}"
    else:
        value, cue = fake.nif(), "DNI {}"
    return value, cue + g.pick([" is on file.", ", please update it.", ""])


_B32 = string.ascii_uppercase + "234567"
_B64 = string.ascii_letters + string.digits + "+/"
_ALNUM = string.ascii_letters + string.digits


def _aws_key(g: Gen) -> tuple[str, str]:
    if g.rng.random() < 0.6:
        return g.pick(["AKIA", "ASIA"]) + g.chars(_B32, 16), g.pick(
            ["aws_access_key_id = {}", "the key {} stopped working", "Access key: {}", "I pasted {} by mistake"]
        )
    return g.chars(_B64, 40), g.pick(
        ["aws_secret_access_key={}", "secret key {} leaked", "my secret is {}", "here it is: {}"]
    )


def _api_key(g: Gen) -> tuple[str, str]:
    value = g.pick(
        [
            "ghp_" + g.chars(_ALNUM, 36),
            f"xoxb-{g.chars(string.digits, 12)}-{g.chars(string.digits, 13)}-{g.chars(_ALNUM, 24)}",
            "AIza" + g.chars(_ALNUM + "-_", 35),
            "sk-" + g.chars(_ALNUM, 48),
            "sk-proj-" + g.chars(_ALNUM + "-_", 56),
        ]
    )
    return value, g.pick(["my token is {}", "API key: {}", "export TOKEN={}", "it rejects {} since Monday"])


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _jwt(g: Gen) -> tuple[str, str]:
    head = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = _b64url(json.dumps({"sub": g.chars(string.digits, 8), "name": g.fake().name()}).encode())
    return f"{head}.{body}.{_b64url(g.rng.randbytes(32))}", g.pick(
        ["Bearer {}", "token={}", "my session token {} expired", "jwt: {}"]
    )


def _ip(g: Gen) -> tuple[str, str]:
    fake = g.fake(("en_US",))
    value = g.pick([fake.ipv4(), fake.ipv4_private(), fake.ipv6(), f"2001:db8::{g.chars('0123456789abcdef', 4)}"])
    return value, g.pick(["Requests from {} are blocked.", "my IP is {}", "server {} times out", "from {}"])


def _mac(g: Gen) -> tuple[str, str]:
    value = g.fake(("en_US",)).mac_address()
    style = g.rng.randrange(4)
    if style == 1:
        value = value.upper().replace(":", "-")
    elif style == 2:
        value = value.upper()
    elif style == 3:
        raw = value.replace(":", "")
        value = ".".join(raw[i : i + 4] for i in range(0, 12, 4))
    return value, g.pick(
        ["my router's MAC is {}", "device {} keeps dropping", "MAC address: {}", "whitelist {} please"]
    )


def _address(g: Gen) -> tuple[str, str]:
    fake = g.fake()
    value = ""
    while not any(ch.isdigit() for ch in value):
        value = fake.street_address()
    if g.rng.random() < 0.25:
        value = value.lower()
    return value, g.pick(
        [
            "Please ship it to {} instead.",
            "My address is {}",
            "I live at {}",
            "The parcel was left at {} by mistake.",
            "billing address: {}",
            "we moved to {} in May",
        ]
    )


def _dob(g: Gen) -> tuple[str, str]:
    day = g.fake(("en_US",)).date_of_birth(minimum_age=18, maximum_age=90)
    value = g.pick(
        [
            day.strftime("%d/%m/%Y"),
            day.isoformat(),
            day.strftime("%m/%d/%Y"),
            day.strftime("%d.%m.%Y"),
            day.strftime("%B %d, %Y").replace(" 0", " "),
            day.strftime("%d %B %Y").lstrip("0"),
        ]
    )
    return value, g.pick(
        [
            "born {}",
            "DOB: {}",
            "date of birth {}",
            "my birthday is {}",
            "geboren am {}",
            "né le {}",
            "fecha de nacimiento: {}",
            "Date of Birth: {}",
            "I was born on {}.",
        ]
    )


KINDS: dict[str, Callable[[Gen], tuple[str, str]]] = {
    "name": _name,
    "name_cued": _name_cued,
    "email": _email,
    "phone": _phone,
    "iban": _iban,
    "card": _card,
    "national_id": _national_id,
    "aws_key": _aws_key,
    "api_key": _api_key,
    "jwt": _jwt,
    "ip": _ip,
    "mac": _mac,
    "address": _address,
    "dob": _dob,
}

_CLEAN = [
    "Upgraded to version {ver} and the sync stopped.",
    "The v{ver} release broke dark mode.",
    "Order #{order} never arrived.",
    "Order ORD-{year}-{n6} was charged {price}.",
    "It costs {price} per month, too much.",
    "Shipped on {date}, still waiting.",
    "The meeting is on {date} at {time}.",
    "Invoice INV-{year}-{n4} is wrong.",
    "SKU {sku} is out of stock.",
    "Product code {code} does not scan.",
    "Battery drops {pct} per hour.",
    "See {url} for the steps.",
    "It happens at {time} every day.",
    "Build {n4}-{n4} fails on Windows 11.",
    "Error code E{n4} when uploading.",
    "Port {port} is closed, HTTP 404 after that.",
    "Room {n3}, floor 3, page 12 of the manual.",
    "I am unable to log in since {date}.",
    "This is broken again.",
    "Thanks, that worked!",
    "Regards, the support team",
    "My name is not shown on the invoice.",
    "I spoke with support twice.",
    "My manager approved the upgrade.",
    "Contact person field is empty.",
    "I live in this app all day.",
    "Signed up last week, still no email.",
    "Call me back tomorrow please.",
    "Best wishes to the team!",
    "Customer since {year}, never had this.",
    "Ask for a refund at checkout.",
    "The agent was very helpful.",
    "Our ASIA region is slow, EU is fine.",
    "Aspect ratio 16:9 and timestamp 12:30:45 are off.",
    "Released on {date} as v{ver}.",
    "Tracking 1Z{n6}{n4} shows nothing.",
    "The file was created {date} and is {n3} MB.",
    "We have {n2} seats on the Pro plan at {price}.",
    "May I export my data on Monday?",
    "Grace Period ends in June, Summer Sale starts.",
    "Ticket {n6} is still open.",
    "Version {ver} of the iOS app, iPhone 15 Pro.",
    "The colour #{hex} is wrong in the header.",
    "Model XJ-{n4} overheats.",
    "2FA codes arrive 30 seconds late, Wi-Fi 6 router.",
    "Due {date}, paid {price} on {date}.",
    "Room 101 projector, 1080p.",
]


def _clean(g: Gen) -> str:
    fake = g.fake(("en_US",))
    fill = {
        "ver": f"{g.rng.randint(1, 20)}.{g.rng.randint(0, 30)}.{g.rng.randint(0, 99)}",
        "order": str(g.rng.randint(10_000, 99_999_999)),
        "year": str(g.rng.randint(2015, 2026)),
        "n6": str(g.rng.randint(100_000, 999_999)),
        "n4": str(g.rng.randint(1000, 9999)),
        "n3": str(g.rng.randint(100, 999)),
        "n2": str(g.rng.randint(2, 99)),
        "price": g.pick(
            [
                f"${g.rng.randint(1, 2000)}.{g.rng.randint(0, 99):02d}",
                f"€{g.rng.randint(1, 500)},{g.rng.randint(0, 99):02d}",
                f"{g.rng.randint(1, 9)},{g.rng.randint(100, 999)}.00 EUR",
            ]
        ),
        "date": g.pick(
            [fake.date(), fake.date(pattern="%d/%m/%Y"), fake.date(pattern="%m/%d/%Y"), fake.date(pattern="%B %d, %Y")]
        ),
        "time": g.pick([fake.time(pattern="%H:%M"), f"{g.rng.randint(1, 12)}:{g.rng.randint(0, 59):02d} am"]),
        "sku": "-".join(
            [g.chars(string.ascii_uppercase, 3), str(g.rng.randint(10_000, 99_999)), g.chars(string.ascii_uppercase, 2)]
        ),
        "code": f"{g.chars(string.ascii_uppercase, 2)}{g.rng.randint(100, 9999)}",
        "pct": f"{g.rng.randint(1, 99)}.{g.rng.randint(0, 9)}%",
        "url": g.pick(
            [
                "https://docs.example.com/v2/setup?tab=api",
                "https://status.example.org/incidents/2024-05",
                "www.example.com/pricing#pro",
            ]
        ),
        "port": str(g.rng.randint(1024, 65535)),
        "hex": g.chars("0123456789abcdef", 6),
    }
    return g.pick(_CLEAN).format(**fill)


def corpus(seed: int = SEED, per_kind: int = PER_KIND, clean: int = CLEAN) -> list[Case]:
    """Planted sentences for every kind, then clean ones; the same for a seed."""
    g = Gen(seed)
    cases = [
        plant(template, value, kind)
        for kind, make in KINDS.items()
        for _ in range(per_kind)
        for value, template in [make(g)]
    ]
    return cases + [Case(_clean(g)) for _ in range(clean)]


# -- measuring -----------------------------------------------------------------------------------------
def caught(case: Case, spans: Spans) -> bool:
    """Every letter and digit of the planted value lies inside a replaced span."""
    covered: set[int] = set()
    for start, end in spans:
        covered.update(range(max(start, case.start), min(end, case.end)))
    return all(i in covered for i in range(case.start, case.end) if case.text[i].isalnum())


def measure(find: Callable[[str], Spans], cases: list[Case]) -> dict[str, object]:
    """Recall per kind and overall, the clean-text false-positive rate and throughput."""
    hits: dict[str, list[int]] = {kind: [0, 0] for kind in KINDS}
    false_pos = clean = 0
    for case in cases:
        spans = find(case.text)
        if case.kind == "clean":
            clean += 1
            false_pos += bool(spans)
        else:
            hits[case.kind][0] += caught(case, spans)
            hits[case.kind][1] += 1
    texts = [case.text for case in cases]
    size = sum(len(t.encode()) for t in texts)
    passes = [_timed(find, texts) for _ in range(3)]
    best, best_wall = min(cpu for cpu, _ in passes), min(wall for _, wall in passes)
    total = sum(h for h, _ in hits.values()), sum(n for _, n in hits.values())
    return {
        "recall": {kind: round(h / n, 3) for kind, (h, n) in hits.items()},
        "recall_overall": round(total[0] / total[1], 3),
        "false_positive_rate": round(false_pos / clean, 4),
        "mb_per_s": round(size / best / 1e6, 2),
        "wall_mb_per_s": round(size / best_wall / 1e6, 2),
        "planted": total[1],
        "clean": clean,
    }


def _timed(find: Callable[[str], Spans], texts: list[str]) -> tuple[float, float]:
    """(CPU seconds of this thread, wall seconds) to scrub every text."""
    cpu, wall = time.thread_time(), time.perf_counter()
    for text in texts:
        find(text)
    return time.thread_time() - cpu, time.perf_counter() - wall


def missed(find: Callable[[str], Spans], cases: list[Case], limit: int = 5) -> dict[str, list[str]]:
    """A few misses per kind and false positives, to read when a figure drops."""
    out: dict[str, list[str]] = {}
    for case in cases:
        spans = find(case.text)
        bad = bool(spans) if case.kind == "clean" else not caught(case, spans)
        if bad and len(out.setdefault(case.kind, [])) < limit:
            out[case.kind].append(case.text)
    return {k: v for k, v in out.items() if v}


# -- the scrubbers -------------------------------------------------------------------------------------
def flywheel_finder() -> Callable[[str], Spans]:
    from flywheel.feedback.scrub import find_pii

    find_pii("warm up: Jane Doe, jane@x.io")  # the name lists load on first use, outside the timing
    return lambda text: [(s.start, s.end) for s in find_pii(text)]


def presidio_finder(threshold: float = 0.0) -> Callable[[str], Spans] | None:
    """Presidio's analyzer, predefined recognizers and context words, on a blank spaCy pipeline (no model
    download); its e-mail recognizer's tldextract is kept from fetching the suffix list. None when absent."""
    try:
        import spacy
        import tldextract
        from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
        from presidio_analyzer.nlp_engine import SpacyNlpEngine
    except ImportError:
        return None

    tldextract.tldextract.TLD_EXTRACTOR.suffix_list_urls = ()

    class BlankSpacy(SpacyNlpEngine):
        def load(self) -> None:
            self.nlp = {"en": spacy.blank("en")}

    engine = BlankSpacy(models=[{"lang_code": "en", "model_name": "blank"}])
    engine.load()
    registry = RecognizerRegistry()
    registry.load_predefined_recognizers(nlp_engine=engine)
    analyzer = AnalyzerEngine(nlp_engine=engine, registry=registry, supported_languages=["en"])
    return lambda text: [(r.start, r.end) for r in analyzer.analyze(text, language="en", score_threshold=threshold)]


def baseline(rev: str, seed: int, per_kind: int = PER_KIND, clean: int = CLEAN) -> dict[str, object] | None:
    """The scrubber at ``rev``, measured in a child process on its own copy of ``flywheel/``."""
    if subprocess.run(["git", "-C", str(ROOT), "cat-file", "-e", f"{rev}^{{commit}}"], capture_output=True).returncode:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", rev, "flywheel"], capture_output=True, check=True
        ).stdout
        with tarfile.open(fileobj=__import__("io").BytesIO(archive)) as tar:
            tar.extractall(tmp, filter="data")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([tmp, str(ROOT)])}
        sizes = ["--seed", str(seed), "--per-kind", str(per_kind), "--clean", str(clean)]
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks.bench_pii", "--only", "flywheel", *sizes],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp,
            check=True,
        )
    return json.loads(done.stdout)


# -- output --------------------------------------------------------------------------------------------
def table(results: dict[str, dict[str, object]]) -> str:
    """Recall per kind (rows) for each scrubber (columns), then overall, false positives and MB/s."""
    names = list(results)
    lines = [f"{'kind':<22}" + "".join(f"{n:>12}" for n in names)]
    for kind in KINDS:
        lines.append(f"{kind:<22}" + "".join(f"{results[n]['recall'][kind]:>12.3f}" for n in names))  # type: ignore[index]
    for key, label in (
        ("recall_overall", "recall overall"),
        ("false_positive_rate", "clean-text FP rate"),
        ("mb_per_s", "MB/s (one core)"),
        ("wall_mb_per_s", "MB/s (wall clock)"),
    ):
        lines.append(f"{label:<22}" + "".join(f"{results[n][key]:>12}" for n in names))
    return "\n".join(lines)


def targets(result: dict[str, object]) -> dict[str, bool]:
    recall: dict[str, float] = result["recall"]  # type: ignore[assignment]
    return {
        "recall >= 0.97 overall": result["recall_overall"] >= 0.97,  # type: ignore[operator]
        "recall >= 0.9 for every kind": min(recall.values()) >= 0.9,
        "clean-text false positives <= 2%": result["false_positive_rate"] <= 0.02,  # type: ignore[operator]
        "throughput >= 2 MB/s on one core": result["mb_per_s"] >= 2,  # type: ignore[operator]
    }


def main(argv: list[str] | None = None) -> bool:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--baseline", default=BASELINE_REV, help="git revision of the 'before' scrubber ('' skips it)")
    parser.add_argument("--no-presidio", action="store_true")
    parser.add_argument("--per-kind", type=int, default=PER_KIND, help="Planted sentences per kind.")
    parser.add_argument("--clean", type=int, default=CLEAN, help="Clean sentences.")
    parser.add_argument(
        "--only", choices=["flywheel"], help="print this scrubber's figures as JSON (the baseline's child)"
    )
    args = parse_args(parser, argv, per_kind=10, clean=100, baseline="", no_presidio=True)
    cases = corpus(args.seed, args.per_kind, args.clean)
    if args.only:
        print(json.dumps(measure(flywheel_finder(), cases)))
        return True
    results: dict[str, dict[str, object]] = {}
    if args.baseline and (before := baseline(args.baseline, args.seed, args.per_kind, args.clean)):
        results["baseline"] = before
    if not args.no_presidio and (presidio := presidio_finder()):
        results["presidio"] = measure(presidio, cases)
        results["presidio@0.5"] = measure(presidio_finder(0.5), cases)  # type: ignore[arg-type]
    find = flywheel_finder()
    results["flywheel"] = measure(find, cases)
    print(table(results))
    misses = missed(find, cases)
    for kind, texts in misses.items():
        print(f"  missed {kind}: {texts[:3]}")
    (out_dir() / "pii_detail.json").write_text(
        json.dumps({"results": results, "flywheel_misses": misses}, indent=2, ensure_ascii=False)
    )
    return report(
        "pii",
        {"seed": args.seed, **{f"{n} {k}": v for n, r in results.items() for k, v in r.items() if k != "recall"}},
        targets(results["flywheel"]),
    )


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
