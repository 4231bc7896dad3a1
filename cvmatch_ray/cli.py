"""The ``cvmatch`` command line.

The ``--json`` outputs are a contract that scripts rely on:

- ``parse``:  ``[{"file", "profile"} | {"file", "error"}]``
- ``ingest``: ``[{"file", "id"} | {"file", "error", "stage"}]``
- ``rank`` and ``match``: a list sorted by score, one object per CV:
  ``{"cv_id", "file", "score", "breakdown", "matched_skills", "missing_required",
  "missing_preferred"}``; a CV that failed appears (last) with ``"error"``.

Exit codes: 0 when the command ran (individual files may carry an ``error``), 1 when every
input failed, 2 for bad usage or an unknown id.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cvmatch_ray.config import Settings
from cvmatch_ray.schemas import MatchResult

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Ingest CVs and job descriptions; rank CVs for a job.")
console = Console(stderr=True)
out = Console()
if not out.is_terminal:
    # Piped or captured output: wide enough for the ranking table to stay readable.
    out = Console(width=160)

EXIT_ALL_FAILED = 1
EXIT_USAGE = 2

DbOption = Annotated[Optional[str], typer.Option("--db", help="LanceDB URI (default: CVMATCH_DATA_DIR or ./cvmatch_data).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]


@app.callback()
def _main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress to stderr.")] = False) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


# ------------------------------------------------------------------------ helpers


def _settings(db: str | None) -> Settings:
    settings = Settings()
    if db:
        settings = settings.model_copy(update={"data_dir": db})
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


def _fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    console.print(f"[red]error:[/red] {message}")
    return typer.Exit(code)


def _ingestor(settings: Settings):
    # Imported here: loading the encoder takes seconds and `--help` should not pay for it.
    from cvmatch_ray.ingest import Ingestor

    return Ingestor.from_settings(settings)


def _ingest_with_bar(ingestor, files: list[Path], kind: str, label: str):
    with _progress() as bar:
        task = bar.add_task(label, total=len(files))
        return ingestor.ingest(_read(files), kind=kind, on_progress=lambda n: bar.update(task, completed=n))


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
            table.add_row("", "[red]failed[/red]", row["file"] or "", "", "", "", "", "", "", "", f"[red]{row['error']}[/red]")
            continue
        b = row["breakdown"]
        table.add_row(
            str(i),
            f"{row['score']:.1f}",
            Path(row["file"]).name if row.get("file") else row["cv_id"][:12],
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
    from cvmatch_ray.ingest import IngestError, extract_text, standardize
    from cvmatch_ray.standardize.base import make_standardizer

    settings = Settings()
    standardizer = make_standardizer(settings)
    kind = "jd" if jd else "cv"
    results: list[dict[str, Any]] = []
    for path in _files(files):
        try:
            text, _, _ = extract_text(path.read_bytes(), filename=path.name, settings=settings)
            results.append({"file": str(path), "profile": standardize(text, kind, standardizer).model_dump(mode="json")})
        except IngestError as e:
            results.append({"file": str(path), "error": str(e)})
    if as_json:
        _print_json(results)
    else:
        for r in results:
            out.rule(r["file"])
            if "error" in r:
                out.print(f"[red]{r['error']}[/red]")
            else:
                out.print_json(json.dumps(r["profile"], ensure_ascii=False))
    if results and all("error" in r for r in results):
        raise typer.Exit(EXIT_ALL_FAILED)


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders.")],
    kind: Annotated[str, typer.Option("--kind", help="cv or jd.")] = "cv",
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Extract, standardize, embed and store documents (idempotent: same bytes, same id)."""
    if kind not in ("cv", "jd"):
        raise _fail(f"--kind must be 'cv' or 'jd', not {kind!r}")
    files = list(_files(paths))
    outcomes = _ingest_with_bar(_ingestor(_settings(db)), files, kind, f"ingesting {kind}s")
    rows = [
        {"file": o.file, "id": o.id} if o.ok else {"file": o.file, "error": o.error, "stage": o.stage} for o in outcomes
    ]
    if as_json:
        _print_json(rows)
    else:
        table = Table("file", "id", "status")
        for o in outcomes:
            status = "[red]" + f"{o.stage}: {o.error}" + "[/red]" if not o.ok else ("already stored" if o.skipped else "stored")
            table.add_row(o.file or "", o.id or "", status)
        out.print(table)
    if outcomes and not any(o.ok for o in outcomes):
        raise typer.Exit(EXIT_ALL_FAILED)


@app.command()
def rank(
    jd: Annotated[Path, typer.Option("--jd", help="The job description file.")],
    cvs: Annotated[list[Path], typer.Option("--cvs", help="A folder (or file) of CVs; repeatable.")],
    top: Annotated[Optional[int], typer.Option("--top", help="Show the best N only.")] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """The main job in one command: ingest a JD and a folder of CVs, then rank the CVs."""
    if not jd.is_file():
        raise _fail(f"no such JD file: {jd}")
    settings = _settings(db)
    ingestor = _ingestor(settings)
    jd_outcome = ingestor.ingest_one(jd.read_bytes(), kind="jd", filename=str(jd))
    if not jd_outcome.ok:
        raise _fail(f"the JD could not be read: {jd_outcome.stage}: {jd_outcome.error}")
    files = list(_files(cvs))
    outcomes = _ingest_with_bar(ingestor, files, "cv", "ingesting CVs")

    from cvmatch_ray.match.rank import rank_stored

    good = {o.id: o.file for o in outcomes if o.ok}
    results = rank_stored(ingestor.store, jd_outcome.id, list(good), top_k=top, weights=settings.weights) if good else []
    rows = [_result_row(r, good[r.cv_id]) for r in results]
    rows += [{"cv_id": o.id, "file": o.file, "error": f"{o.stage}: {o.error}"} for o in outcomes if not o.ok]
    if as_json:
        _print_json(rows)
    else:
        _print_ranking(rows, f"CVs ranked for {jd.name}")
    if outcomes and not good:
        raise typer.Exit(EXIT_ALL_FAILED)


@app.command()
def match(
    jd_id: Annotated[str, typer.Option("--jd-id", help="A stored JD's id.")],
    cv_id: Annotated[Optional[list[str]], typer.Option("--cv-id", help="Stored CV ids (default: all).")] = None,
    top: Annotated[Optional[int], typer.Option("--top", help="Show the best N only.")] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Rank stored CVs against a stored JD."""
    from cvmatch_ray.embed import Embedder
    from cvmatch_ray.match.rank import UnknownDocument, rank_stored
    from cvmatch_ray.store import Store

    settings = _settings(db)
    store = Store(settings.data_dir, dim=Embedder.from_settings(settings).dim)
    wanted = list(dict.fromkeys(cv_id or []))
    missing = [c for c in wanted if not store.has_cv(c)]
    try:
        results = rank_stored(store, jd_id, wanted or None, top_k=top, weights=settings.weights)
    except UnknownDocument as e:
        raise _fail(str(e)) from e
    except ValueError as e:  # malformed id
        raise _fail(str(e)) from e
    files = store.filenames([r.cv_id for r in results])
    rows = [_result_row(r, files.get(r.cv_id)) for r in results]
    rows += [{"cv_id": c, "file": None, "error": "no stored CV with this id"} for c in missing]
    if as_json:
        _print_json(rows)
    else:
        _print_ranking(rows, f"CVs ranked for JD {jd_id}")
    if wanted and len(missing) == len(wanted):
        raise typer.Exit(EXIT_ALL_FAILED)


if __name__ == "__main__":  # pragma: no cover
    app()
