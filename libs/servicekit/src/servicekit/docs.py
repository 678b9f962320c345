"""Swagger UI served by the service itself, so that its docs page works offline and under the
gateway's Content-Security-Policy: Swagger UI's script, stylesheet and icon come from the
fastapi-offline package, and the page starts it with a script file of ours rather than
FastAPI's inline script (which `script-src 'self'` blocks)."""

from html import escape

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

# Package data folders, searched in this order: fastapi-offline's copy of swagger-ui-dist, then
# our swagger-init.js.
ASSET_PACKAGES: list[str | tuple[str, str]] = [
    ("fastapi_offline", "static"),
    ("servicekit", "static"),
]


def docs_page(title: str, openapi_url: str, assets_url: str) -> str:
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{escape(title)} - Swagger UI</title>
<link rel="stylesheet" href="{assets_url}/swagger-ui.css">
<link rel="icon" href="{assets_url}/favicon.png">
</head>
<body>
<div id="swagger-ui" data-openapi-url="{escape(openapi_url)}"></div>
<script src="{assets_url}/swagger-ui-bundle.js"></script>
<script src="{assets_url}/swagger-init.js"></script>
</body>
</html>
"""


def install_docs(app: FastAPI, prefix: str) -> None:
    """Swagger UI at `{prefix}/docs`, its assets under `{prefix}/docs/assets/`."""
    assets_url = f"{prefix}/docs/assets"
    page = docs_page(app.title, f"{prefix}/openapi.json", assets_url)
    app.mount(assets_url, StaticFiles(packages=ASSET_PACKAGES), name="docs-assets")

    @app.get(f"{prefix}/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return HTMLResponse(page)
