# Copyright 2026 The TER authors. Licensed under the Apache License, Version 2.0.
########################################################################
# Train a TER model (trusted multimodal emotion recognition) with 🤗 Accelerate: per-modality evidential heads on
# frozen pretrained encoders (features cached once), the Trusted CE loss, then the trusted threshold calibrated on a
# speaker-disjoint validation split and a complete checkpoint (weights incl. encoders, config, processor, remote
# code, eval_results.json, plots, model card).
#
# It runs on one CPU process, on several CPU processes (gloo DDP), on one GPU and on several GPUs / machines.
#
# - one process (CPU or one GPU), the embedded demo corpus (data/manifest.csv), everything else default:
#       python scripts/train.py --output_dir out
# - two CPU processes (gloo DDP; note that `accelerate launch --cpu --num_processes 2` silently runs ONE process):
#       ACCELERATE_USE_CPU=true accelerate launch --multi_gpu --num_processes 2 --num_machines 1 \
#           --mixed_precision no --dynamo_backend no scripts/train.py --output_dir out --batch_size 8
#   (per-process batch 8 x 2 processes = the same effective batch as the 1-process default of 16)
# - several GPUs (or `accelerate config` once, then `accelerate launch scripts/train.py ...`):
#       accelerate launch --multi_gpu --num_processes 4 scripts/train.py --output_dir out --batch_size 4
# - continue a killed run from its last epoch state:
#       python scripts/train.py --output_dir out --resume_from_checkpoint latest
# - fine-tune the backbones (raw inputs, no feature cache; slow on CPU):
#       python scripts/train.py --output_dir out --finetune lora --manifest my_small_corpus.csv
########################################################################
"""Train, calibrate and save a TER checkpoint (see the header for the launch commands; the options are the fields
of `modeling_ter.training.arguments.TERTrainingArguments`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from transformers import HfArgumentParser

from modeling_ter.training.arguments import TERTrainingArguments
from modeling_ter.training.loop import train

DEFAULT_MANIFEST = Path(__file__).resolve().parents[1] / "data" / "manifest.csv"


def parse_args(argv: Sequence[str] | None = None) -> TERTrainingArguments:
    parser = HfArgumentParser(TERTrainingArguments, description="Train and calibrate a TER model with Accelerate.")
    parser.set_defaults(manifest=str(DEFAULT_MANIFEST))
    try:
        (args,) = parser.parse_args_into_dataclasses(argv, look_for_args_file=False)
    except ValueError as error:  # a check of TERTrainingArguments.__post_init__
        parser.error(str(error))
    return args


def main(argv: Sequence[str] | None = None) -> dict:
    return train(parse_args(argv))


if __name__ == "__main__":
    main()
