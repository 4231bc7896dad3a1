"""Regenerate the web page's screenshots in ``docs/img/`` (the README shows them).

    python scripts/screenshots.py

Runs ``tests/test_web.py`` (the real Serve app, Ray and headless Chromium; see scripts/test.sh for
the apt packages), which saves a screenshot of each view, then keeps a few of them here as
palette PNGs, small enough to commit.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[1]
#: The test's screenshot -> the name it is kept under in docs/img/.
KEEP = {"01-upload.png": "web-upload.png", "03-ranking.png": "web-ranking.png", "04-profile-blind.png": "web-profile.png"}
MAX_BYTES = 200_000


def shrink(source: Path, target: Path, colors: int = 64) -> int:
    """Save ``source`` as a palette PNG at ``target``; its size in bytes."""
    with Image.open(source) as image:
        image.convert("RGB").quantize(colors=colors, method=Image.Quantize.MEDIANCUT).save(target, optimize=True)
    return target.stat().st_size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "img")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as shots:
        env = os.environ | {
            "CVMATCH_SCREENSHOTS": shots,
            # Ray workers import this checkout's code, not an installed copy.
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        }
        run = subprocess.run([sys.executable, "-m", "pytest", "tests/test_web.py", "-x", "-q", "-p", "no:warnings"],
                             cwd=REPO, env=env, check=False)
        if run.returncode != 0:
            return run.returncode
        for name, kept in KEEP.items():
            size = shrink(Path(shots) / name, args.out / kept)
            if size > MAX_BYTES:
                size = shrink(Path(shots) / name, args.out / kept, colors=16)
            print(f"{args.out / kept}: {size // 1024} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
