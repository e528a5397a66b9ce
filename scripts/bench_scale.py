"""How the feature store and the main job grow with the corpus: 10^3, 10^4 and 10^5 items, in one run.

    python scripts/bench_scale.py                                 # both parts, 1000,10000,100000 items (~10 min)
    python scripts/bench_scale.py --part stores --sizes 1000,10000
    python scripts/bench_scale.py --part job --sizes 1000,100000 --train_args "--epochs 2"

Part `stores`: one modality's features `(N, 5, 384)` float32 (Whisper-tiny's 5 layers) in three stores, each size and
store in a fresh process: per-item safetensors entries read into memory (the cache's entries, read as
`compute_features` did before the packed files), a `datasets` Arrow table (`Dataset.map(..., batched=True)` into a
cache file, reopened by its fingerprint, memory-mapped, batches through `with_format("torch")`), and the packed
memory-mapped `.npy` of `modeling_ter.data.feature_cache`. Prints write and open times, size on disk, files, one
epoch of shuffled batches of 16 (the first 1000 batches timed, scaled to the epoch), and the peak RSS.

Part `job`: `scripts/train.py` (audio + text, `--epochs 1 --calibration_folds 2 --batch_size 64 --augment none` unless
`--train_args` says otherwise: one epoch per model, so the run stays near 10 minutes; no noisy copies, which are N more
clips to encode, as the cache encodes any item) on synthetic corpora of N items built from the demo corpus: row i is demo row i mod R with the same audio
file (one cache entry, as the cache keys it) and its transcript with a variant tag (a new text item). The R demo items
are encoded once, for real; each new text's entry is its demo text's cached row times a gain in [0.9, 1.1] (the
issue's "reuse cached feature rows with a perturbation"), written as the cache writes entries. Before training, the
packed files are built (`compute_features(memory_map=True)`), so the timed runs read cached, memory-mapped features
(`TER_FEATURES_MAX_IN_MEMORY_MB=0`: the same store at every size). Prints per size: entries written, packing time,
cache size on disk, the job's time, its cross-fitting and its final epoch, peak RSS (and its anonymous part, sampled),
and the growth exponent of each time in N (least squares on log-log), ratios against the smallest size.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
MANIFEST = REPO / "data" / "manifest.csv"
TRAIN_SCRIPT = REPO / "scripts" / "train.py"
MODALITIES = ("audio", "text")
LAYERS, DIM = 5, 384
STORES = ("files", "arrow", "packed")
BATCH = 16
TIMED_BATCHES = 1000


def disk_usage(folder: Path) -> tuple[int, int]:
    """`(bytes, files)` under `folder`."""
    files = [p for p in folder.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files), len(files)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def synthetic_rows(start: int, stop: int) -> np.ndarray:
    """Rows `start:stop` of a deterministic `(N, LAYERS, DIM)` float32 corpus (a base of 64 rows times a gain)."""
    base = np.random.default_rng(0).standard_normal((64, LAYERS, DIM), dtype=np.float32)
    index = np.arange(start, stop)
    return base[index % 64] * (1.0 + 1e-5 * index[:, None, None]).astype(np.float32)


def store_worker(store: str, num_items: int, folder: Path) -> dict:
    """Writes, reopens and iterates one store of `num_items` rows; what it measured."""
    import torch
    from datasets import Array2D, Dataset, Features, Value, disable_progress_bars

    from modeling_ter.data.feature_cache import _read_entry, _write_entry

    torch.set_num_threads(1)
    disable_progress_bars()
    result = {"store": store, "n": num_items}
    chunk = 1000
    start = time.perf_counter()  # imports done: the times are the store's own
    if store == "files":
        for first in range(0, num_items, chunk):
            for offset, row in enumerate(torch.from_numpy(synthetic_rows(first, min(first + chunk, num_items)))):
                _write_entry(folder / f"{first + offset:07d}.safetensors", row, None, "bench")
        result["write_s"] = time.perf_counter() - start
        start = time.perf_counter()
        features = torch.zeros(num_items, LAYERS, DIM)
        for index in range(num_items):
            features[index] = _read_entry(folder / f"{index:07d}.safetensors")[0]
        result["open_s"] = time.perf_counter() - start

        def gather(index):
            return features[index]

    elif store == "arrow":
        schema = Features({"row": Value("int64"), "features": Array2D((LAYERS, DIM), "float32")})

        def fill(batch: dict) -> dict:
            rows = batch["row"]
            return {"row": rows, "features": synthetic_rows(rows[0], rows[-1] + 1)}

        def build():
            rows = Dataset.from_dict({"row": list(range(num_items))})
            return rows.map(
                fill, batched=True, batch_size=chunk, features=schema, cache_file_name=str(folder / "f.arrow")
            )

        build()
        result["write_s"] = time.perf_counter() - start
        start = time.perf_counter()
        table = build().with_format("torch", columns=["features"])  # the same fingerprint: the cache file, mapped
        result["open_s"] = time.perf_counter() - start

        def gather(index):
            return table[index.tolist()]["features"]

    else:
        for first in range(0, num_items, chunk):
            if first == 0:
                array = np.lib.format.open_memmap(folder / "f.npy", "w+", np.float32, (num_items, LAYERS, DIM))
            array[first : first + chunk] = synthetic_rows(first, min(first + chunk, num_items))
        array.flush()
        del array
        result["write_s"] = time.perf_counter() - start
        start = time.perf_counter()
        features = torch.from_numpy(np.load(folder / "f.npy", mmap_mode="c"))
        result["open_s"] = time.perf_counter() - start

        def gather(index):
            return features[index]

    # Shuffled batches as training draws them; at most TIMED_BATCHES of them timed, scaled to a whole epoch.
    order = torch.randperm(num_items, generator=torch.Generator().manual_seed(0))
    batches = range(0, min(num_items, TIMED_BATCHES * BATCH), BATCH)
    start = time.perf_counter()
    total = 0.0
    for first in batches:
        total += float(gather(order[first : first + BATCH])[:, -1, 0].sum())
    result["epoch_s"] = (time.perf_counter() - start) * math.ceil(num_items / BATCH) / len(batches)
    expected = torch.from_numpy(synthetic_rows(int(order[0]), int(order[0]) + 1))
    result["correct"] = bool(torch.equal(gather(order[:1]), expected))
    result["disk_bytes"], result["files"] = disk_usage(folder)
    result["peak_rss_mib"] = peak_rss_mib()
    return result


def run_stores(sizes: list[int]) -> None:
    results = []
    for num_items in sizes:
        for store in STORES:
            with tempfile.TemporaryDirectory() as folder:
                command = [sys.executable, __file__, "--store_worker", store, "--sizes", str(num_items)]
                output = subprocess.run(
                    [*command, "--folder", folder], check=True, capture_output=True, text=True
                ).stdout
                results.append(json.loads(output.strip().splitlines()[-1]))
                r = results[-1]
                print(
                    f"stores N={num_items:>6} {store:<6}: write {r['write_s']:7.2f} s, open {r['open_s']:7.2f} s, "
                    f"epoch of batches of {BATCH} {r['epoch_s']:6.2f} s, {r['disk_bytes'] / 2**20:7.1f} MiB in "
                    f"{r['files']} files, peak RSS {r['peak_rss_mib']:6.0f} MiB, rows correct {r['correct']}",
                    flush=True,
                )
    for num_items in sizes:
        row = {r["store"]: r for r in results if r["n"] == num_items}
        base = row["files"]
        ratios = ", ".join(
            f"{store} write {row[store]['write_s'] / base['write_s']:.2f}x open "
            f"{row[store]['open_s'] / base['open_s']:.3f}x epoch {row[store]['epoch_s'] / base['epoch_s']:.2f}x"
            for store in ("arrow", "packed")
        )
        print(f"stores N={num_items}: against per-item files: {ratios}")


def demo_rows() -> list[dict]:
    with open(MANIFEST, newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    for row in rows:  # absolute paths, so that the synthetic manifest can live anywhere
        row["modality_files"] = (
            ";".join(
                str(MANIFEST.parent / p) if p != "text" else p
                for p in row["modality_files"].split(";")
                if Path(p).suffix.lower() not in (".flv", ".mp4", ".avi")
            )
            or "text"
        )
    return rows


def synthetic_manifest(rows: list[dict], num_items: int, path: Path) -> Path:
    """Row i: demo row i mod R, its audio file, its transcript tagged with variant i // R (none for variant 0)."""
    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        for i in range(num_items):
            row, variant = dict(rows[i % len(rows)]), i // len(rows)
            if variant:
                row["path"] = f"{row['path']}#{variant}"
                if row["transcript"]:
                    row["transcript"] = f"{row['transcript']} [{variant}]"
            writer.writerow(row)
    return path


def job_features(cache_dir: Path, manifests: dict[int, Path]) -> dict[int, dict]:
    """Encodes the demo items once, writes each synthetic text's entry (a perturbed demo row), builds the packed
    files; the seconds and disk use of each step per size."""
    import torch

    from modeling_ter.data.feature_cache import (
        FeatureCache,
        _read_entry,
        _write_entry,
        compute_features,
        encode_missing,
        encoder_key,
        item_key,
        processor_settings,
    )
    from modeling_ter.data.manifest import read_manifest
    from modeling_ter.encoders.defaults import build_default_model, build_default_processor

    torch.set_num_threads(1)
    model = build_default_model(MODALITIES, modality_options={"audio": {"use_weighted_layer_sum": True}})
    processor = build_default_processor(MODALITIES)
    cache = FeatureCache(cache_dir)
    text_key = encoder_key(model, "text", processor_settings(processor, "text"))
    demo, _ = read_manifest(MANIFEST)
    start = time.perf_counter()
    encode_missing(
        model, processor, {m: [r[m] for r in demo] for m in MODALITIES}, MODALITIES, cache_dir, show_progress=False
    )
    print(f"job: {len(demo)} demo items encoded once (audio + text) in {time.perf_counter() - start:.1f} s", flush=True)
    measured = {}
    for num_items, manifest in manifests.items():
        rows, _ = read_manifest(manifest)
        rng = np.random.default_rng(num_items)
        start, written = time.perf_counter(), 0
        for row in rows:
            text = row["text"]
            if text is None or not text.endswith("]"):
                continue
            path = cache.entry_path("text", text_key, item_key("text", text))
            if path.is_file():
                continue
            base, reason = _read_entry(cache.entry_path("text", text_key, item_key("text", text.rsplit(" [", 1)[0])))
            features = None if base is None else base * float(rng.uniform(0.9, 1.1))
            _write_entry(path, features, reason, "text")
            written += 1
        entries_s = time.perf_counter() - start
        start = time.perf_counter()
        items = {m: [r[m] for r in rows] for m in MODALITIES}
        compute_features(model, processor, items, MODALITIES, cache_dir, False, memory_map=True)
        measured[num_items] = {
            "entries_written": written,
            "entries_s": entries_s,
            "pack_s": time.perf_counter() - start,
        }
        measured[num_items]["disk_bytes"], measured[num_items]["files"] = disk_usage(cache_dir)
        print(
            f"job N={num_items}: {written} synthetic text entries written in {entries_s:.1f} s, packed in "
            f"{measured[num_items]['pack_s']:.1f} s; cache {measured[num_items]['disk_bytes'] / 2**20:.0f} MiB in "
            f"{measured[num_items]['files']} files",
            flush=True,
        )
    return measured


def timed_train(manifest: Path, cache_dir: Path, output_dir: Path, train_args: list[str]) -> dict:
    """One `scripts/train.py` run: the time each output line arrived, peak RSS and the sampled peak anonymous RSS."""
    command = [sys.executable, str(TRAIN_SCRIPT), "--output_dir", str(output_dir), "--manifest", str(manifest)]
    command += ["--modalities", ",".join(MODALITIES), "--cache_dir", str(cache_dir), *train_args]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TER_FEATURES_MAX_IN_MEMORY_MB": "0"}
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    anonymous = [0]

    def sample() -> None:  # RssAnon: what the process holds beyond mapped files (which the kernel can drop)
        status = Path(f"/proc/{process.pid}/status")
        while process.poll() is None:
            try:
                line = next(x for x in status.read_text().splitlines() if x.startswith("RssAnon:"))
                anonymous[0] = max(anonymous[0], int(line.split()[1]))
            except (OSError, StopIteration):
                pass
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    lines = [(time.perf_counter() - start, line.rstrip()) for line in process.stdout]
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    sampler.join()
    if process.returncode != 0:
        raise RuntimeError(f"{shlex.join(command)} failed:\n" + "\n".join(line for _, line in lines[-40:]))

    def at(prefix: str) -> float:
        return next(t for t, line in lines if line.startswith(prefix))

    return {
        "job_s": seconds,
        "features_s": at("train: "),
        "crossfit_s": at("Lowest held-out NLL") - at("Cross-fitting the heads"),
        "epoch_s": at("epoch 1: train loss") - at("Training "),
        "peak_rss_mib": usage.ru_maxrss / 1024,
        "peak_anon_mib": anonymous[0] / 1024,
    }


def exponent(sizes: list[int], values: list[float]) -> float:
    """The slope of log(value) on log(N), least squares."""
    return float(np.polyfit(np.log(sizes), np.log(values), 1)[0])


def run_job(sizes: list[int], train_args: list[str], keep: Path | None) -> None:
    folder = Path(tempfile.mkdtemp(prefix="bench_scale_")) if keep is None else keep
    folder.mkdir(parents=True, exist_ok=True)
    try:
        rows = demo_rows()
        manifests = {n: synthetic_manifest(rows, n, folder / f"synthetic_{n}.csv") for n in sizes}
        features = job_features(folder / "cache", manifests)
        results = {}
        for n in sizes:
            results[n] = {**features[n], **timed_train(manifests[n], folder / "cache", folder / f"out_{n}", train_args)}
            r = results[n]
            print(
                f"job N={n:>6}: job {r['job_s']:6.1f} s (features {r['features_s']:5.1f} s, cross-fitting "
                f"{r['crossfit_s']:6.1f} s, final epoch {r['epoch_s']:6.1f} s); peak RSS {r['peak_rss_mib']:5.0f} MiB "
                f"(anonymous {r['peak_anon_mib']:5.0f} MiB)",
                flush=True,
            )
        small, large = sizes[0], sizes[-1]
        for key in ("job_s", "crossfit_s", "epoch_s", "pack_s"):
            values = [results[n][key] for n in sizes]
            print(
                f"job {key}: growth exponent in N {exponent(sizes, values):.2f}; N={large} / N={small}: "
                f"{results[large][key] / results[small][key]:.1f}x for {large / small:.0f}x the items"
            )
        for key in ("peak_rss_mib", "peak_anon_mib"):
            print(f"job {key}: N={large} / N={small}: {results[large][key] / results[small][key]:.2f}x")
        print("job results: " + json.dumps(results))
    finally:
        if keep is None:
            shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("stores", "job", "both"), default="both")
    parser.add_argument("--sizes", default="1000,10000,100000", help="comma-separated corpus sizes")
    parser.add_argument(
        "--train_args",
        default="--epochs 1 --calibration_folds 2 --batch_size 64 --augment none",
        help="more train.py arguments",
    )
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temporary one)")
    parser.add_argument("--store_worker", choices=STORES, help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes = [int(n) for n in args.sizes.split(",")]
    if args.store_worker:
        print(json.dumps(store_worker(args.store_worker, sizes[0], args.folder)))
        return
    if args.part in ("stores", "both"):
        run_stores(sizes)
    if args.part in ("job", "both"):
        run_job(sizes, shlex.split(args.train_args), args.keep)


if __name__ == "__main__":
    main()
