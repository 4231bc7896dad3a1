"""Bulk matching as a Ray job: one JD against many stored CVs, in parallel chunks.

    ray job submit --working-dir . -- python jobs/bulk_match.py --jd-id ID [--cv-ids-file F] [--db URI] [--tenant T]
    ray job submit --working-dir . -- python jobs/bulk_match.py --jd FILE [--cvs DIR] [--export out.parquet]

With --jd FILE the JD is ingested first; with --cvs DIR those CVs are ingested (Ray Data)
and matched, otherwise every stored CV is. Exits non-zero only when the job failed.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import ray

from cvmatch_ray.config import Settings, check_tenant
from cvmatch_ray.errors import UnknownDocument
from cvmatch_ray.match.rank import job_results
from cvmatch_ray.pipelines.export import export_results
from cvmatch_ray.pipelines.matching import create_match_job, run_plan
from cvmatch_ray.pipelines.ray_ingest import run_ingest
from cvmatch_ray.progress import JobStatus
from cvmatch_ray.storage.tables import Store

logger = logging.getLogger("cvmatch.jobs.bulk_match")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    jd = parser.add_mutually_exclusive_group(required=True)
    jd.add_argument("--jd-id", help="A stored JD's id.")
    jd.add_argument("--jd", help="A JD file to ingest and match against.")
    parser.add_argument("--cvs", nargs="+", default=None, help="CV folders/files (or one URI) to ingest and match.")
    parser.add_argument("--cv-ids-file", default=None, help="A file with one stored CV id per line.")
    parser.add_argument("--db", default=None, help="LanceDB URI (default: CVMATCH_DATA_DIR).")
    parser.add_argument(
        "--tenant", type=check_tenant, default=None, help="Whose data to read and write (default: CVMATCH_TENANT or 'default')."
    )
    parser.add_argument("--chunk-size", type=int, default=None)
    parser.add_argument("--top", type=int, default=None, help="Export only the best N.")
    parser.add_argument("--export", default=None, help="Write ranked results to this .csv or .parquet path.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    settings = Settings()
    if args.db:
        settings = settings.model_copy(update={"data_dir": args.db})
    if args.tenant:
        settings = settings.model_copy(update={"tenant": args.tenant})
    ray.init(address=settings.ray_address, namespace=settings.ray_namespace, log_to_driver=False)

    jd_id = args.jd_id
    if args.jd:
        report = run_ingest([args.jd], settings, kind="jd")
        if report.status is not JobStatus.succeeded:
            logger.error("the JD could not be ingested: %s", report.outcomes[0].error)
            return 1
        jd_id = report.outcomes[0].id
    cv_ids = None
    if args.cvs:
        report = run_ingest(args.cvs, settings, kind="cv")
        cv_ids = [o.id for o in report.outcomes if o.ok]
    elif args.cv_ids_file:
        cv_ids = [line.strip() for line in Path(args.cv_ids_file).read_text().splitlines() if line.strip()]

    try:
        plan = create_match_job(settings, jd_id=jd_id, cv_ids=cv_ids, chunk_size=args.chunk_size)
    except (UnknownDocument, ValueError) as e:
        logger.error("%s", e)
        return 2
    status = run_plan(settings, plan)
    logger.info("match job %s for JD %s: %s (%d CVs)", plan.job_id, jd_id, status.value, len(plan.cv_ids))
    if args.export and status is JobStatus.succeeded:
        store = Store.open(settings.tenant_dir, settings.store)
        results = job_results(store, plan.job_id, idf_sample=settings.retrieval.lexical_idf_sample)
        export_results(results[: args.top] if args.top else results, args.export)
    return 0 if status is JobStatus.succeeded else 1


if __name__ == "__main__":
    sys.exit(main())
