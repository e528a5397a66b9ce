"""Peak memory of one `--finetune full` step on 8 x 30 s clips, with and without activation checkpointing.

    python scripts/bench_gradient_checkpointing.py [--clips 8] [--seconds 30]

Each condition runs in a fresh process (so peak RSS is that condition's own): the default audio + text model
(Whisper tiny.en + all-MiniLM-L6-v2, every parameter trainable), clips made of real demo-corpus utterances joined to
the given length, their transcripts, one forward + backward pass in training mode (dropout on, same seed). A third
process loads the same model and inputs and takes no step: its peak is the floor both steps stand on. Prints each
peak RSS, the step's memory above the floor, their ratio, and the largest difference between the two runs'
gradients (the same computation, so it should be 0 up to float summation order).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MANIFEST = REPO / "data" / "manifest.csv"
SAMPLING_RATE = 16000


def long_clips(count: int, seconds: float) -> tuple[list, list[str]]:
    """`count` waveforms of `seconds` each, real EmoDB utterances joined end to end, and their joined transcripts."""
    import numpy as np

    from modeling_ter.data.manifest import read_manifest
    from modeling_ter.processing.audio import load_audio

    rows = [row for row in read_manifest(MANIFEST)[0] if row["corpus"] == "emodb"]
    clips, texts, position = [], [], 0
    for _ in range(count):
        parts, words, length = [], [], 0
        while length < seconds * SAMPLING_RATE:
            row = rows[position % len(rows)]
            position += 1
            parts.append(load_audio(row["audio"], SAMPLING_RATE))
            words.append(row["text"])
            length += len(parts[-1])
        clips.append(np.concatenate(parts)[: int(seconds * SAMPLING_RATE)])
        texts.append(" ".join(words))
    return clips, texts


def child(condition: str, clips: int, seconds: float, gradients_path: str) -> None:
    """One condition in this process: `floor`, `off` or `on`; prints its peak RSS (and saves the gradients)."""
    import torch

    from modeling_ter.encoders.defaults import build_default_model, build_default_processor

    torch.set_num_threads(1)
    waveforms, texts = long_clips(clips, seconds)
    torch.manual_seed(0)  # the same fresh heads in every process
    model = build_default_model(("audio", "text"), id2label={0: "anger", 1: "neutral"}).train()
    processor = build_default_processor(("audio", "text"))
    inputs = dict(processor(audio=waveforms, text=texts, sampling_rate=SAMPLING_RATE))
    labels = torch.tensor([i % 2 for i in range(clips)])
    if condition != "floor":
        if condition == "on":
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        torch.manual_seed(0)
        model(**inputs, labels=labels).loss.backward()
        torch.save({n: p.grad for n, p in model.named_parameters() if p.grad is not None}, gradients_path)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {"condition": condition, "peak_mib": peak_mib, "frames": int(inputs["audio_input_features"].shape[-1])}
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--child", choices=("floor", "off", "on"), help=argparse.SUPPRESS)
    parser.add_argument("--gradients", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.clips, args.seconds, args.gradients)
        return
    import torch

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for condition in ("floor", "off", "on"):
            command = [sys.executable, __file__, "--child", condition, "--clips", str(args.clips)]
            command += ["--seconds", str(args.seconds), "--gradients", f"{tmp}/{condition}.pt"]
            output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            results[condition] = json.loads(output.strip().splitlines()[-1])
        off, on = torch.load(f"{tmp}/off.pt"), torch.load(f"{tmp}/on.pt")
        max_difference = max((off[name] - on[name]).abs().max().item() for name in off)
    floor = results["floor"]["peak_mib"]
    above = {c: results[c]["peak_mib"] - floor for c in ("off", "on")}
    print(f"{args.clips} clips x {args.seconds:.0f} s ({results['off']['frames']} mel frames), full fine-tuning step")
    print(
        f"peak RSS: floor (model + inputs) {floor:.0f} MiB; step without checkpointing {results['off']['peak_mib']:.0f} MiB"
    )
    print(f"          step with checkpointing {results['on']['peak_mib']:.0f} MiB")
    print(
        f"step memory above the floor: off {above['off']:.0f} MiB, on {above['on']:.0f} MiB ({above['on'] / above['off']:.2f}x)"
    )
    print(f"gradients (same seed): max abs difference {max_difference:.2e} over {len(off)} tensors")


if __name__ == "__main__":
    main()
