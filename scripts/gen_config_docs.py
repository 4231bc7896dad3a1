"""Write docs/configuration.md from the ``Settings`` field descriptions (the one place defaults live).

    python scripts/gen_config_docs.py           # write the page
    python scripts/gen_config_docs.py --check   # exit 1 if the page is stale (tests/test_docs.py does this too)
"""

from __future__ import annotations

import argparse
import sys
import typing
from pathlib import Path

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from cvmatch_ray.config import Settings

PAGE = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"
PREFIX = Settings.model_config.get("env_prefix", "")
DELIMITER = Settings.model_config.get("env_nested_delimiter", "__")

HEADER = f"""# Configuration

Generated from `cvmatch_ray/config.py` by `python scripts/gen_config_docs.py`; do not edit by hand
(`tests/test_docs.py` fails when this page is stale).

Every setting is an environment variable with the prefix `{PREFIX}`; a nested setting joins its
section and name with `{DELIMITER}` (`{PREFIX}WEIGHTS{DELIMITER}SEMANTIC=0.3`). A list or a section
can also be given whole as JSON (`{PREFIX}API_KEYS='{{"k1": "acme"}}'`). In a Serve config, `args:` override
the environment (see `cvmatch_ray/serve/app.py` `AppArgs`). Every default works offline on a laptop.
"""


def _model_of(annotation: object) -> type[BaseModel] | None:
    """The pydantic model a field holds (``X``, ``X | None``), if any."""
    candidates = typing.get_args(annotation) or (annotation,)
    for c in candidates:
        if isinstance(c, type) and issubclass(c, BaseModel):
            return c
    return None


def _type_name(annotation: object) -> str:
    text = getattr(annotation, "__name__", None) if not typing.get_args(annotation) else None
    return (text or str(annotation).replace("typing.", "")).replace("|", "\\|")


def _default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        value = field.default_factory()
        return "" if isinstance(value, BaseModel) else f"`{value!r}`"
    if field.default is PydanticUndefined:
        return "required"
    return f"`{field.default!r}`"


def _rows(model: type[BaseModel], env: str) -> list[str]:
    rows: list[str] = []
    sections: list[tuple[str, type[BaseModel], str]] = []
    for name, field in model.model_fields.items():
        var = f"{env}{name.upper()}"
        nested = _model_of(field.annotation)
        if nested is not None:
            sections.append((var, nested, (field.description or nested.__doc__ or "").strip().splitlines()[0]))
            continue
        description = (field.description or "").replace("|", "\\|").replace("\n", " ")
        rows.append(f"| `{var}` | `{_type_name(field.annotation)}` | {_default(field)} | {description} |")
    out = ["| variable | type | default | meaning |", "|---|---|---|---|", *rows] if rows else []
    for var, nested, doc in sections:
        out += ["", f"## `{var}{DELIMITER}*`", "", doc, "", *_rows(nested, f"{var}{DELIMITER}")]
    return out


def render() -> str:
    """The whole page, as it should be."""
    return "\n".join([HEADER, "## Top level", "", *_rows(Settings, PREFIX), ""])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if docs/configuration.md is stale")
    args = ap.parse_args()
    text = render()
    if args.check:
        if not PAGE.exists() or PAGE.read_text(encoding="utf-8") != text:
            sys.stderr.write("docs/configuration.md is stale: run python scripts/gen_config_docs.py\n")
            return 1
        return 0
    PAGE.parent.mkdir(exist_ok=True)
    PAGE.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
