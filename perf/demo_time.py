"""Wall time of `make demo` from a fresh run folder, install excluded, with each stage's time.

Runs `make install` first (not timed), then `make demo DEMO_OUT=OUT` into an empty OUT, and prints the
total wall time against the 10-minute target and the seconds `manifest.json` recorded for every stage.
The converted SmolLM2 folder and DeepSpeed's compiled CPU Adam stay cached between runs (as on any
second use); `--cold` times a first use by pointing both caches at empty folders.

    python perf/demo_time.py --label idle
    python perf/demo_time.py --label loaded --out runs/demo-timed
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from recipes.config import STAGE_NAMES
from recipes.layout import RunLayout

REPO = Path(__file__).resolve().parents[1]
TARGET_SECONDS = 600


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/demo-timed", help="DEMO_OUT for this run (emptied first)")
    parser.add_argument("--label", default="", help="how loaded the machine is (printed with the figures)")
    parser.add_argument("--cold", action="store_true", help="empty model-conversion and DeepSpeed build caches")
    args = parser.parse_args()

    out = (REPO / args.out).resolve()
    if out.exists():
        shutil.rmtree(out)
    env = dict(os.environ)
    if args.cold:
        cold = Path(tempfile.mkdtemp(prefix="tops-cold-"))
        env.update(TOPS_CACHE_DIR=str(cold / "tops"), TORCH_EXTENSIONS_DIR=str(cold / "torch_extensions"))
    subprocess.run(["make", "install"], cwd=REPO, check=True, env=env)
    started = time.perf_counter()
    result = subprocess.run(["make", "demo", f"DEMO_OUT={out}"], cwd=REPO, env=env)
    wall = time.perf_counter() - started
    stages = json.loads(RunLayout(out / "pipeline").manifest.read_text())["stages"]
    print(f"\nmake demo ({args.label or 'unlabelled'} machine, {os.cpu_count()} cores): exit {result.returncode}, "
          f"{wall:.0f} s wall ({wall / TARGET_SECONDS:.2f} x the {TARGET_SECONDS} s target)")
    for name in sorted(stages, key=lambda n: STAGE_NAMES.index(n) if n in STAGE_NAMES else len(STAGE_NAMES)):
        record = stages[name]
        seconds = record.get("seconds")
        print(f"  {name:<12} {record['status']:<8} {'' if seconds is None else f'{seconds:8.1f} s'}")
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
