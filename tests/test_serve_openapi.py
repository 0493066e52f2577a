"""The API's description is usable offline: ``docs/openapi.json`` is what the running service serves,
and ``/docs`` loads Swagger UI from the service itself, not from a CDN."""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import urlsplit

from flywheel.config import load_settings
from live_server import LiveServer

CHECKED_IN = Path(__file__).resolve().parent.parent / "docs" / "openapi.json"


def test_the_checked_in_document_is_what_the_service_serves(cli) -> None:
    with LiveServer(load_settings()) as live:
        served = live.http().get("/openapi.json")  # no key needed
    assert served.status_code == 200
    assert served.json() == json.loads(CHECKED_IN.read_text()), (
        "docs/openapi.json is stale: run `make openapi` and commit it"
    )
    paths = served.json()["paths"]
    assert {"/v1/feedback", "/v1/champion", "/v1/render", "/v1/retrieve", "/v1/ask", "/v1/opt-out"} <= set(paths)
    render = paths["/v1/render"]["post"]
    assert set(render["responses"]) >= {"200", "404", "422"}


def test_docs_load_their_scripts_and_styles_from_the_service(cli) -> None:
    with LiveServer(load_settings()) as live:
        http = live.http()
        page = http.get("/docs")
        assert page.status_code == 200
        assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text)
        assets += re.findall(r"""url: *["']([^"']+)["']""", page.text)
        assert any(a.endswith(".js") for a in assets) and any(a.endswith(".css") for a in assets), assets
        for asset in assets:
            parts = urlsplit(asset)
            assert not parts.netloc, f"/docs loads {asset} from another host"
            fetched = http.get(asset)
            assert fetched.status_code == 200, asset
        bundle = next(a for a in assets if a.endswith("swagger-ui-bundle.js"))
        assert len(http.get(bundle).content) > 100_000  # the real Swagger UI, not a placeholder
        assert http.get("/redoc").status_code == 200
