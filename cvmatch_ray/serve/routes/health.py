"""Liveness: answers from memory, never waits on storage or another actor."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from cvmatch_ray.serve.http import get_service
from cvmatch_ray.serve.models import Health
from cvmatch_ray.serve.service import APIService

router = APIRouter(tags=["health"])


@router.get("/health", response_model=Health)
async def health(service: Annotated[APIService, Depends(get_service)]) -> Health:
    """The replica is up; which standardizer and encoder it fronts; whether keys are on."""
    return await service.health()
