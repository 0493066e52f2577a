"""A team's own product pipeline, loaded through `eval.pipeline = "pipeline_hooks:shouting"`."""

from __future__ import annotations


def shouting(variant, query: str) -> str:
    """Answers with the prompt's first word and the query, upper-cased (a plain sync function)."""
    return f"{variant.prompt_template.split()[0]} {query}".upper()
