"""Pantry Pal (tests/outside_product.py) on a model that over-applies an instruction, as real models
do: told to apologize to frustrated cooks, it opens *every* answer with an apology, JSON included.
So the tone fix and the JSON fix each work alone, but any prompt with both breaks the JSON: two
complementary fixes that no merge can keep together."""

from __future__ import annotations

from typing import Any

import outside_product


def answer(variant: Any, query: str, salt: str = "") -> str:
    text = outside_product.answer(variant, query, salt)
    if "apologize" in variant.prompt_template.lower() and not text.lower().startswith(("sorry", "i'm sorry")):
        return "Sorry about that! " + text
    return text
