"""How an improver's candidate reads on its MLflow run."""

from __future__ import annotations

import re


def diff_markdown(title: str, diff: str) -> str:
    """A diff MLflow's artifact view previews (it renders ``.md`` and shows no ``.diff``): a title and
    the diff in a ``diff`` fence longer than any backtick run inside, so a prompt's own fences stay text."""
    fence = "`" * max(3, 1 + max((len(m) for m in re.findall(r"`+", diff)), default=0))
    return f"# {title}\n\n{fence}diff\n{diff.rstrip()}\n{fence}\n" if diff.strip() else f"# {title}\n\n(no change)\n"
