"""Ingest documents in this process: the CLI's path for a handful of files.

It only schedules ``process.run_batch``: documents already stored (same bytes) are
skipped, the rest go through the steps in batches and each batch is written in one commit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from pathlib import Path

from cvmatch_ray.config import Settings
from cvmatch_ray.embed import Embedder
from cvmatch_ray.process import (
    Failed,
    Kind,
    Outcome,
    RawDocument,
    StageTimes,
    run_batch,
    write_records,
)
from cvmatch_ray.standardize import Standardizer, make_standardizer
from cvmatch_ray.storage.tables import Store

logger = logging.getLogger(__name__)


class LocalIngestor:
    """The models and the store of one process, and the loop that feeds them documents."""

    def __init__(self, *, settings: Settings, store: Store, standardizer: Standardizer, embedder: Embedder) -> None:
        self.settings = settings
        self.store = store
        self.standardizer = standardizer
        self.embedder = embedder

    @classmethod
    def from_settings(cls, settings: Settings, *, data_dir: str | None = None) -> LocalIngestor:
        """Load the configured encoder and standardizer, and open the store."""
        embedder = Embedder.from_settings(settings)
        return cls(
            settings=settings,
            store=Store.open(data_dir or settings.tenant_dir, settings.store, dim=embedder.dim),
            standardizer=make_standardizer(settings),
            embedder=embedder,
        )

    def _stored(self, kind: Kind, doc_id: str) -> bool:
        return self.store.has_cv(doc_id) if kind == "cv" else self.store.has_jd(doc_id)

    def ingest(
        self,
        files: Iterable[tuple[str | None, bytes]],
        *,
        kind: Kind = "cv",
        batch_size: int = 32,
        on_progress: Callable[[int], None] | None = None,
        times: StageTimes | None = None,
    ) -> list[Outcome]:
        """Ingest ``(name, bytes)`` pairs; one failed document never stops the others.

        Returns one outcome per pair, in order. ``on_progress(n_done)`` is called as
        documents are skipped and as batches are written; ``times``, when given, gets the
        wall time of each step added (``process.STEPS``, the writes included).
        """
        times = times if times is not None else StageTimes()
        outcomes: list[Outcome] = []
        pending: list[tuple[int, RawDocument]] = []  # (index in outcomes, document)
        seen: set[str] = set()  # the same bytes twice in one call are processed once
        done = 0

        def flush() -> None:
            nonlocal done
            if not pending:
                return
            results = run_batch(
                [doc for _, doc in pending], settings=self.settings, standardizer=self.standardizer,
                embedder=self.embedder, times=times,
            )
            with times.timed("write"):
                write_records(results, self.store)
            for (index, _), result in zip(pending, results, strict=True):
                outcomes[index] = Outcome.of(outcomes[index].file, result)
                if isinstance(result, Failed):
                    logger.info("document %s failed at %s: %s", result.doc_id, result.stage, result.code)
            done += len(pending)
            pending.clear()

        for name, data in files:
            # The record keeps the file's name, not the path it had on this machine.
            doc = RawDocument(data, kind, Path(name).name if name else None)
            outcomes.append(Outcome(file=name, kind=kind, id=doc.doc_id))
            if doc.doc_id in seen or self._stored(kind, doc.doc_id):
                outcomes[-1].skipped = True
                done += 1
            else:
                seen.add(doc.doc_id)
                pending.append((len(outcomes) - 1, doc))
                if len(pending) >= batch_size:
                    flush()
            if on_progress is not None:
                on_progress(done)
        flush()
        if on_progress is not None:
            on_progress(done)
        return outcomes

    def ingest_one(self, data: bytes, *, kind: Kind = "cv", filename: str | None = None) -> Outcome:
        """Ingest one document."""
        return self.ingest([(filename, data)], kind=kind)[0]
