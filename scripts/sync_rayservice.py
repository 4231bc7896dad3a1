"""Copy serve_config.gpu.yaml into deploy/rayservice.yaml's ``serveConfigV2``, verbatim.

    python scripts/sync_rayservice.py            # rewrite the manifest's block
    python scripts/sync_rayservice.py --check    # exit 1 when it differs from the file

The Serve config has one home, ``serve_config.gpu.yaml`` (``serve deploy`` reads it, and so do
the tests); the RayService embeds a copy as a YAML block scalar, and tests/test_deploy.py fails
when the copy and the file differ. Only that block changes: the rest of the manifest, its
comments included, stays as written.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SERVE_CONFIG = REPO / "serve_config.gpu.yaml"
MANIFEST = REPO / "deploy" / "rayservice.yaml"

# The key and its literal block indicator, alone on their line (no chomping or indentation
# indicator: "clip" keeps exactly one final newline, which the Serve config ends with).
_KEY = re.compile(r"^(?P<indent> *)serveConfigV2: \|\n", re.MULTILINE)


def render(manifest: str, serve_config: str) -> str:
    """``manifest`` with its ``serveConfigV2`` block replaced by ``serve_config``.

    Raises:
        ValueError: the manifest has no (or several) ``serveConfigV2: |`` lines, or the config
            would not survive a block scalar unchanged (blank last lines, no final newline).
    """
    keys = list(_KEY.finditer(manifest))
    if len(keys) != 1:
        raise ValueError(f"expected one 'serveConfigV2: |' line, found {len(keys)}")
    if not serve_config.endswith("\n") or serve_config.endswith("\n\n"):
        raise ValueError("the Serve config must end with exactly one newline")
    key = keys[0]
    outer = len(key.group("indent"))
    body_indent = " " * (outer + 2)

    # The old block: every following line that is blank or indented deeper than the key.
    lines = manifest[key.end():].splitlines(keepends=True)
    taken = 0
    for line in lines:
        if line.strip() and len(line) - len(line.lstrip(" ")) <= outer:
            break
        taken += 1
    rest = "".join(lines[taken:])

    block = "".join(body_indent + line if line.strip() else "\n" for line in serve_config.splitlines(keepends=True))
    return manifest[: key.end()] + block + rest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report whether the manifest is up to date")
    args = parser.parse_args(argv)
    current = MANIFEST.read_text(encoding="utf-8")
    wanted = render(current, SERVE_CONFIG.read_text(encoding="utf-8"))
    if wanted == current:
        print(f"{MANIFEST.relative_to(REPO)} is up to date")
        return 0
    if args.check:
        print(f"{MANIFEST.relative_to(REPO)} is stale: run python scripts/sync_rayservice.py", file=sys.stderr)
        return 1
    MANIFEST.write_text(wanted, encoding="utf-8")
    print(f"rewrote serveConfigV2 in {MANIFEST.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
