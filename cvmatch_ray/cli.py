"""The ``cvmatch`` command line.

The ``--json`` outputs are a contract that scripts rely on:

- ``parse``:  ``[{"file", "profile"} | {"file", "error"}]``
- ``ingest``: ``[{"file", "id"} | {"file", "error", "stage", "code"}]``
- ``rank`` and ``match``: a list sorted by score, one object per CV:
  ``{"cv_id", "file", "score", "breakdown", "matched_skills", "missing_required",
  "missing_preferred"}``; a CV that failed appears (last) with ``"error"``.

Exit codes: 0 when the command ran (individual files may carry an ``error``), 1 when every
input failed, 2 for bad usage or an unknown id.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.text import Text
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cvmatch_ray.config import Settings, check_tenant
from cvmatch_ray.schemas import MatchResult

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Ingest CVs and job descriptions; rank CVs for a job.")
console = Console(stderr=True)
out = Console()
if not out.is_terminal:
    # Piped or captured output: wide enough for the ranking table to stay readable.
    out = Console(width=160)

EXIT_ALL_FAILED = 1
EXIT_USAGE = 2
# Above this many documents `--engine auto` runs on Ray (its start-up costs seconds).
RAY_THRESHOLD = 200

DbOption = Annotated[Optional[str], typer.Option("--db", help="LanceDB URI (default: CVMATCH_DATA_DIR or ./cvmatch_data).")]
TenantOption = Annotated[
    Optional[str],
    typer.Option("--tenant", help="Whose CVs, JDs and jobs to read and write (default: CVMATCH_TENANT or 'default')."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]
EngineOption = Annotated[
    str,
    typer.Option(
        "--engine",
        help=f"local (this process), ray (Ray Data + chunked Ray matching), or auto: Ray when CVMATCH_RAY_ADDRESS is set or for {RAY_THRESHOLD}+ documents.",
    ),
]


@app.callback()
def _main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress to stderr.")] = False) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


# ------------------------------------------------------------------------ helpers


def _settings(db: str | None, tenant: str | None = None) -> Settings:
    settings = Settings()
    if db:
        settings = settings.model_copy(update={"data_dir": db})
    if tenant is not None:
        try:
            settings = settings.model_copy(update={"tenant": check_tenant(tenant)})
        except ValueError as e:
            raise _fail(str(e)) from e
    return settings


def _files(paths: Sequence[Path]) -> Iterator[Path]:
    """Files named, and the files in folders named (recursively, hidden ones skipped), sorted."""
    for path in paths:
        if path.is_dir():
            yield from sorted(
                p for p in path.rglob("*") if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
        elif path.is_file():
            yield path
        else:
            raise typer.BadParameter(f"no such file or folder: {path}")


def _read(paths: Sequence[Path]) -> Iterator[tuple[str, bytes]]:
    for p in paths:
        yield str(p), p.read_bytes()


def _progress() -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )


def _print_json(obj: Any) -> None:
    out.print_json(json.dumps(obj, ensure_ascii=False), indent=2) if out.is_terminal else print(
        json.dumps(obj, ensure_ascii=False, indent=2)
    )


def _emit_ranking(rows: list[dict[str, Any]], title: str, as_json: bool, *, all_failed: bool) -> None:
    """Print ranked rows (JSON or a table); exit 1 when every input failed."""
    if as_json:
        _print_json(rows)
    else:
        _print_ranking(rows, title)
    if all_failed:
        raise typer.Exit(EXIT_ALL_FAILED)


def _fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    # The message is data (it may hold "[...]", e.g. a config line): never read as markup.
    console.print(Text.assemble(("error:", "red"), " ", message))
    return typer.Exit(code)


class _Local:
    """Run everything in this process: the fast path for a handful of documents."""

    def __init__(self, settings: Settings) -> None:
        # Imported here: loading the encoder takes seconds and `--help` should not pay for it.
        from cvmatch_ray.storage.tables import Store

        self.settings = settings
        self.store = Store.open(settings.tenant_dir, settings.store)
        self._ingestor = None

    @property
    def ingestor(self):
        if self._ingestor is None:  # the encoder and taxonomy load only when something is ingested
            from cvmatch_ray.embed import Embedder
            from cvmatch_ray.local_ingest import LocalIngestor
            from cvmatch_ray.standardize import make_standardizer

            self._ingestor = LocalIngestor(
                settings=self.settings, store=self.store,
                standardizer=make_standardizer(self.settings), embedder=Embedder.from_settings(self.settings),
            )
        return self._ingestor

    def ingest(self, files: list[Path], kind: str, label: str):
        with _progress() as bar:
            task = bar.add_task(label, total=len(files))
            return self.ingestor.ingest(_read(files), kind=kind, on_progress=lambda n: bar.update(task, completed=n))

    def rank(self, jd_id: str, cv_ids: list[str] | None, top: int | None) -> list[MatchResult]:
        from cvmatch_ray.match.rank import rank_stored

        return rank_stored(
            self.store, jd_id, cv_ids, top_k=top, weights=self.settings.weights,
            idf_sample=self.settings.retrieval.lexical_idf_sample,
        )


def _start_ray(settings: Settings) -> None:
    """Connect to (or start) Ray for one command, its console logs kept off this terminal.

    Ray Data logs each pipeline's progress every 10 s when stderr is not a terminal and draws
    bars of its own when it is; the CLI shows one bar instead (fed by the progress actor) and
    stays quiet otherwise. Ray's logs still go to the session's log files; ``--verbose``
    keeps them on the console too.
    """
    import ray

    verbose = logging.getLogger().isEnabledFor(logging.INFO)
    with warnings.catch_warnings():
        # Ray forks its processes after LanceDB is loaded; the child execs at once.
        warnings.filterwarnings("ignore", message="lancedb fork support", category=RuntimeWarning)
        ray.init(
            address=settings.ray_address, namespace=settings.ray_namespace, log_to_driver=verbose,
            logging_level=logging.INFO if verbose else logging.WARNING,
        )
    if verbose:
        return
    import ray.data

    for handler in logging.getLogger("ray.data").handlers:
        if handler.name == "console":
            handler.setLevel(logging.ERROR)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False


class _OnRay:
    """Run on Ray: Ray Data ingest and chunked parallel matching, the bar fed by the progress actor."""

    def __init__(self, settings: Settings) -> None:
        import ray

        from cvmatch_ray.storage.tables import Store

        self.settings = settings
        if not ray.is_initialized():
            _start_ray(settings)
        self.store = Store.open(settings.tenant_dir, settings.store)

    def _follow(self, job_id: str, label: str, total: int, work) -> Any:
        """Run ``work()`` in a thread while the bar polls the job in the progress actor."""
        import threading

        import ray

        from cvmatch_ray.progress import get_progress_actor

        actor = get_progress_actor(self.settings)
        box: dict[str, Any] = {}
        thread = threading.Thread(target=lambda: box.update(result=_capture(work)), daemon=True)
        thread.start()
        with _progress() as bar:
            task = bar.add_task(label, total=total)
            while thread.is_alive():
                thread.join(0.25)
                try:
                    job = ray.get(actor.get.remote(job_id))
                except ray.exceptions.RayTaskError:
                    continue  # not created yet
                bar.update(task, total=job.total or total, completed=job.processed)
        result = box["result"]
        if isinstance(result, BaseException):
            raise result
        return result

    def ingest(self, files: list[Path], kind: str, label: str):
        import uuid

        from cvmatch_ray.pipelines.ray_ingest import run_ingest

        job_id = f"ingest_{uuid.uuid4().hex[:16]}"
        report = self._follow(
            job_id, label, len(files), lambda: run_ingest([str(f) for f in files], self.settings, kind=kind, job_id=job_id)
        )
        return report.outcomes

    def rank(self, jd_id: str, cv_ids: list[str] | None, top: int | None) -> list[MatchResult]:
        from cvmatch_ray.match.rank import job_results
        from cvmatch_ray.pipelines.matching import create_match_job, run_plan

        plan = create_match_job(self.settings, jd_id=jd_id, cv_ids=cv_ids)
        self._follow(plan.job_id, "matching", len(plan.cv_ids), lambda: run_plan(self.settings, plan))
        return job_results(self.store, plan.job_id, limit=top,
                           idf_sample=self.settings.retrieval.lexical_idf_sample)


def _capture(fn) -> Any:
    try:
        return fn()
    except BaseException as e:  # handed back to the main thread, which raises it
        return e


def _engine(settings: Settings, engine: str, n: int) -> _Local | _OnRay:
    if engine not in ("auto", "local", "ray"):
        raise _fail(f"--engine must be auto, local or ray, not {engine!r}")
    if engine == "ray" or (engine == "auto" and (settings.ray_address or n >= RAY_THRESHOLD)):
        return _OnRay(settings)
    return _Local(settings)


def _result_row(r: MatchResult, file: str | None) -> dict[str, Any]:
    return {
        "cv_id": r.cv_id,
        "file": file,
        "score": r.score,
        "breakdown": r.breakdown.model_dump(),
        "matched_skills": r.matched_skills,
        "missing_required": r.missing_required,
        "missing_preferred": r.missing_preferred,
        "explanation": r.explanation,
    }


def _print_ranking(rows: list[dict[str, Any]], title: str) -> None:
    table = Table(title=title, show_lines=False)
    for col in ("#", "score", "file / cv_id", "req", "pref", "sem", "exp", "edu", "title", "matched", "missing required"):
        table.add_column(col, overflow="fold")
    fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    for i, row in enumerate(rows, 1):
        if "error" in row:
            table.add_row("", "[red]failed[/red]", Text(row["file"] or ""), "", "", "", "", "", "", "", Text(row["error"], style="red"))
            continue
        b = row["breakdown"]
        table.add_row(
            str(i),
            f"{row['score']:.1f}",
            Text(Path(row["file"]).name if row.get("file") else row["cv_id"][:12]),
            *(fmt(b[k]) for k in ("required_skills", "preferred_skills", "semantic", "experience", "education", "title")),
            ", ".join(row["matched_skills"]),
            ", ".join(row["missing_required"]),
        )
    out.print(table)


# ----------------------------------------------------------------------- commands


@app.command()
def parse(
    files: Annotated[list[Path], typer.Argument(help="CV files (PDF, DOCX, TXT, MD, HTML).")],
    as_json: JsonOption = False,
    jd: Annotated[bool, typer.Option("--jd", help="Parse the files as job descriptions.")] = False,
) -> None:
    """Standardize files into profiles without storing anything."""
    from cvmatch_ray.process import Failed, RawDocument, extract_batch, standardize_batch
    from cvmatch_ray.standardize import make_standardizer

    settings = Settings()
    standardizer = make_standardizer(settings)
    kind = "jd" if jd else "cv"
    results: list[dict[str, Any]] = []
    for path in _files(files):
        extracted = extract_batch([RawDocument(path.read_bytes(), kind, path.name)], settings)
        [result] = standardize_batch(extracted, standardizer)
        if isinstance(result, Failed):
            # The step's message never names the file; this one-file answer does.
            results.append({"file": str(path), "error": f"{result.stage}: {path.name}: {result.message}"})
        else:
            results.append({"file": str(path), "profile": result.profile.model_dump(mode="json")})
    if as_json:
        _print_json(results)
    else:
        for r in results:
            out.rule(Text(r["file"]))
            if "error" in r:
                out.print(Text(r["error"], style="red"))
            else:
                out.print_json(json.dumps(r["profile"], ensure_ascii=False))
    if results and all("error" in r for r in results):
        raise typer.Exit(EXIT_ALL_FAILED)


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders.")],
    kind: Annotated[str, typer.Option("--kind", help="cv or jd.")] = "cv",
    db: DbOption = None,
    tenant: TenantOption = None,
    engine: EngineOption = "auto",
    as_json: JsonOption = False,
) -> None:
    """Extract, standardize, embed and store documents (idempotent: same bytes, same id)."""
    if kind not in ("cv", "jd"):
        raise _fail(f"--kind must be 'cv' or 'jd', not {kind!r}")
    files = list(_files(paths))
    settings = _settings(db, tenant)
    outcomes = _engine(settings, engine, len(files)).ingest(files, kind, f"ingesting {kind}s")
    rows = [
        {"file": o.file, "id": o.id} if o.ok else {"file": o.file, "error": o.error, "stage": o.stage, "code": o.code}
        for o in outcomes
    ]
    if as_json:
        _print_json(rows)
    else:
        table = Table("file", "id", "status")
        for o in outcomes:
            status = Text(f"{o.stage}: {o.error}", style="red") if not o.ok else ("already stored" if o.skipped else "stored")
            table.add_row(Text(o.file or ""), o.id or "", status)
        out.print(table)
    if outcomes and not any(o.ok for o in outcomes):
        raise typer.Exit(EXIT_ALL_FAILED)


@app.command()
def rank(
    jd: Annotated[Path, typer.Option("--jd", help="The job description file.")],
    cvs: Annotated[list[Path], typer.Option("--cvs", help="A folder (or file) of CVs; repeatable.")],
    top: Annotated[Optional[int], typer.Option("--top", help="Show the best N only.")] = None,
    db: DbOption = None,
    tenant: TenantOption = None,
    engine: EngineOption = "auto",
    as_json: JsonOption = False,
) -> None:
    """The main job in one command: ingest a JD and a folder of CVs, then rank the CVs."""
    if not jd.is_file():
        raise _fail(f"no such JD file: {jd}")
    settings = _settings(db, tenant)
    files = list(_files(cvs))
    runner = _engine(settings, engine, len(files))
    [jd_outcome] = runner.ingest([jd], "jd", "reading the JD")
    if not jd_outcome.ok:
        raise _fail(f"the JD could not be read: {jd_outcome.stage}: {jd_outcome.error}")
    outcomes = runner.ingest(files, "cv", "ingesting CVs")
    good = {o.id: o.file for o in outcomes if o.ok}
    results = runner.rank(jd_outcome.id, list(good), top) if good else []
    rows = [_result_row(r, good[r.cv_id]) for r in results]
    rows += [{"cv_id": o.id, "file": o.file, "error": f"{o.stage}: {o.error}"} for o in outcomes if not o.ok]
    _emit_ranking(rows, f"CVs ranked for {jd.name}", as_json, all_failed=bool(outcomes) and not good)


@app.command()
def match(
    jd_id: Annotated[str, typer.Option("--jd-id", help="A stored JD's id.")],
    cv_id: Annotated[Optional[list[str]], typer.Option("--cv-id", help="Stored CV ids (default: all).")] = None,
    top: Annotated[Optional[int], typer.Option("--top", help="Show the best N only.")] = None,
    db: DbOption = None,
    tenant: TenantOption = None,
    engine: EngineOption = "auto",
    as_json: JsonOption = False,
) -> None:
    """Rank stored CVs against a stored JD."""
    from cvmatch_ray.errors import UnknownDocument

    settings = _settings(db, tenant)
    local = _Local(settings)
    store = local.store
    wanted = list(dict.fromkeys(cv_id or []))
    try:
        missing = [c for c in wanted if not store.has_cv(c)]
        if not store.has_jd(jd_id):
            raise UnknownDocument(f"no JD with id {jd_id!r}")
    except (UnknownDocument, ValueError) as e:  # unknown or malformed id
        raise _fail(str(e)) from e
    n = len(wanted) if wanted else store.count_cvs()
    if not wanted and top is not None and engine != "ray":
        # The best N of the whole pool: ranked from memory, only N (+ a margin) scored in
        # full, answered in a fraction of a second even for 100,000 CVs (match.retrieve).
        from cvmatch_ray.match.retrieve import match_pool

        results = match_pool(store, jd_id, top_k=top, weights=settings.weights, settings=settings.retrieval).results
    else:
        runner = local if engine == "local" or (engine == "auto" and not settings.ray_address and n < RAY_THRESHOLD) else _engine(settings, engine, n)
        results = runner.rank(jd_id, [c for c in wanted if c not in missing] if wanted else None, top)
    files = store.filenames([r.cv_id for r in results])
    rows = [_result_row(r, files.get(r.cv_id)) for r in results]
    rows += [{"cv_id": c, "file": None, "error": "no stored CV with this id"} for c in missing]
    if as_json:
        _print_json(rows)
    else:
        _print_ranking(rows, f"CVs ranked for JD {jd_id}")
    if wanted and len(missing) == len(wanted):
        raise typer.Exit(EXIT_ALL_FAILED)


@app.command("rank-jobs")
def rank_jobs_command(
    cv: Annotated[Path, typer.Option("--cv", help="The CV file.")],
    jds: Annotated[list[Path], typer.Option("--jds", help="A folder (or file) of job descriptions; repeatable.")],
    top: Annotated[Optional[int], typer.Option("--top", help="Show the best N only.")] = None,
    db: DbOption = None,
    tenant: TenantOption = None,
    as_json: JsonOption = False,
) -> None:
    """Reverse matching: ingest a CV and a folder of JDs, then rank the JDs for the CV.

    Each score is the one `cvmatch rank` gives the same (JD, CV) pair.
    """
    from cvmatch_ray.match.rank import rank_jobs

    if not cv.is_file():
        raise _fail(f"no such CV file: {cv}")
    settings = _settings(db, tenant)
    runner = _Local(settings)
    [cv_outcome] = runner.ingest([cv], "cv", "reading the CV")
    if not cv_outcome.ok:
        raise _fail(f"the CV could not be read: {cv_outcome.stage}: {cv_outcome.error}")
    outcomes = runner.ingest(list(_files(jds)), "jd", "ingesting JDs")
    good = {o.id: o.file for o in outcomes if o.ok}
    results = rank_jobs(
        runner.store, cv_outcome.id, list(good), top_k=top, weights=settings.weights,
        idf_sample=settings.retrieval.lexical_idf_sample,
    ) if good else []
    rows = [_result_row(r, good[r.jd_id]) | {"jd_id": r.jd_id} for r in results]
    rows += [{"jd_id": o.id, "file": o.file, "error": f"{o.stage}: {o.error}"} for o in outcomes if not o.ok]
    _emit_ranking(rows, f"Jobs ranked for {cv.name}", as_json, all_failed=bool(outcomes) and not good)


@app.command()
def serve(
    host: Annotated[str, typer.Option("--host", help="Address the HTTP proxy binds.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port")] = 8000,
    ingress: Annotated[
        str,
        typer.Option(
            "--ingress",
            help="haproxy: HAProxy straight to the API replicas (lowest latency; ray[serve] "
            "brings the binary on Linux); proxy: Serve's proxy actor; auto: haproxy if "
            "a binary is found, else proxy.",
        ),
    ] = "auto",
    db: DbOption = None,
) -> None:
    """Run the HTTP API on Ray Serve until interrupted (the same app as `serve run serve_config.yaml`)."""
    from cvmatch_ray.serve.app import AppArgs, run_app, stop_app
    from cvmatch_ray.serve.env import resolve_ingress

    if ingress not in ("auto", "proxy", "haproxy"):
        raise _fail(f"--ingress must be auto, proxy or haproxy, not {ingress!r}")
    mode = resolve_ingress(ingress)  # type: ignore[arg-type]
    console.print(
        f"cvmatch API on http://{host}:{port} (ingress: {mode}; OpenAPI at /openapi.json); Ctrl-C to stop", markup=False
    )
    # SIGTERM (a supervisor, `kill`) stops the server the way Ctrl-C does.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        run_app(AppArgs(data_dir=db), host=host, port=port, ingress=mode, blocking=True)
    except RuntimeError as e:
        raise _fail(str(e)) from e
    except KeyboardInterrupt:
        console.print("stopping", markup=False)
    finally:
        stop_app()


if __name__ == "__main__":  # pragma: no cover
    app()
