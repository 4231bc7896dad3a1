"""What erasing CVs costs: ``Store.delete_cv`` on a pool of N stored CVs (synthetic rows).

    python benchmarks/bench_erasure.py [--sizes 10000 100000] [--batch 1 10] [--json]

The pool is written in batches and compacted (``Store.optimize``), as a long-running
deployment's is, with the lookup and full-text indexes built; then one CV, and then a batch
of CVs deleted together (they share one erasure), are erased with ``erase_grace_s = 0``
(the grace is a wait, not work). Each row reports the erasure's wall time and how much of
it is the full-text index rebuild (timed separately on the same table).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from datetime import timedelta

from _synthetic import fill
from rich.console import Console
from rich.table import Table

from cvmatch_ray.storage.tables import Store


def _erase(store: Store, cv_ids: list[str]) -> float:
    """Seconds to erase ``cv_ids``, deleted together from as many threads."""
    threads = [threading.Thread(target=store.delete_cv, args=(cv_id,)) for cv_id in cv_ids]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 10], help="CVs deleted together.")
    parser.add_argument("--json", action="store_true", help="Print the rows as JSON instead of a table.")
    args = parser.parse_args()

    rows = []
    for n in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            store = Store(tmp, dim=384, erase_grace=timedelta(0))
            _, ids = fill(store, n)
            store.ensure_search_indexes(ann_min_rows=10**12)
            table = store._table("cvs", create=False)
            start = time.perf_counter()
            store._rebuild_fulltext_index(table)
            fts = time.perf_counter() - start
            used = 0
            for k in args.batch:
                victims = ids[used * 7 + 13 :: max(1, n // (k * 3))][:k]  # spread over fragments
                used += k
                seconds = _erase(store, victims)
                assert not any(store.has_cv(v) for v in victims)
                rows.append({
                    "cvs": n, "deleted_together": k, "erase_s": round(seconds, 3),
                    "fulltext_rebuild_s": round(fts, 3), "fragments": len(table.to_lance().get_fragments()),
                })
    if args.json:
        print(json.dumps({"load_1min": os.getloadavg()[0], "rows": rows}, indent=2))
        return
    out = Table(title=f"Erasing CVs (grace 0; load {os.getloadavg()[0]:.1f})")
    for col in ("CVs", "deleted together", "erase (s)", "of which FTS rebuild (s)", "fragments"):
        out.add_column(col, justify="right")
    for r in rows:
        out.add_row(f"{r['cvs']:,}", str(r["deleted_together"]), f"{r['erase_s']:.2f}",
                    f"{r['fulltext_rebuild_s']:.2f}", str(r["fragments"]))
    Console().print(out)


if __name__ == "__main__":
    main()
