# Copyright 2026 The TER authors. Licensed under the Apache License, Version 2.0.
"""Wall time of the main training job cold (empty feature cache) and warm (every feature cached), in one run.

    python scripts/bench_train.py                       # the demo corpus, train.py's defaults
    python scripts/bench_train.py --train_args "--manifest my.csv --epochs 10"

Both runs are `python scripts/train.py --output_dir <tmp> <train_args>` in a subprocess with `TER_CACHE` set to one
fresh temporary folder: the first run encodes every item (cold), the second reads them all from the cache (warm).
The converted Whisper encoder, which also lives under `TER_CACHE`, is copied in beforehand so that both runs time the
same job; `--include_conversion` leaves it out, so the cold run also converts the CTranslate2 weights.
Prints both times and the ratio cold / warm; a failed run prints its exit status and the end of its output.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

from modeling_ter.encoders.whisper_conversion import whisper_tiny_en_path

TRAIN_SCRIPT = Path(__file__).resolve().with_name("train.py")


def timed_run(cache: Path, output_dir: Path, train_args: Sequence[str]) -> tuple[float, int, list[str]]:
    """`(seconds, exit status, output lines)` of one training run with `TER_CACHE=cache`."""
    command = [sys.executable, str(TRAIN_SCRIPT), "--output_dir", str(output_dir), *train_args]
    start = time.perf_counter()
    result = subprocess.run(command, env={**os.environ, "TER_CACHE": str(cache)}, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    return seconds, result.returncode, (result.stdout + result.stderr).replace("\r", "\n").strip().splitlines()


def main(argv: Optional[Sequence[str]] = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description="Main training job, cold vs warm feature cache.")
    parser.add_argument("--train_args", default="", help="extra arguments for scripts/train.py, as one string")
    parser.add_argument(
        "--include_conversion",
        action="store_true",
        help="do not pre-copy the converted Whisper encoder: the cold run converts it too",
    )
    args = parser.parse_args(argv)
    train_args = shlex.split(args.train_args)
    times = {}
    with tempfile.TemporaryDirectory(prefix="ter_bench_train_") as folder:
        cache = Path(folder) / "cache"
        cache.mkdir()
        if not args.include_conversion:
            converted = whisper_tiny_en_path()
            shutil.copytree(converted, cache / converted.name)
        for name in ("cold", "warm"):
            seconds, status, lines = timed_run(cache, Path(folder) / name, train_args)
            times[name] = seconds
            print(f"{name}: {seconds:.1f} s (exit status {status})")
            for line in lines:  # train.py's feature-cache report: how many items were encoded, how many read
                if "encoded now" in line:
                    print(f"  {line.strip()}")
            if status != 0:
                print(f"  the {name} run failed; its last lines:\n" + "\n".join(lines[-5:]))
    print(
        f"cold / warm = {times['cold'] / times['warm']:.2f}  (load average {' '.join(f'{x:.2f}' for x in os.getloadavg())})"
    )
    return times


if __name__ == "__main__":
    main()
