"""The FastAPI application: routers per resource, the web page, request guards, error translation."""

from __future__ import annotations

from fastapi import FastAPI, Security

from cvmatch_ray import __version__
from cvmatch_ray.serve.http import MULTIPART_OVERHEAD, RequestGuard, api_key_header, install_error_handlers
from cvmatch_ray.serve.routes import cvs, health, jds, matching
from cvmatch_ray.serve.routes.web import install_web
from cvmatch_ray.serve.service import APIService

DESCRIPTION = """\
Upload CVs and job descriptions, follow their processing, and rank CVs for a job.

CV uploads are answered as soon as the file is stored (202) and processed in the background
(extract, standardize, embed, store); `/api/cv-upload-progress/{cv_id}` follows them.
Matching runs as a chunked Ray job; `/api/matching-progress/{job_id}` follows it and
`/api/match-results/{job_id}` returns ranked results with score breakdowns.
"""


def create_api(service: APIService) -> FastAPI:
    """The API around ``service`` (one per ingress replica)."""
    app = FastAPI(title="cvmatch-ray", version=__version__, description=DESCRIPTION)
    app.state.service = service
    install_error_handlers(app)
    # The header dependency only documents the key in OpenAPI; RequestGuard enforces it.
    keyed = [Security(api_key_header)]
    app.include_router(cvs.router, prefix="/api", dependencies=keyed)
    app.include_router(jds.router, prefix="/api", dependencies=keyed)
    app.include_router(matching.router, prefix="/api", dependencies=keyed)
    app.include_router(health.router, prefix="/api")
    install_web(app)
    app.add_middleware(
        RequestGuard,
        max_body_bytes=service.settings.max_upload_bytes + MULTIPART_OVERHEAD,
        api_keys=service.settings.api_keys,
    )
    return app
