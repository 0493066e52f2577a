"""Personal names: Faker's first and last names with the patterns around them (a surname after a first
name, a title, "my name is", a greeting or a sign-off), and a spaCy model's PERSON entities when one
is installed. Detectors of :mod:`flywheel.feedback.scrub`."""

from __future__ import annotations

import importlib
import importlib.util
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

from flywheel.feedback.spans import _CAP, _LOWER, _UPPER, Span

# Faker's name lists of these locales: names written in Latin letters in the markets we hear from.
NAME_LOCALES = (
    "en_US",
    "en_GB",
    "en_IE",
    "de_DE",
    "de_AT",
    "de_CH",
    "fr_FR",
    "fr_CH",
    "es_ES",
    "es_MX",
    "it_IT",
    "nl_NL",
    "pl_PL",
    "pt_BR",
    "pt_PT",
    "sv_SE",
    "da_DK",
    "no_NO",
    "fi_FI",
    "cs_CZ",
)
NER_MODELS = ("en_core_web_sm", "en_core_web_md", "en_core_web_lg", "en_core_web_trf")
NER_MAX_CHARS = 100_000  # a spaCy model on a megabyte field would take seconds: the pattern detectors cover it


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
# Words after which a capitalised word is a person whatever it is: relations, sign-offs, "spoke with".
_PERSON_CUE = re.compile(
    r"(?i:\b(?:spoke|talked|chatted|met|emailed)\s+(?:with|to)|\b(?:my|our|the|his|her|their)\s+(?:colleague|co-?worker"
    r"|manager|boss|supervisor|wife|husband|partner|son|daughter|friend|mother|father|mom|dad|brother|sister|agent"
    r"|rep|representative|technician|assistant|landlord|neighbou?r|doctor|lawyer|accountant)"
    r"|\bcontact\s+person|\bsigned|\baccording\s+to|\bcc|\bassigned\s+to|\b(?:kind\s+|best\s+|warm\s+)?regards"
    r"|\bbest\s+wishes|\byours\s+(?:truly|sincerely)|\bsincerely|\bcheers|\bask\s+for|\bwritten\s+by"
    r"|\bon\s+behalf\s+of|\b(?:customer|client|contact|attn|attention|from|user|requester|reporter)\s*:)"
    rf",?\s+({_CAP})(?:[ \t]+({_CAP}))?(?![\w-])"
)
PERSON_CUES = (
    "spoke",
    "talked",
    "chatted",
    "met",
    "emailed",
    "colleague",
    "worker",
    "manager",
    "boss",
    "supervisor",
    "wife",
    "husband",
    "partner",
    "son",
    "daughter",
    "friend",
    "mother",
    "father",
    "mom",
    "dad",
    "brother",
    "sister",
    "agent",
    "rep",
    "technician",
    "assistant",
    "landlord",
    "neighb",
    "doctor",
    "lawyer",
    "accountant",
    "contact",
    "signed",
    "according",
    "cc",
    "assigned",
    "regards",
    "wishes",
    "yours",
    "sincerely",
    "cheers",
    "ask for",
    "written by",
    "behalf",
    "customer",
    "client",
    "attn",
    "attention",
    "from",
    "user",
    "requester",
    "reporter",
)  # a text holding none of these skips _PERSON_CUE
# Own names typed in lower case, after the clearest cues only ("my name is jan kowalski").
_LOWER_WORD = rf"[{_LOWER}]++(?![\w-])"
_STATED_LOWER = re.compile(rf"(?i:\bmy\s+name\s+is|\bname\s*:|\bcall\s+me)\s+({_LOWER_WORD})(?:[ \t]+({_LOWER_WORD}))?")
_NOT_A_NAME = frozenset(
    "not is was the a an on in at to and or but back later now soon tomorrow today please here there up down missing "
    "wrong shown displayed spelled misspelled incorrect changed still also just only never always again anytime asap "
    "if when what so then too very really".split()
)
_STATED = re.compile(rf"(?i:\bmy\s+name(?:\s+is|'s)|\bname\s*:)\s+({_CAP})(?:[ \t]+({_CAP}))?")


@dataclass(frozen=True)
class NameLists:
    """Faker's first and last names for ``NAME_LOCALES``, and the words that rule a name out."""

    first: frozenset[str]
    last: frozenset[str]
    common: frozenset[str]
    lower_common: frozenset[str]

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
    lower_common = frozenset(w.lower() for w in common) | _NOT_A_NAME
    return NameLists(frozenset(first), frozenset(last - common), frozenset(common), lower_common)


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
    stop = (
        last.end(1)
        if last and not text.startswith(".", first.end(1)) and last.group(1) not in names.common
        else first.end(1)
    )
    return Span(first.start(1), stop, "name")


def _stated_names(text: str) -> Iterator[Span]:
    """After "my name is" or "Name:", any capitalised word is a name, with a surname when one follows."""
    yield from _cued(_STATED, text, name_lists().common)


def _cued(pattern: re.Pattern[str], text: str, common: frozenset[str]) -> Iterator[Span]:
    """Group 1 of each match, and group 2 with it when given, unless they are ``common`` words."""
    for m in pattern.finditer(text):
        if m.group(1) in common:
            continue
        end = m.end(2) if m.group(2) and m.group(2) not in common else m.end(1)
        yield Span(m.start(1), end, "name")


def _person_cued_names(text: str) -> Iterator[Span]:
    """A capitalised word after "my colleague", "spoke with", "Regards," and the like: no list needed."""
    yield from _cued(_PERSON_CUE, text, name_lists().common)


def _lower_stated_names(text: str) -> Iterator[Span]:
    """ "my name is jan kowalski": lower-case words that are not everyday English."""
    yield from _cued(_STATED_LOWER, text, name_lists().lower_common)


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


def ner_installed() -> bool:
    """Whether :func:`_ner_names` can find anything: without a model the scrubber skips it altogether."""
    return _ner_model() is not None


def _ner_names(text: str) -> Iterator[Span]:
    nlp = _ner_model() if len(text) <= NER_MAX_CHARS else None
    if nlp is not None:
        for ent in nlp(text).ents:
            if ent.label_ == "PERSON":
                yield Span(ent.start_char, ent.end_char, "name")
