#!/usr/bin/env python3
# Copyright 2026 The TER Authors. Licensed under the Apache License, Version 2.0.
"""Run the converted FER2013 mini-Xception on the real CREMA-D clips and print its predictions next to the labels.

Per clip: the intended label, the crowd's face-only vote, the frame-level argmax distribution over the sampled face
frames, and the clip prediction (mean of the frame probabilities); then the clip accuracy against the intended
labels and against the crowd's face-only votes.

    python scripts/check_face_model.py [--data-dir ../shared/data] [--num-frames 16]
"""

import argparse
import csv
import json
import sys
from collections import Counter
from pathlib import Path

import torch
from safetensors.torch import load_file

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from modeling_ter.models.face_cnn import MiniXceptionFaceEncoder  # noqa: E402
from modeling_ter.processing.video import extract_face_frames  # noqa: E402

PRETRAINED = REPO_ROOT / "modeling_ter" / "encoders" / "fer2013_mini_xception"
# FER2013 class names -> the project's label vocabulary
FER_TO_VOCABULARY = {
    "angry": "anger",
    "disgust": "disgust",
    "fear": "fear",
    "happy": "happiness",
    "sad": "sadness",
    "surprise": "surprise",
    "neutral": "neutral",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=REPO_ROOT.parent / "shared" / "data")
    parser.add_argument("--num-frames", type=int, default=16)
    args = parser.parse_args()
    manifest = args.data_dir / "crema_d" / "manifest.csv"
    if not manifest.is_file():
        sys.exit(f"{manifest} not found: pass --data-dir pointing at the shared data folder.")

    config = json.loads((PRETRAINED / "config.json").read_text())
    labels = [FER_TO_VOCABULARY[config["id2label"][str(i)]] for i in range(config["num_classes"])]
    model = MiniXceptionFaceEncoder(num_classes=config["num_classes"])
    model.load_state_dict(load_file(PRETRAINED / "model.safetensors"))
    model.eval()

    with manifest.open(newline="") as file:
        rows = list(csv.DictReader(file))
    header = f"{'clip':<22} {'label':<10} {'crowd face':<17} {'faces':>5}  {'clip pred (p)':<18} frame argmax counts"
    print(header)
    print("-" * len(header))
    correct = agree_crowd = 0
    for row in rows:
        video = args.data_dir / "crema_d" / row["path"]
        frames, mask = extract_face_frames(video, num_frames=args.num_frames)
        with torch.no_grad():
            _, logits = model(torch.from_numpy(frames[mask]))
        probs = torch.softmax(logits, dim=-1)
        frame_counts = Counter(labels[i] for i in probs.argmax(-1).tolist())
        clip_probs = probs.mean(0)
        prediction = labels[clip_probs.argmax().item()]
        correct += prediction == row["label"]
        agree_crowd += prediction == row["crowd_face_vote"]
        crowd = f"{row['crowd_face_vote']} ({float(row['crowd_face_pct']):.0f}%)"
        counts = ", ".join(f"{label} {n}" for label, n in frame_counts.most_common())
        print(
            f"{video.stem:<22} {row['label']:<10} {crowd:<17} {int(mask.sum()):>2}/{len(mask):<2}  "
            f"{prediction + f' ({clip_probs.max().item():.2f})':<18} {counts}"
        )
    print(f"\nclip accuracy vs intended label: {correct}/{len(rows)} = {correct / len(rows):.3f}")
    print(f"clip agreement with the crowd face-only vote: {agree_crowd}/{len(rows)} = {agree_crowd / len(rows):.3f}")


if __name__ == "__main__":
    main()
