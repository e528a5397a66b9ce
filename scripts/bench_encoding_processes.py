"""Feature extraction of the demo corpus with 1 and with 2 processes (one torch thread each), in the same run.

    python scripts/bench_encoding_processes.py [--processes 2] [--manifest data/manifest.csv]

Each configuration fills an empty cache with `modeling_ter.data.feature_cache.encode_missing`, every process taking
every N-th batch of the same length-sorted plan (as `scripts/train.py` does under `accelerate launch`); the wall time
runs from the start of the processes to the end of the last (the audio files are read once before, so that
neither run pays for a cold disk). The encoding phase alone (each process's
`encode_missing`, after its encoders are built: the part that more processes share out) is timed too, from the
earliest start to the latest end over the processes. Prints both times of both configurations, their speed-ups, and
whether the two caches hold identical features (same entries, bit-equal tensors).

The ceiling, in the same run: the bare audio-encoder forward on one fixed batch of 16 demo clips (processed once,
outside the timing), `--ceiling_batches` times in all, shared out the same way between 1 and N processes. No file,
no processor, no cache: the speed-up this machine gives N one-thread processes of the network itself, which the
encoding speed-up cannot pass.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MANIFEST = Path(__file__).resolve().parents[1] / "data" / "manifest.csv"
MODALITIES = ("audio", "text")


def demo_encoders(manifest: str, modalities: tuple[str, ...]) -> tuple[list[dict], object, object]:
    """`(manifest rows, default model, default processor)` for `modalities`, torch on one thread: what every process
    of either measurement builds before its timed part."""
    import torch

    from modeling_ter.data.manifest import read_manifest
    from modeling_ter.encoders.defaults import build_default_model, build_default_processor

    torch.set_num_threads(1)
    rows, _ = read_manifest(manifest)
    model = build_default_model(modalities, modality_options={"audio": {"use_weighted_layer_sum": True}})
    return rows, model, build_default_processor(modalities)


def append_span(times: str, start: float) -> None:
    """Appends `start` and now (`time.time()`, seconds) to `times`."""
    with open(times, "a") as file:
        file.write(f"{start} {time.time()}\n")


def encode_share(manifest: str, cache_dir: str, process_index: int, num_processes: int, times: str) -> None:
    """One process's share of the demo corpus's audio and text features; appends the encoding phase's span to
    `times`."""
    from modeling_ter.data.feature_cache import encode_missing

    rows, model, processor = demo_encoders(manifest, MODALITIES)
    items = {m: [row[m] for row in rows] for m in MODALITIES}
    start = time.time()
    encode_missing(model, processor, items, MODALITIES, cache_dir, 16, process_index, num_processes, False)
    append_span(times, start)


def forward_share(manifest: str, total_batches: int, process_index: int, num_processes: int, times: str) -> None:
    """This process's share of `total_batches` bare audio-encoder forwards of one batch of 16 demo clips; appends
    the span of the forwards to `times`."""
    import torch

    from modeling_ter.data.feature_cache import embed_processed

    rows, model, processor = demo_encoders(manifest, ("audio",))
    batch = processor(audio=[r["audio"] for r in rows if r["audio"]][:16], return_tensors="pt")
    model.eval()
    start = time.time()
    with torch.no_grad():
        for _ in range(process_index, total_batches, num_processes):
            embed_processed(model, batch, "audio")
    append_span(times, start)


def timed_run(manifest: str, cache_dir: str, num_processes: int, ceiling_batches: int = 0) -> tuple[float, float]:
    """`(wall time, phase)` in seconds of `num_processes` processes filling `cache_dir`, or, with `ceiling_batches`,
    sharing out that many bare encoder forwards (`cache_dir` then only holds the timing file)."""
    times = Path(cache_dir) / "encoding_times.txt"
    command = [sys.executable, __file__, "--manifest", manifest, "--cache_dir", cache_dir, "--times", str(times)]
    if ceiling_batches:
        command += ["--forward_only", "--ceiling_batches", str(ceiling_batches)]
    start = time.perf_counter()
    workers = [
        subprocess.Popen([*command, "--process_index", str(i), "--num_processes", str(num_processes)])
        for i in range(num_processes)
    ]
    if any(worker.wait() != 0 for worker in workers):
        raise RuntimeError("an encoding process failed")
    wall = time.perf_counter() - start
    spans = [tuple(map(float, line.split())) for line in times.read_text().splitlines()]
    times.unlink()
    return wall, max(end for _, end in spans) - min(begin for begin, _ in spans)


def same_caches(first: Path, second: Path) -> bool:
    from safetensors.torch import load_file

    entries = sorted(p.relative_to(first) for p in first.rglob("*.safetensors"))
    if entries != sorted(p.relative_to(second) for p in second.rglob("*.safetensors")):
        return False
    for entry in entries:
        a, b = load_file(first / entry), load_file(second / entry)
        if a.keys() != b.keys() or any(not (a[k] == b[k]).all() for k in a):
            return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifest", default=str(MANIFEST))
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--ceiling_batches", type=int, default=60, help="bare encoder forwards of the ceiling")
    parser.add_argument("--cache_dir", help=argparse.SUPPRESS)
    parser.add_argument("--process_index", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--num_processes", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--times", help=argparse.SUPPRESS)
    parser.add_argument("--forward_only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.process_index is not None and args.forward_only:
        forward_share(args.manifest, args.ceiling_batches, args.process_index, args.num_processes, args.times)
        return
    if args.process_index is not None:
        encode_share(args.manifest, args.cache_dir, args.process_index, args.num_processes, args.times)
        return
    from modeling_ter.data.manifest import read_manifest

    for row in read_manifest(args.manifest)[0]:  # the files once, so that neither run pays for a cold disk
        if row["audio"]:
            Path(row["audio"]).read_bytes()
    with tempfile.TemporaryDirectory() as one, tempfile.TemporaryDirectory() as many:
        (single, single_phase), (parallel, parallel_phase) = (
            timed_run(args.manifest, folder, n) for folder, n in ((one, 1), (many, args.processes))
        )
        identical = same_caches(Path(one), Path(many))
    with tempfile.TemporaryDirectory() as folder:
        (_, single_ceiling), (_, parallel_ceiling) = (
            timed_run(args.manifest, folder, n, args.ceiling_batches) for n in (1, args.processes)
        )
    print(
        f"whole runs (start-up included): 1 process {single:.1f} s; {args.processes} processes {parallel:.1f} s; "
        f"speed-up {single / parallel:.2f}x"
    )
    print(
        f"encoding phase (encoders built): 1 process {single_phase:.1f} s; {args.processes} processes "
        f"{parallel_phase:.1f} s; speed-up {single_phase / parallel_phase:.2f}x"
    )
    print(
        f"ceiling, bare audio-encoder forwards ({args.ceiling_batches} batches of 16 clips): 1 process "
        f"{single_ceiling:.1f} s; {args.processes} processes {parallel_ceiling:.1f} s; speed-up "
        f"{single_ceiling / parallel_ceiling:.2f}x"
    )
    print(f"identical cached features: {identical}")


if __name__ == "__main__":
    main()
