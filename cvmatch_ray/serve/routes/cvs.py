"""CV routes: upload, upload progress, read, delete."""

from __future__ import annotations

import os
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, UploadFile
from fastapi.responses import JSONResponse

from cvmatch_ray.progress import UploadStep
from cvmatch_ray.schemas import CVPublic, clean_line
from cvmatch_ray.serve.http import get_service
from cvmatch_ray.serve.models import Deleted, ErrorResponse, UploadAccepted, UploadProgress
from cvmatch_ray.serve.service import APIService

router = APIRouter(tags=["cvs"])

Service = Annotated[APIService, Depends(get_service)]

_REFUSALS = {
    404: {"model": ErrorResponse, "description": "Unknown CV."},
}
_UPLOAD_REFUSALS = {
    413: {"model": ErrorResponse, "description": "The file is larger than the upload limit."},
    415: {"model": ErrorResponse, "description": "Not a PDF, DOCX, text or HTML document."},
    422: {"model": ErrorResponse, "description": "Empty, scanned (no text layer), encrypted or corrupt document; or a malformed request."},
    503: {"model": ErrorResponse, "description": "Storage or a model deployment is unavailable."},
}


def upload_filename(name: str | None) -> str | None:
    """The last path component of a client's file name, one clean line, or None."""
    if not name:
        return None
    # Browsers on Windows send "C:\\Users\\...\\cv.pdf"; only the name is the user's choice.
    base = os.path.basename(name.replace("\\", "/"))
    return clean_line(base, 255) or None


@router.post(
    "/upload-cv",
    status_code=202,
    response_model=UploadAccepted,
    responses={
        200: {"model": CVPublic, "description": "background_processing=false: the stored CV. "
              "Also a background upload of bytes already stored (UploadAccepted, status done)."},
        202: {"model": UploadAccepted, "description": "Accepted; follow /api/cv-upload-progress/{cv_id}."},
        **_UPLOAD_REFUSALS,
    },
    summary="Upload a CV (PDF, DOCX, text or HTML)",
)
async def upload_cv(
    service: Service,
    file: Annotated[UploadFile, File(description="The CV file.")],
    background_processing: Annotated[
        bool, Form(description="true: answer 202 once the file is stored and process it in the background.")
    ] = True,
) -> JSONResponse:
    """Store a CV and standardize it, in the background (202) or before answering (200).

    The same bytes always get the same ``cv_id`` and are processed once.
    """
    data = await file.read()
    body = await service.upload_cv(
        data,
        filename=upload_filename(file.filename),
        content_type=file.content_type,
        background=background_processing,
    )
    # 202 while the CV is still on its way; 200 once it is stored (now, or before).
    stored = isinstance(body, CVPublic) or body.status == UploadStep.done
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if stored else 202)


@router.get("/cv-upload-progress/{cv_id}", response_model=UploadProgress, responses=_REFUSALS)
async def cv_upload_progress(cv_id: str, service: Service) -> UploadProgress:
    """The step, percentage, stats and any error of the latest upload of a CV."""
    return await service.upload_progress(cv_id)


@router.get("/cvs/{cv_id}", response_model=CVPublic, responses=_REFUSALS)
async def get_cv(cv_id: str, service: Service) -> CVPublic:
    """A stored CV: its profile, stats, provenance and flags."""
    return await service.get_cv(cv_id)


@router.delete("/cvs/{cv_id}", response_model=Deleted, responses=_REFUSALS)
async def delete_cv(cv_id: str, service: Service) -> Deleted:
    """Remove a CV everywhere: its row and vectors, its raw file and its match results."""
    return await service.delete_cv(cv_id)
