"""Training states and checkpoints: the registered progress, atomic epoch states (`checkpoints/epoch_N`), head-only
states for frozen encoders, and the atomic publication of the final checkpoint."""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

from accelerate import Accelerator
from safetensors.torch import load_file

CHECKPOINTS_DIR = "checkpoints"
# `accelerator.save_state` writes the registered `TrainingProgress` here: its presence marks a training state.
PROGRESS_FILE = "custom_checkpoint_0.pkl"


def latest_checkpoint(output_dir: Path) -> Path | None:
    """The `checkpoints/epoch_N` folder of `output_dir` with the largest N, or `None`."""
    folders = [p for p in (output_dir / CHECKPOINTS_DIR).glob("epoch_*") if p.name.split("_")[-1].isdigit()]
    return max(folders, key=lambda p: int(p.name.split("_")[-1]), default=None)


class TrainingProgress:
    """Epochs done, optimizer steps taken and the epoch of highest validation accuracy so far, saved with every
    checkpoint (`register_for_checkpointing`)."""

    def __init__(self):
        self.epoch = 0
        self.optimizer_step = 0
        self.best_epoch = 0
        self.best_accuracy = -math.inf

    def state_dict(self) -> dict[str, float]:
        return {k: getattr(self, k) for k in ("epoch", "optimizer_step", "best_epoch", "best_accuracy")}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.epoch, self.optimizer_step = int(state["epoch"]), int(state["optimizer_step"])
        self.best_epoch, self.best_accuracy = int(state["best_epoch"]), float(state["best_accuracy"])


def register_head_only_checkpoints(accelerator: Accelerator) -> None:
    """With frozen encoders, epoch states hold the heads only (~1 MB instead of ~125 MB): the encoders never change
    and come back from the pretrained sources when the model is rebuilt."""

    def is_encoder(key: str) -> bool:
        return key.removeprefix("module.").startswith("encoders.")

    def drop_encoders(models, weights, output_dir):
        for index, state in enumerate(weights):
            weights[index] = {key: value for key, value in state.items() if not is_encoder(key)}

    def load_heads(models, input_dir):
        model = accelerator.unwrap_model(models.pop())
        state = {k.removeprefix("module."): v for k, v in load_file(Path(input_dir) / "model.safetensors").items()}
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [key for key in missing if not is_encoder(key)]
        if missing or unexpected:
            raise ValueError(
                f"The state in {input_dir} does not fit this model (missing {missing[:3]}, unexpected "
                f"{unexpected[:3]}): resume with the same --modalities, --fusion and --weighted_layer_sum."
            )

    accelerator.register_save_state_pre_hook(drop_encoders)
    accelerator.register_load_state_pre_hook(load_heads)


def save_checkpoint(accelerator: Accelerator, output_dir: Path, epoch: int) -> Path:
    """`accelerator.save_state` into `checkpoints/epoch_N`, atomically: a hidden folder first, renamed when complete."""
    target = output_dir / CHECKPOINTS_DIR / f"epoch_{epoch}"
    staging = output_dir / CHECKPOINTS_DIR / f".epoch_{epoch}.incomplete"
    if accelerator.is_main_process:
        shutil.rmtree(staging, ignore_errors=True)
    accelerator.wait_for_everyone()
    staging.mkdir(parents=True, exist_ok=True)
    accelerator.save_state(str(staging))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        shutil.rmtree(target, ignore_errors=True)
        os.replace(staging, target)
    accelerator.wait_for_everyone()
    return target


def publish(staging: Path, output_dir: Path) -> None:
    """Moves every entry of `staging` into `output_dir` with `os.replace` (a folder replaces its older copy)."""
    for entry in sorted(staging.iterdir()):
        target = output_dir / entry.name
        if target.is_dir():
            shutil.rmtree(target)
        os.replace(entry, target)
    staging.rmdir()
