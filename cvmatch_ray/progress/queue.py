"""The upload work queue: accepted uploads wait here until a worker claims them.

It lives in the progress actor next to the book (a queued job is a job whose progress
reads ``queued``), but it is its own thing: the order in which work is handed out, the
long poll that wakes idle workers, and the rule that lets a burst of uploads settle
before its processing competes with it for the CPU. Plain Python, no Ray.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence

from cvmatch_ray.progress.book import ProgressBook
from cvmatch_ray.progress.models import JobKind, JobProgress, JobStatus, QueuedJob


class WorkQueue:
    """Queued jobs of one kind, oldest first, handed to one worker each.

    Lock order: the queue's lock, then the book's (the book never calls the queue).
    """

    def __init__(self, book: ProgressBook, kind: JobKind, *, clock: Callable[[], float] = time.monotonic) -> None:
        """Build the queue over ``book``, putting the jobs it holds as queued first in line.

        Args:
            book: where the queued jobs' progress lives.
            kind: the kind of job this queue hands out.
            clock: monotonic seconds (injectable for tests).
        """
        self._book = book
        self._kind = kind
        self._clock = clock
        self._changed = threading.Condition()
        # job id -> when it was put in line; reloaded jobs have waited long enough.
        self._waiting: dict[str, float] = dict.fromkeys(book.queued(kind), -math.inf)
        self._last_put = -math.inf

    def __len__(self) -> int:
        with self._changed:
            return len(self._waiting)

    def put(self, jobs: Sequence[Sequence[str | None]], *, total: int = 1) -> int:
        """Create queued jobs (``QueuedJob``, or ``(job_id, cv_id)`` of the default tenant)
        in the book and put them in line.

        Ids the book knows already are left as they are.

        Returns:
            How many jobs were created.
        """
        with self._changed:
            created = self._book.add_queued(self._kind, jobs, total=total)
            if created:
                now = self._clock()
                for job_id in created:
                    self._waiting[job_id] = now
                self._last_put = now
                self._changed.notify_all()
        return len(created)

    def claim(
        self, limit: int, *, wait_s: float = 0.0, settle_s: float = 0.0, max_delay_s: float = 2.0
    ) -> list[QueuedJob]:
        """Take up to ``limit`` queued jobs (oldest first) and mark them running.

        With ``wait_s``, waits that long for work when there is none (a long poll: workers
        learn of new work at once). With ``settle_s``, work is handed out only once nothing
        was put in line for ``settle_s`` (a burst has stopped arriving) or the oldest job has
        waited ``max_delay_s``; a backlog is never held back.

        Returns:
            The jobs taken (empty when none came within ``wait_s``).
        """
        deadline = self._clock() + max(0.0, wait_s)
        with self._changed:
            while True:
                now = self._clock()
                ready_in = self._ready_in(now, settle_s, max_delay_s)
                if ready_in <= 0:
                    break
                left = deadline - now
                if left <= 0:
                    return []
                self._changed.wait(min(left, ready_in))
            taken: list[QueuedJob] = []
            while self._waiting and len(taken) < limit:
                batch = list(self._waiting)[: limit - len(taken)]
                for job_id in batch:
                    del self._waiting[job_id]
                # Forgotten or finished meanwhile: skipped by the book.
                taken += self._book.start_queued(batch)
            return taken

    def requeue_stalled(self, older_than_s: float, *, limit: int = 200, max_attempts: int = 0) -> list[str]:
        """Put running jobs whose lease ran out (no report or heartbeat for ``older_than_s``)
        back in line; one claimed ``max_attempts`` times already fails as poison instead.

        Returns:
            The ids of the jobs put back.
        """
        with self._changed:
            stalled = self._book.requeue_stalled(self._kind, older_than_s, limit=limit, max_attempts=max_attempts)
            self._put_first(stalled)
            return stalled

    def release(self, job_id: str, *, max_attempts: int = 0) -> JobProgress:
        """Put a running job its worker gave back in line (see :meth:`ProgressBook.release`)."""
        with self._changed:
            job = self._book.release(job_id, max_attempts=max_attempts)
            if job.status == JobStatus.queued:
                self._put_first([job_id])
            return job

    def _put_first(self, job_ids: Sequence[str]) -> None:
        for job_id in job_ids:
            self._waiting[job_id] = -math.inf  # long overdue: never held back to settle
        if job_ids:
            self._changed.notify_all()

    def _ready_in(self, now: float, settle_s: float, max_delay_s: float) -> float:
        """Seconds until work may be handed out (<= 0: now; inf: the queue is empty)."""
        if not self._waiting:
            return math.inf
        if settle_s <= 0:
            return 0.0
        quiet_in = self._last_put + settle_s - now
        oldest_in = next(iter(self._waiting.values())) + max_delay_s - now
        return min(quiet_in, oldest_in)
