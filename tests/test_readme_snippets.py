"""The README's "How your product reads the champion" snippets, run as a product would run them:
in a separate Python process, in a directory whose ``.flywheel`` a real Flywheel has written, and
again after the pointers moved (a snippet that kept reading an old version would fail here)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def snippets() -> dict[str, str]:
    text = README.read_text(encoding="utf-8")
    found = dict(re.findall(r"<!-- snippet: (\w+) -->\n```python\n(.*?)```", text, flags=re.S))
    assert set(found) == {"prompt", "model", "served"}, f"README snippets found: {sorted(found)}"
    return found


def run_snippet(code: str, cwd: Path) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("FLYWHEEL_HOME", "MLFLOW_TRACKING_URI")}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, f"snippet failed:\n{code}\n{done.stderr[-3000:]}"
    return done.stdout.splitlines()


@pytest.fixture
def product(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli) -> Path:
    """A product directory with the default ``.flywheel``: a prompt, a synced knowledge base."""
    root = tmp_path / "product"
    (root / "knowledge").mkdir(parents=True)
    (root / "knowledge" / "pricing.md").write_text("# Pricing\n\nThe Pro plan costs $12 per month, billed monthly.\n")
    (root / "knowledge" / "pantry.md").write_text("# Pantry\n\nPantry Pal tracks what is in your cupboards.\n")
    (root / "flywheel.toml").write_text('knowledge_source = "knowledge"\n[prompt_variables]\nproduct = "Pantry Pal"\n')
    (root / "prompt.txt").write_text("You are the assistant of {{product}}. Answer briefly and cite the docs.\n")
    monkeypatch.chdir(root)
    monkeypatch.setenv("FLYWHEEL_HOME", str(root / ".flywheel"))
    cli("prompt", "set", "prompt.txt", "--json")
    cli("kb", "sync", "--json")
    return root


def test_the_readme_snippets_read_what_production_serves(product: Path, cli) -> None:
    code = snippets()
    version, system = run_snippet(code["prompt"], product)[0].split(" ", 1)
    assert version == "1" and system.startswith("You are the assistant of Pantry Pal.")
    assert run_snippet(code["model"], product) == ["gpt-4o-mini"]  # no fine-tune promoted: the base model
    served = run_snippet(code["served"], product)
    assert served[0] == "1 1 gpt-4o-mini"
    assert served[1].startswith("pricing") and "$12" in served[1]  # the nearest document comes first

    # The pointers move: a new prompt version, a fine-tuned model behind the alias.
    (product / "prompt.txt").write_text("You are {{product}}'s helper. Quote prices exactly.\n")
    cli("prompt", "set", "prompt.txt", "--json")
    _promote_a_model("ft:pantry-pal-2026")
    version, system = run_snippet(code["prompt"], product)[0].split(" ", 1)
    assert version == "2" and system.startswith("You are Pantry Pal's helper.")
    assert run_snippet(code["model"], product) == ["ft:pantry-pal-2026"]
    assert run_snippet(code["served"], product)[0] == "2 1 ft:pantry-pal-2026"


def _promote_a_model(provider_model: str) -> None:
    import mlflow

    from flywheel.config import load_settings
    from flywheel.registry import move_model_alias, register_model_version, use_mlflow

    settings = load_settings()
    use_mlflow(settings)
    mlflow.set_experiment(settings.experiment)
    with mlflow.start_run() as run:
        version = register_model_version(settings, provider_model, run.info.run_id, {"flywheel.job_id": "job-1"})
    move_model_alias(settings, version)
