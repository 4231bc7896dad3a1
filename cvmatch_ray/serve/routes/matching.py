"""Matching routes: start a job, follow it chunk by chunk, read its ranked results."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from cvmatch_ray.serve.http import get_service
from cvmatch_ray.serve.models import (
    ErrorResponse,
    JobsMatchRequest,
    JobsMatchResults,
    MatchAccepted,
    MatchProgress,
    MatchRequest,
    MatchResults,
)
from cvmatch_ray.serve.service import APIService

router = APIRouter(tags=["matching"])

Service = Annotated[APIService, Depends(get_service)]


@router.post(
    "/match",
    status_code=202,
    response_model=MatchAccepted,
    responses={404: {"model": ErrorResponse, "description": "Unknown JD."}},
)
async def match(request: MatchRequest, service: Service) -> MatchAccepted:
    """Score stored CVs (all of them, or ``cv_ids``) against a JD, in chunks, on Ray."""
    return await service.submit_match(request)


@router.post(
    "/match/{job_id}/cancel",
    response_model=MatchProgress,
    responses={404: {"model": ErrorResponse, "description": "No such job."}},
)
async def cancel_match(job_id: str, service: Service) -> MatchProgress:
    """Cancel a match job: no chunk starts after this; the results written so far stay
    readable. A job that has ended keeps its ending."""
    return await service.cancel_match(job_id)


@router.get(
    "/matching-progress/{job_id}",
    response_model=MatchProgress,
    responses={404: {"model": ErrorResponse, "description": "No such job (or no job for this JD)."}},
)
async def matching_progress(job_id: str, service: Service) -> MatchProgress:
    """Chunks done, percent, rate and ETA of a job; a JD id answers for its latest job."""
    return await service.match_progress(job_id)


@router.get(
    "/match-results/{job_id}",
    response_model=MatchResults,
    responses={404: {"model": ErrorResponse, "description": "No such job."}},
)
async def match_results(
    job_id: str,
    service: Service,
    top_k: Annotated[int | None, Query(gt=0, description="At most this many; default: the request's top_k.")] = None,
) -> MatchResults:
    """Ranked results with score breakdowns, best first; partial while the job runs."""
    return await service.match_results(job_id, top_k=top_k)


@router.post(
    "/match-jobs",
    response_model=JobsMatchResults,
    responses={404: {"model": ErrorResponse, "description": "Unknown CV."}},
)
async def match_jobs(request: JobsMatchRequest, service: Service) -> JobsMatchResults:
    """Reverse matching: the best stored JDs for a stored CV, with the forward scores."""
    return await service.match_jobs(request)
