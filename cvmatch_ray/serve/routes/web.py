"""The recruiter's web page: ``/`` and its static files under ``/web/``, served by the API itself.

Plain HTML, CSS and JavaScript shipped as package data (``cvmatch_ray/serve/web/``), no build
step. The page calls the JSON API under ``/api`` with the recruiter's ``X-API-Key``; the page
itself carries no data, so it loads without a key (``http.OPEN_PATHS``).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
#: Where the page's files are served from; ``http.OPEN_PREFIXES`` lets them load without a key.
STATIC_PREFIX = "/web"
#: Only the page's own files run; CV text shown on the page can never load or run anything.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
)

router = APIRouter(include_in_schema=False)


@router.get("/")
async def page() -> FileResponse:
    """The single page: upload CVs, read a JD, match, rank, reverse-match."""
    return FileResponse(
        WEB_DIR / "index.html",
        media_type="text/html",
        headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY, "Cache-Control": "no-cache"},
    )


def install_web(app: FastAPI) -> None:
    """Serve the page at ``/`` and its files under ``/web/``."""
    app.include_router(router)
    app.mount(STATIC_PREFIX, StaticFiles(directory=WEB_DIR), name="web")
