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
"""Train, calibrate and save a TER checkpoint (see the header for the launch commands)."""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator, DataLoaderConfiguration, DistributedDataParallelKwargs
from accelerate.logging import get_logger
from accelerate.utils import set_seed
from datasets import DatasetDict
from safetensors.torch import load_file
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from modeling_ter.audio import load_audio
from modeling_ter.augmentation import NOISE_COLORS, add_noise, modality_dropout
from modeling_ter.configuration_ter import FUSION_RULES, MODALITIES
from modeling_ter.corpora import EMOTION_LABELS, load_manifest_dataset
from modeling_ter.feature_cache import CachedFeatures, compute_features, embed_item
from modeling_ter.model_card import build_model_card
from modeling_ter.pretrained_encoders import build_default_model, build_default_processor
from modeling_ter.whisper_conversion import SAMPLING_RATE
from trusted_f1.trusted_metrics import THRESHOLD_STRATEGIES, select_threshold, trusted_scores


# scripts/evaluate.py holds the report code both scripts share; it is loaded by path because its module name would
# shadow the 🤗 `evaluate` library.
_spec = importlib.util.spec_from_file_location("ter_evaluate_script", Path(__file__).with_name("evaluate.py"))
evaluate_script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(evaluate_script)

logger = get_logger(__name__)

DEFAULT_MANIFEST = Path(__file__).resolve().parents[1] / "data" / "manifest.csv"
CHECKPOINTS_DIR = "checkpoints"
# `accelerator.save_state` writes the registered `TrainingProgress` here: its presence marks a training state.
PROGRESS_FILE = "custom_checkpoint_0.pkl"
# Adapters of `--finetune lora` (rank, scaling); every linear layer of the backbones gets one.
LORA_RANK, LORA_ALPHA = 8, 16
AUGMENTATIONS = ("noise", "modality_dropout")
AUGMENT_SNR_DB = (20.0, 10.0, 5.0, 0.0)  # the noise augmentation draws one of these and a colour per copy


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Train and calibrate a TER model with Accelerate.")
    parser.add_argument("--output_dir", required=True, help="where the checkpoint (and checkpoints/epoch_N) go")
    parser.add_argument("--overwrite_output_dir", action="store_true", help="replace a run already in --output_dir")
    parser.add_argument("--manifest", default=str(DEFAULT_MANIFEST), help="training corpus, manifest CSV format")
    parser.add_argument("--modalities", default=None, help="comma-separated subset of audio,text,video "
                        "(default: every modality the corpus has)")  # fmt: skip
    parser.add_argument("--fusion", default="dempster_shafer", choices=FUSION_RULES)
    parser.add_argument("--epochs", type=int, default=100,
                        help="at most this many; the heads of the epoch with the best validation accuracy are kept")  # fmt: skip
    parser.add_argument("--batch_size", type=int, default=16, help="per process")
    parser.add_argument("--gradient_accumulation_steps", type=int, default=1)
    parser.add_argument("--learning_rate", type=float, default=1e-3,
                        help="Adam (TMC uses 3e-4; 1e-3 measured better on EmoDB, see scripts/bench_quality.py)")  # fmt: skip
    parser.add_argument("--weight_decay", type=float, default=1e-5, help="Adam, as TMC")
    parser.add_argument("--annealing_epochs", type=float, default=10,
                        help="the KL weight of the Trusted CE loss rises to 1 over this many epochs of optimizer steps")  # fmt: skip
    parser.add_argument("--head_dropout", type=float, default=0.1)
    parser.add_argument("--validation_fraction", type=float, default=0.2,
                        help="share of each corpus held out as whole speakers for validation and calibration")  # fmt: skip
    parser.add_argument("--seed", type=int, default=42, help="controls the split, the initialisation and the order")
    parser.add_argument("--threshold_strategy", default="break_even", choices=THRESHOLD_STRATEGIES,
                        help="how the trusted threshold stored in the checkpoint is chosen on validation data")  # fmt: skip
    parser.add_argument("--target_precision", type=float, default=0.95, help="for --threshold_strategy target_precision")
    parser.add_argument("--finetune", default="none", choices=("none", "full", "lora"),
                        help="none: frozen encoders, cached features; full / lora: train the backbones on raw inputs")  # fmt: skip
    parser.add_argument("--weighted_layer_sum", default="audio",
                        help="comma-separated modalities (of audio,text) that learn a weighted sum of all encoder layers "
                        "instead of using the last one, or 'none'")  # fmt: skip
    parser.add_argument("--resume_from_checkpoint", default=None, help="a checkpoints/epoch_N folder, or 'latest'")
    parser.add_argument("--cache_dir", default=None, help="feature cache (default: $TER_CACHE/features)")
    parser.add_argument("--augment", default="",
                        help="comma-separated: noise (one extra copy of every training item with its audio at a random "
                             "SNR of 20/10/5/0 dB, white or pink), modality_dropout (see --modality_dropout)")  # fmt: skip
    parser.add_argument("--modality_dropout", type=float, default=0.3,
                        help="with --augment modality_dropout: each present modality of a training item is dropped "
                             "with this probability, never the last one")  # fmt: skip
    args = parser.parse_args(argv)
    args.augment = tuple(a.strip() for a in args.augment.split(",") if a.strip())
    if set(args.augment) - set(AUGMENTATIONS):
        parser.error(f"--augment {sorted(set(args.augment) - set(AUGMENTATIONS))}: choose from {list(AUGMENTATIONS)}.")
    if not 0.0 <= args.modality_dropout <= 1.0:
        parser.error(f"--modality_dropout must lie in [0, 1], got {args.modality_dropout}.")
    if "noise" in args.augment and args.finetune != "none":
        parser.error("--augment noise adds encoded noisy copies to the cached training features: use --finetune none.")
    names = args.weighted_layer_sum.strip()
    args.weighted_layer_sum = () if names == "none" else tuple(m.strip() for m in names.split(",") if m.strip())
    if not set(args.weighted_layer_sum) <= {"audio", "text"}:
        parser.error(f"--weighted_layer_sum {names!r}: choose modalities among audio,text, or 'none'.")
    for name in ("epochs", "batch_size", "gradient_accumulation_steps"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be a positive integer, got {getattr(args, name)}.")
    if args.annealing_epochs <= 0:
        parser.error(f"--annealing_epochs must be positive, got {args.annealing_epochs}.")
    return args


def latest_checkpoint(output_dir: Path) -> Path | None:
    """The `checkpoints/epoch_N` folder of `output_dir` with the largest N, or `None`."""
    folders = [p for p in (output_dir / CHECKPOINTS_DIR).glob("epoch_*") if p.name.split("_")[-1].isdigit()]
    return max(folders, key=lambda p: int(p.name.split("_")[-1]), default=None)


def check_arguments(args: argparse.Namespace) -> tuple[DatasetDict, tuple[str, ...], Path | None]:
    """Every check that can fail, before any work: returns the speaker-disjoint train/validation splits of the
    manifest, the modalities to train and the state to resume from.

    Raises `ValueError` / `FileNotFoundError` naming the bad argument and the fix.
    """
    output_dir = Path(args.output_dir)
    resume = None
    if args.resume_from_checkpoint == "latest":
        resume = latest_checkpoint(output_dir)
        if resume is None:
            raise FileNotFoundError(
                f"--resume_from_checkpoint latest: {output_dir / CHECKPOINTS_DIR} holds no epoch_N state; "
                "start without --resume_from_checkpoint."
            )
    elif args.resume_from_checkpoint is not None:
        resume = Path(args.resume_from_checkpoint)
        if not (resume / PROGRESS_FILE).is_file():
            raise FileNotFoundError(
                f"--resume_from_checkpoint {resume} holds no training state (no {PROGRESS_FILE} written by "
                f"accelerator.save_state); pass a {CHECKPOINTS_DIR}/epoch_N folder of a run, or 'latest'."
            )
    resuming_here = resume is not None and output_dir.resolve() in resume.resolve().parents
    if resuming_here and args.overwrite_output_dir:
        raise ValueError(
            f"--overwrite_output_dir would delete {resume}, the state --resume_from_checkpoint continues from; "
            "drop one of the two."
        )
    if output_dir.is_dir() and any(output_dir.iterdir()) and not (resuming_here or args.overwrite_output_dir):
        raise ValueError(
            f"--output_dir {output_dir} already holds another run ({', '.join(sorted(os.listdir(output_dir))[:4])}). "
            "Pass --overwrite_output_dir to replace it, --resume_from_checkpoint latest to continue it, or choose "
            "another folder."
        )
    try:
        splits = load_manifest_dataset(args.manifest, validation_fraction=args.validation_fraction, seed=args.seed)
    except (ValueError, FileNotFoundError) as error:
        raise type(error)(f"--manifest: {error}") from None
    if "validation" not in splits or len(splits["validation"]) == 0:
        raise ValueError(
            f"--manifest {args.manifest} gives no validation speakers: calibrating the trusted threshold needs a "
            "corpus with at least two speakers (or a larger --validation_fraction)."
        )
    columns = {m: list(splits["train"][m]) + list(splits["validation"][m]) for m in MODALITIES}
    available = tuple(m for m in MODALITIES if any(value is not None for value in columns[m]))
    if args.modalities is None:
        return splits, available, resume
    requested = [m.strip() for m in args.modalities.split(",") if m.strip()]
    unknown = [m for m in requested if m not in MODALITIES]
    if unknown or not requested:
        raise ValueError(f"--modalities {args.modalities!r}: unknown name(s) {unknown}; choose from {list(MODALITIES)}.")
    lacking = [m for m in requested if m not in available]
    if lacking:
        raise ValueError(
            f"--modalities asks for {lacking}, but no row of --manifest {args.manifest} has them (it has "
            f"{list(available)})."
        )
    return splits, tuple(m for m in MODALITIES if m in requested), resume


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


class CachedFeatureDataset(Dataset):
    """Items as model inputs: `<modality>_embeds` `(L, D)`, `modality_mask` `(M,)` and `labels`."""

    def __init__(self, features: CachedFeatures, labels: np.ndarray):
        self.features, self.labels = features, torch.as_tensor(labels, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        item = {f"{m}_embeds": self.features.features[m][index] for m in self.features.modalities}
        return {**item, "modality_mask": self.features.mask[index], "labels": self.labels[index]}


class RawItemDataset(Dataset):
    """Items as raw inputs (file paths, text) for fine-tuning; the processor collates them into a batch."""

    def __init__(self, items: dict[str, list], labels: np.ndarray):
        self.items, self.labels = items, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict:
        return {**{m: values[index] for m, values in self.items.items()}, "labels": int(self.labels[index])}


def raw_collator(processor, modalities: Sequence[str]):
    """Batches raw items with the processor: `<modality>_*` inputs, `modality_mask` and `labels`.

    Each modality of each item is prepared on its own, so a corrupt file masks that modality only (logged); an item
    left with no usable modality is dropped from the batch.
    """

    def prepare(item: dict) -> dict | None:
        parts = []
        for modality in modalities:
            if item[modality] is None:
                continue
            try:
                parts.append(processor(**{modality: [item[modality]]}, return_tensors="np"))
            except (ValueError, OSError) as error:
                logger.warning(f"{modality} of {item[modality]!r} masked: {error}")
        if not parts:
            return None
        prepared = {name: value for part in parts for name, value in part.items() if name != "modality_mask"}
        prepared["modality_mask"] = np.logical_or.reduce([part["modality_mask"] for part in parts])
        return prepared

    def collate(items: list[dict]) -> dict[str, torch.Tensor]:
        prepared = [(prepare(item), item["labels"]) for item in items]
        prepared = [(features, label) for features, label in prepared if features is not None]
        batch = processor.pad([features for features, _ in prepared], return_tensors="pt")
        return {**batch, "labels": torch.tensor([label for _, label in prepared])}

    return collate


def set_single_thread_on_cpu(device: torch.device) -> None:
    """One intra-op thread for frozen-encoder work on CPU: items are encoded one at a time and the heads are small
    matrices, so threads cost more than they save, and far more on a busy machine (measured on 2 busy cores: Whisper
    tiny on a 2 s clip 0.92 s with 2 threads vs 0.06 s with one; a head step of batch 16 0.34 s vs 0.02 s)."""
    if device.type == "cpu":
        torch.set_num_threads(1)


def get_dataloaders(args, splits, processor, modalities):
    """Train and validation loaders: cached features (`--finetune none`) or raw items through the processor."""
    if args.finetune == "none":
        datasets = [CachedFeatureDataset(split["features"], split["labels"]) for split in splits]
        collate = None
    else:
        datasets = [RawItemDataset(split["items"], split["labels"]) for split in splits]
        collate = raw_collator(processor, modalities)
    train_dataloader = DataLoader(datasets[0], batch_size=args.batch_size, shuffle=True, collate_fn=collate)
    eval_dataloader = DataLoader(datasets[1], batch_size=args.batch_size, shuffle=False, collate_fn=collate)
    return train_dataloader, eval_dataloader


@torch.no_grad()
def add_noisy_audio_copies(model, processor, split: dict, modalities, seed: int) -> dict:
    """The training split plus one copy of every item with audio, its audio at a random SNR and noise colour."""
    rng = np.random.default_rng(seed)
    features, column = split["features"], list(modalities).index("audio")
    rows = [i for i, path in enumerate(split["items"]["audio"]) if path is not None and features.mask[i, column]]
    noisy = []
    for i in rows:
        waveform = load_audio(split["items"]["audio"][i], SAMPLING_RATE)
        waveform = add_noise(waveform, rng.choice(AUGMENT_SNR_DB), rng.choice(NOISE_COLORS), rng)
        noisy.append(embed_item(model, processor, "audio", waveform, sampling_rate=SAMPLING_RATE))
    copies = features.select(rows)
    copies.features["audio"] = torch.stack(noisy)
    merged = CachedFeatures(
        features.modalities,
        {m: torch.cat([features.features[m], copies.features[m]]) for m in features.modalities},
        torch.cat([features.mask, copies.mask]),
        features.failures,
        features.num_encoded + len(rows),
        features.num_cached,
    )
    return {
        "items": {m: list(values) + [values[i] for i in rows] for m, values in split["items"].items()},
        "labels": np.concatenate([split["labels"], split["labels"][rows]]),
        "corpora": list(split["corpora"]) + [split["corpora"][i] for i in rows],
        "features": merged,
    }


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


def validate(model, dataloader, accelerator, args, num_labels: int) -> dict:
    """Validation loss and trusted scores (threshold chosen on these data with `--threshold_strategy`)."""
    model.eval()
    predictions, confidences, references, losses = [], [], [], []
    for batch in dataloader:
        with torch.no_grad():
            outputs = model(**batch)
        gathered = accelerator.gather_for_metrics(
            (outputs.probs.argmax(-1), outputs.confidence, batch["labels"], outputs.loss.detach().repeat(len(batch["labels"])))
        )
        for store, values in zip((predictions, confidences, references, losses), gathered):
            store.append(values.cpu())
    scores = trusted_scores(
        torch.cat(predictions).numpy(),
        torch.cat(references).numpy(),
        torch.cat(confidences).double().numpy(),
        threshold=args.threshold_strategy,
        target_precision=args.target_precision,
        num_classes=num_labels,
    )
    return {"loss": float(torch.cat(losses).mean()), **scores}


def build_model(args, modalities: Sequence[str], id2label: dict[int, str], annealing_steps: int):
    """The TER model on the default pretrained encoders, set up for `--finetune`."""
    options = {m: {"use_weighted_layer_sum": True} for m in modalities if m in args.weighted_layer_sum}
    model = build_default_model(
        modalities,
        modality_options=options,
        id2label=id2label,
        label2id={label: i for i, label in id2label.items()},
        fusion=args.fusion,
        head_dropout=args.head_dropout,
        annealing_steps=annealing_steps,
    )
    if args.finetune == "none":
        model.encoders.requires_grad_(False)
    elif args.finetune == "lora":
        from peft import LoraConfig, get_peft_model

        backbone_linears = [
            name for name, module in model.named_modules()
            if name.startswith("encoders.") and isinstance(module, torch.nn.Linear)
        ]  # fmt: skip
        heads = [f"heads.{m}" for m in modalities] + [f"layer_weighting.{m}" for m in model.layer_weighting]
        lora = LoraConfig(r=LORA_RANK, lora_alpha=LORA_ALPHA, target_modules=backbone_linears, modules_to_save=heads)
        model = get_peft_model(model, lora)
    return model


def publish(staging: Path, output_dir: Path) -> None:
    """Moves every entry of `staging` into `output_dir` with `os.replace` (a folder replaces its older copy)."""
    for entry in sorted(staging.iterdir()):
        target = output_dir / entry.name
        if target.is_dir():
            shutil.rmtree(target)
        os.replace(entry, target)
    staging.rmdir()


def training_function(args: argparse.Namespace) -> dict:
    splits, modalities, resume = check_arguments(args)
    output_dir = Path(args.output_dir)
    ddp_kwargs = DistributedDataParallelKwargs(find_unused_parameters=args.finetune != "none")
    accelerator = Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
        kwargs_handlers=[ddp_kwargs],
    )
    if args.overwrite_output_dir and accelerator.is_main_process:
        shutil.rmtree(output_dir, ignore_errors=True)
    accelerator.wait_for_everyone()
    set_seed(args.seed)
    start = time.perf_counter()

    label_ids = sorted(set(splits["train"]["label"]) | set(splits["validation"]["label"]))
    id2label = {i: EMOTION_LABELS[label_id] for i, label_id in enumerate(label_ids)}
    to_model_label = {label_id: i for i, label_id in enumerate(label_ids)}

    # Build the model after set_seed so the seed also controls the heads' initialisation. The KL annealing is
    # counted in optimizer steps, which do not depend on the number of processes for a fixed effective batch.
    num_train = len(splits["train"])
    steps_per_epoch = math.ceil(math.ceil(num_train / (args.batch_size * accelerator.num_processes)) / args.gradient_accumulation_steps)
    model = build_model(args, modalities, id2label, max(1, round(args.annealing_epochs * steps_per_epoch)))
    processor = build_default_processor(modalities)

    split_data = []
    for name in ("train", "validation"):
        split = splits[name]
        split_data.append({
            "items": {m: list(split[m]) for m in modalities},
            "labels": np.array([to_model_label[label] for label in split["label"]]),
            "corpora": list(split["corpus"]),
        })  # fmt: skip
    if args.finetune == "none":
        set_single_thread_on_cpu(accelerator.device)
        # The main process encodes what the cache lacks; the others then read everything from the cache.
        with accelerator.main_process_first():
            for split in split_data:
                split["features"] = compute_features(
                    model, processor, split["items"], modalities, args.cache_dir,
                    show_progress=accelerator.is_local_main_process,
                )  # fmt: skip
        if "noise" in args.augment and "audio" in modalities:
            split_data[0] = add_noisy_audio_copies(model, processor, split_data[0], modalities, args.seed)
        for split, name in zip(split_data, ("train", "validation")):
            cached = split["features"]
            accelerator.print(
                f"{name}: {len(split['labels'])} items; modality features: {cached.num_encoded} encoded now, "
                f"{cached.num_cached} from the cache, {len(cached.failures)} masked after a failure"
            )
            for index, modality, reason in cached.failures:
                accelerator.print(f"  {name} item {index}: {modality} masked ({reason})")
            usable = cached.mask.any(1).nonzero().flatten().tolist()
            if len(usable) < len(split["labels"]):
                accelerator.print(f"  {len(split['labels']) - len(usable)} {name} items have no usable modality: dropped")
                split["features"] = cached.select(usable)
                split["labels"] = split["labels"][usable]
                split["corpora"] = [split["corpora"][i] for i in usable]

    train_dataloader, eval_dataloader = get_dataloaders(args, split_data, processor, modalities)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(trainable, lr=args.learning_rate, weight_decay=args.weight_decay)
    model, optimizer, train_dataloader, eval_dataloader = accelerator.prepare(
        model, optimizer, train_dataloader, eval_dataloader
    )
    progress = TrainingProgress()
    accelerator.register_for_checkpointing(progress)
    if args.finetune == "none":
        register_head_only_checkpoints(accelerator)
    if resume is not None:
        accelerator.print(f"Resuming from {resume}")
        accelerator.load_state(str(resume))
        accelerator.print(f"  {progress.epoch} epochs and {progress.optimizer_step} optimizer steps already done")

    num_params = sum(p.numel() for p in trainable)
    accelerator.print(
        f"Training {num_params:,} parameters on {len(split_data[0]['labels'])} items ({', '.join(modalities)}; {accelerator.num_processes} "
        f"process(es) x batch {args.batch_size} x {args.gradient_accumulation_steps} accumulation steps)"
    )
    dropout_rng = np.random.default_rng([args.seed, accelerator.process_index, progress.epoch])
    for epoch in range(progress.epoch, args.epochs):
        model.train()
        train_dataloader.set_epoch(epoch)
        total_loss, num_batches = 0.0, 0
        bar = tqdm(train_dataloader, desc=f"epoch {epoch + 1}/{args.epochs}", leave=False,
                   disable=not accelerator.is_local_main_process)  # fmt: skip
        for batch in bar:
            if "modality_dropout" in args.augment:
                batch["modality_mask"] = modality_dropout(batch["modality_mask"], args.modality_dropout, dropout_rng)
            with accelerator.accumulate(model):
                outputs = model(**batch, global_step=progress.optimizer_step)
                accelerator.backward(outputs.loss)
                optimizer.step()
                optimizer.zero_grad()
            if accelerator.sync_gradients:
                progress.optimizer_step += 1
            total_loss += outputs.loss.item()
            num_batches += 1
        train_loss = accelerator.reduce(torch.tensor(total_loss / num_batches, device=accelerator.device), "mean")
        scores = validate(model, eval_dataloader, accelerator, args, len(id2label))
        progress.epoch = epoch + 1
        if scores["accuracy"] >= progress.best_accuracy:  # ties go to the later, longer-trained epoch
            progress.best_epoch, progress.best_accuracy = progress.epoch, scores["accuracy"]
        save_checkpoint(accelerator, output_dir, progress.epoch)
        accelerator.print(
            f"epoch {progress.epoch}: train loss {train_loss.item():.4f}, validation loss {scores['loss']:.4f}, "
            f"accuracy {scores['accuracy']:.4f}, trusted F1 {scores['trusted_f1']:.4f} "
            f"({args.threshold_strategy} τ={scores['threshold']:.4f}, coverage {scores['coverage']:.4f})"
        )

    if progress.best_epoch != progress.epoch:
        # Early stopping after the fact: the heads of the epoch with the best validation accuracy are the ones kept.
        # (The validation loss is no guide here: its full-weight KL term is lowest while the heads are still vague.)
        accelerator.print(f"Keeping epoch {progress.best_epoch} (best validation accuracy {progress.best_accuracy:.4f})")
        accelerator.load_state(str(output_dir / CHECKPOINTS_DIR / f"epoch_{progress.best_epoch}"))
    accelerator.wait_for_everyone()
    report = None
    if accelerator.is_main_process:
        report = finalize(args, accelerator.unwrap_model(model), processor, split_data[1], modalities, output_dir)
        accelerator.print(f"Done in {time.perf_counter() - start:.1f} s: {output_dir}")
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return report


def finalize(args, model, processor, validation: dict, modalities, output_dir: Path) -> dict:
    """Calibrates the trusted threshold on validation data and writes the complete checkpoint atomically."""
    if args.finetune == "lora":
        model = model.merge_and_unload()
    model.eval()
    # Fine-tuned encoders have new weights, hence new cache keys: their validation features are encoded here.
    features = validation.get("features") or compute_features(
        model, processor, validation["items"], modalities, args.cache_dir, show_progress=False
    )
    references = validation["labels"]
    rows, predictions, confidences = evaluate_script.predict(model, features, features.mask, args.batch_size)
    threshold = select_threshold(
        predictions == references[rows], confidences, args.threshold_strategy, args.target_precision
    )
    model.config.trusted_threshold = threshold
    model.config.trusted_threshold_strategy = args.threshold_strategy
    report, fused = evaluate_script.evaluation_report(
        model, features, references, validation["corpora"], threshold, args.batch_size,
        compare_strategies=True, target_precision=args.target_precision,
    )  # fmt: skip
    output_dir.mkdir(parents=True, exist_ok=True)
    staging = output_dir / f".final.incomplete-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging)
    processor.save_pretrained(staging)
    evaluate_script.write_json_atomic(report, staging / "eval_results.json")
    evaluate_script.save_plots(fused["correct"], fused["confidences"], threshold, staging / "plots")
    build_model_card(report, model.config, output_path=staging / "README.md", split="validation (speaker-disjoint)")
    publish(staging, output_dir)

    print("Trusted threshold strategies on validation (the checkpoint stores "
          f"{args.threshold_strategy}, τ={threshold:.4f}):")  # fmt: skip
    for strategy, scores in report["overall"]["thresholds"].items():
        print(
            f"  {strategy:<16} τ={scores['threshold']:.4f} trusted P={scores['trusted_precision']:.4f} "
            f"R={scores['trusted_recall']:.4f} F1={scores['trusted_f1']:.4f} coverage={scores['coverage']:.4f}"
        )
    return report


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    return training_function(args)


if __name__ == "__main__":
    main()
