"""Bulk ingest as a Ray job.

    ray job submit --working-dir . -- python jobs/bulk_ingest.py --input DIR_OR_URI [--db URI] [--tenant T] [--kind cv]

Exits non-zero only when the job as a whole failed (no file could be ingested, or the
input does not exist); per-file failures are logged and, with --export, written out.
"""

from __future__ import annotations

import argparse
import logging
import sys

import ray

from cvmatch_ray.config import Settings, check_tenant
from cvmatch_ray.pipelines.export import export_outcomes
from cvmatch_ray.pipelines.ray_ingest import run_ingest
from cvmatch_ray.progress import JobStatus

logger = logging.getLogger("cvmatch.jobs.bulk_ingest")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", required=True, nargs="+", help="Folders/files, or one URI (s3://...).")
    parser.add_argument("--db", default=None, help="LanceDB URI (default: CVMATCH_DATA_DIR).")
    parser.add_argument(
        "--tenant", type=check_tenant, default=None, help="Whose data to read and write (default: CVMATCH_TENANT or 'default')."
    )
    parser.add_argument("--kind", choices=("cv", "jd"), default="cv")
    parser.add_argument("--export", default=None, help="Write per-file outcomes to this .csv or .parquet path.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    settings = Settings()
    if args.db:
        settings = settings.model_copy(update={"data_dir": args.db})
    if args.tenant:
        settings = settings.model_copy(update={"tenant": args.tenant})
    ray.init(address=settings.ray_address, namespace=settings.ray_namespace, log_to_driver=False)
    try:
        report = run_ingest(
            args.input,
            settings,
            kind=args.kind,
            on_progress=lambda done, total: logger.info("progress: %d/%d files", done, total),
        )
    except FileNotFoundError as e:
        logger.error("%s", e)
        return 2
    for o in report.failed:
        logger.warning("failed: %s at %s: %s", o.file, o.stage, o.error)
    logger.info(
        "job %s %s: %d files, %d stored, %d already stored, %d failed",
        report.job_id, report.status.value, len(report.outcomes), report.stored,
        sum(o.skipped for o in report.outcomes), len(report.failed),
    )
    if args.export:
        export_outcomes(report.outcomes, args.export)
    return 0 if report.status is JobStatus.succeeded else 1


if __name__ == "__main__":
    sys.exit(main())
