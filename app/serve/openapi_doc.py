"""The service's OpenAPI document as checked in at ``docs/openapi.json`` (``make openapi`` rewrites it;
``tests/test_serve_openapi.py`` fails when the running service and the file disagree), so a team
generating a client in another language needs neither a running service nor Python."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any


def document() -> dict[str, Any]:
    """The document the service serves at ``/openapi.json`` (built in a throwaway home)."""
    from flywheel.app.serve.main import create_app
    from flywheel.config import load_settings

    with tempfile.TemporaryDirectory(prefix="flywheel-openapi-") as home:
        settings = load_settings().model_copy(update={"home": Path(home), "store_url": None})
        app = create_app(settings, warm_up=False)
        try:
            return app.openapi()
        finally:
            app.state.service.close()


def render(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m flywheel.app.serve.openapi_doc FILE", file=sys.stderr)
        return 2
    Path(args[0]).write_text(render(document()), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
