"""The light client (SPEC, "Live service"): ``clients/python`` is its own distribution, needing httpx
and pydantic only, that works with nothing of Flywheel importable; and a product in another
language (Node's fetch, or curl) runs feedback, champion, render and retrieve over HTTP alone."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import tomllib
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.parser import Parser
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement

from flywheel.config import load_settings
from flywheel.feedback.store import open_store
from live_server import LiveServer, make_key

ROOT = Path(__file__).resolve().parent.parent
CLIENT = ROOT / "clients" / "python"
NODE_PRODUCT = Path(__file__).resolve().parent / "clients" / "product.mjs"
TEMPLATE = "You are the assistant of {{product}}. Answer in {{language}}."
VARIABLES = {"product": "Acme Cloud", "language": "French"}
QUERY = "How much does the Pro plan cost per month?"
# What a web app must not pull in with the client: the server's stack.
SERVER_STACK = (
    "flywheel",
    "tenacity",
    "fastapi",
    "starlette",
    "uvicorn",
    "torch",
    "mlflow",
    "prefect",
    "chromadb",
    "sqlalchemy",
    "sentence_transformers",
)


def _locked() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==", 1)
            pins[name.strip().lower().replace("_", "-")] = version.strip()
    return pins


def _source_copy(where: Path) -> Path:
    """The client's source alone, away from the checkout (no build files left in the repository)."""
    return Path(shutil.copytree(CLIENT, where, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__")))


@pytest.mark.slow
def test_the_client_wheel_needs_only_httpx_and_pydantic_and_adds_only_flywheel_client(tmp_path: Path) -> None:
    source = _source_copy(tmp_path / "src")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(tmp_path / "wheels"),
            str(source),
        ],
        check=True,
        capture_output=True,
        cwd=tmp_path,
    )
    (wheel,) = (tmp_path / "wheels").glob("flywheel_client-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        info = next(n for n in names if n.endswith(".dist-info/METADATA"))
        metadata = Parser().parsestr(archive.read(info).decode())
    assert {n.split("/")[0] for n in names} == {"flywheel_client", "flywheel_client-0.1.0.dist-info"}, names
    assert {
        "flywheel_client/__init__.py",
        "flywheel_client/client.py",
        "flywheel_client/models.py",
        "flywheel_client/py.typed",
    } <= set(names)
    assert metadata["Name"] == "flywheel-client"
    requirements = [Requirement(r) for r in metadata.get_all("Requires-Dist")]
    assert sorted(r.name for r in requirements) == ["httpx", "pydantic"]
    # compatible with what the server is tested with, and bounded above (a major release may break it)
    locked = _locked()
    for requirement in requirements:
        assert requirement.specifier.contains(locked[requirement.name]), (requirement, locked[requirement.name])
        assert any(s.operator in ("<", "~=") for s in requirement.specifier), requirement
    declared = tomllib.loads((CLIENT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert sorted(map(str, requirements)) == sorted(str(Requirement(d)) for d in declared)


@dataclass
class Product:
    """A running service with what a product needs: a prompt with variables, an index, two keys."""

    url: str
    read_key: str
    ingest_key: str
    index_version: str
    prompt_version: str


@contextmanager
def _service(cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Product]:
    monkeypatch.setenv("FLYWHEEL_PROMPT_VARIABLES", json.dumps({"product": "Acme", "language": "English"}))
    (tmp_path / "prompt.txt").write_text(TEMPLATE)
    prompt_version = cli("prompt", "set", str(tmp_path / "prompt.txt"), "--json")["version"]
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "pricing.md").write_text(
        "# Pricing\n\nThe Pro plan costs $20 per month.\n\nThe Team plan costs $99 per month for five seats.\n"
    )
    (kb / "export.md").write_text("# Export\n\nYou can export your data as CSV from the settings page.\n")
    monkeypatch.setenv("FLYWHEEL_KNOWLEDGE_SOURCE", str(kb))
    index_version = cli("kb", "sync", "--json")["version"]
    read_key, ingest_key = make_key(cli, "web", "read"), make_key(cli, "web-feedback", "ingest")
    with LiveServer(load_settings()) as live:
        yield Product(live.url, read_key, ingest_key, index_version, prompt_version)


def _check_transcript(answers: dict[str, Any], product: Product, user: str) -> None:
    """What any client saw, and what the store kept of its feedback."""
    champion, render, retrieve = answers["champion"], answers["render"], answers["retrieve"]
    assert champion["arm"] == "production" and champion["index"] == product.index_version
    assert champion["prompt"]["version"] == product.prompt_version
    assert champion["prompt"]["variables"] == ["language", "product"]
    assert render["messages"] == [
        {"role": "system", "content": "You are the assistant of Acme Cloud. Answer in French."}
    ]
    assert retrieve["index_version"] == product.index_version and len(retrieve["chunks"]) == 2
    assert retrieve["chunks"][0]["id"].startswith("pricing.md#") and "$20" in retrieve["chunks"][0]["text"]
    assert answers["feedback"] == {
        "accepted": 1,
        "duplicates": 0,
        "rejected": 0,
        "errors": [],
        "scrubbed": 0,
        "negative": 1,
    }
    with open_store(load_settings().resolved_store_url) as store:
        (stored,) = [e for e in store.events() if e.user_id == user]
    assert stored.context_ids == [c["id"] for c in retrieve["chunks"]]
    assert (stored.arm, stored.prompt_version, stored.index_version) == (
        "production",
        product.prompt_version,
        product.index_version,
    )


ISOLATED_PRODUCT = textwrap.dedent("""
    import json, sys
    sys.modules["flywheel"] = None  # any import of the server now fails
    sys.path.insert(0, sys.argv[1])
    before = set(sys.modules)
    from flywheel_client import FlywheelClient
    import flywheel_client
    url, read_key, ingest_key, user = sys.argv[2:6]
    with FlywheelClient(url, read_key) as reader, FlywheelClient(url, ingest_key) as writer:
        champion = reader.champion(user)
        render = reader.render(user, {"product": "Acme Cloud", "language": "French"})
        retrieve = reader.retrieve("How much does the Pro plan cost per month?", user_id=user, k=2)
        feedback = writer.feedback({"event_id": "py-1", "ts": "2026-11-10T10:00:00Z", "signal": "thumbs_down",
            "query": "How much does the Pro plan cost per month?", "output": retrieve.chunks[0].text,
            "user_id": user, "consent": True, "arm": champion.arm, "prompt_version": render.prompt.version,
            "index_version": retrieve.index_version, "model": champion.model,
            "context_ids": [c.id for c in retrieve.chunks]})
    loaded = sorted({m.split(".")[0] for m in set(sys.modules) - before if sys.modules.get(m) is not None})
    print(json.dumps({"file": flywheel_client.__file__, "loaded": loaded, "sys_path": sys.path,
                      **{k: v.model_dump(mode="json") for k, v in [("champion", champion), ("render", render),
                         ("retrieve", retrieve), ("feedback", feedback)]}}))
""")


@pytest.mark.slow
def test_the_client_alone_runs_the_loop_against_a_live_service(
    cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    alone = tmp_path / "client-only"
    shutil.copytree(CLIENT / "flywheel_client", alone / "flywheel_client", ignore=shutil.ignore_patterns("__pycache__"))
    with _service(cli, tmp_path, monkeypatch) as product:
        # -I: no PYTHONPATH, no user site, not the checkout's directory; only the client's source is added
        done = subprocess.run(
            [
                sys.executable,
                "-I",
                "-c",
                ISOLATED_PRODUCT,
                str(alone),
                product.url,
                product.read_key,
                product.ingest_key,
                "py-user",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    answers = json.loads(done.stdout)
    assert answers["file"] == str(alone / "flywheel_client" / "__init__.py")
    assert not {ROOT, CLIENT} & {Path(entry) for entry in answers["sys_path"]}, answers["sys_path"]
    assert not set(answers["loaded"]) & set(SERVER_STACK), answers["loaded"]
    assert {"flywheel_client", "httpx", "pydantic"} <= set(answers["loaded"])
    _check_transcript(answers, product, "py-user")


def _curl_product(product: Product, user: str) -> dict[str, Any]:
    """The same product as tests/clients/product.mjs, every request made by curl."""

    def call(method: str, path: str, key: str, body: Any = None) -> Any:
        args = [
            "curl",
            "--silent",
            "--show-error",
            "--fail-with-body",
            "--max-time",
            "60",
            "-X",
            method,
            "-H",
            f"Authorization: Bearer {key}",
            product.url + path,
        ]
        if body is not None:
            args += ["-H", "Content-Type: application/json", "--data-binary", json.dumps(body)]
        done = subprocess.run(args, capture_output=True, text=True, timeout=90, check=False)
        assert done.returncode == 0, f"curl {method} {path}: {done.stdout} {done.stderr}"
        return json.loads(done.stdout)

    champion = call("GET", f"/v1/champion?user_id={user}", product.read_key)
    render = call("POST", "/v1/render", product.read_key, {"user_id": user, "variables": VARIABLES})
    retrieve = call("POST", "/v1/retrieve", product.read_key, {"user_id": user, "query": QUERY, "k": 2})
    feedback = call(
        "POST",
        "/v1/feedback",
        product.ingest_key,
        {
            "event_id": f"curl-{user}-1",
            "ts": "2026-11-10T10:00:00Z",
            "signal": "thumbs_down",
            "reason": "outdated",
            "query": QUERY,
            "output": retrieve["chunks"][0]["text"],
            "user_id": user,
            "consent": True,
            "arm": champion["arm"],
            "prompt_version": render["prompt"]["version"],
            "index_version": retrieve["index_version"],
            "model": champion["model"],
            "context_ids": [c["id"] for c in retrieve["chunks"]],
        },
    )
    return {"runtime": "curl", "champion": champion, "render": render, "retrieve": retrieve, "feedback": feedback}


@pytest.mark.slow
@pytest.mark.parametrize("runtime", ["node", "curl"])
def test_a_product_in_another_language_runs_the_loop_over_http(
    runtime: str, cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if shutil.which(runtime) is None:
        other = "curl" if runtime == "node" else "node"
        pytest.skip(
            f"`{runtime}` is not installed on this machine (the `{other}` case of this test covers "
            "a non-Python client where it exists)"
        )
    user = f"{runtime}-user"
    with _service(cli, tmp_path, monkeypatch) as product:
        if runtime == "node":
            env = {
                "PATH": os.environ["PATH"],
                "FLYWHEEL_URL": product.url,
                "FLYWHEEL_READ_KEY": product.read_key,
                "FLYWHEEL_INGEST_KEY": product.ingest_key,
                "FLYWHEEL_USER": user,
                "FLYWHEEL_QUERY": QUERY,
                "FLYWHEEL_VARIABLES": json.dumps(VARIABLES),
            }
            done = subprocess.run(
                ["node", str(NODE_PRODUCT)], env=env, capture_output=True, text=True, timeout=120, check=False
            )
            assert done.returncode == 0, done.stderr
            answers = json.loads(done.stdout)
            assert answers["runtime"].startswith("node v")
        else:
            answers = _curl_product(product, user)
    _check_transcript(answers, product, user)
