"""Job description routes: upload (JSON text or a file) and read."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from cvmatch_ray.schemas import JDPublic
from cvmatch_ray.serve.http import get_service
from cvmatch_ray.serve.models import ErrorResponse, JDAccepted, JDTextIn, PoolMatchResults
from cvmatch_ray.serve.routes.cvs import upload_filename
from cvmatch_ray.serve.service import APIService

router = APIRouter(tags=["jds"])

Service = Annotated[APIService, Depends(get_service)]

# FastAPI cannot declare one body as "JSON or multipart", so the route reads the request
# itself and this documents both forms.
_JD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": JDTextIn.model_json_schema()},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": {"type": "string", "format": "binary", "description": "The JD file."}},
                }
            },
        },
    }
}


async def _read_jd(request: Request) -> tuple[bytes, str | None, str | None]:
    """``(bytes, filename, content_type)`` of the JD in a JSON or multipart body."""
    content_type = request.headers.get("content-type", "").lower()
    if content_type.startswith("application/json"):
        try:
            body = JDTextIn.model_validate_json(await request.body())
        except ValidationError as e:
            raise RequestValidationError(e.errors(include_input=False)) from e
        return body.text.encode("utf-8"), upload_filename(body.filename), "text/plain"
    if content_type.startswith("multipart/form-data"):
        form = await request.form(max_files=1, max_fields=10)
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise RequestValidationError([{"type": "missing", "loc": ("body", "file"), "msg": "Field required"}])
        return await upload.read(), upload_filename(upload.filename), upload.content_type
    raise HTTPException(415, 'send JSON {"text": ...} or a multipart form with a "file" field')


@router.post(
    "/upload-jd",
    response_model=JDAccepted,
    openapi_extra=_JD_BODY,
    responses={
        413: {"model": ErrorResponse, "description": "Larger than the upload limit."},
        415: {"model": ErrorResponse, "description": "Unsupported body or document type."},
        422: {"model": ErrorResponse, "description": "Empty or unreadable document; malformed request."},
    },
    summary="Upload a job description (JSON text or a file)",
)
async def upload_jd(request: Request, service: Service) -> JDAccepted:
    """Standardize, embed and store a JD; the same text or bytes get the same ``jd_id``."""
    data, filename, content_type = await _read_jd(request)
    return await service.upload_jd(data, filename=filename, content_type=content_type)


@router.get(
    "/jds/{jd_id}/best-cvs",
    response_model=PoolMatchResults,
    responses={404: {"model": ErrorResponse}},
    summary="The best stored CVs for a JD, over the whole pool, answered at once",
)
async def best_cvs(
    jd_id: str, service: Service, top_k: Annotated[int, Query(ge=1, le=1000, description="How many CVs.")] = 100
) -> PoolMatchResults:
    """Rank every stored CV against the JD and answer the best ``top_k`` with their
    breakdowns (``match.retrieve``): the scores ``POST /api/match`` would give them, in
    about a tenth of a second for 100,000 CVs. Use a match job for chosen CVs or exports."""
    return await service.best_cvs(jd_id, top_k=top_k)


@router.get("/jds/{jd_id}", response_model=JDPublic, responses={404: {"model": ErrorResponse}})
async def get_jd(jd_id: str, service: Service) -> JDPublic:
    """A stored JD and its profile."""
    return await service.get_jd(jd_id)
