"""The TER training loop with 🤗 Accelerate: per-modality evidential heads on frozen pretrained encoders (features
cached once) or fine-tuned backbones, the Trusted CE loss, the epoch of best validation accuracy kept, the trusted
threshold calibrated on speaker-disjoint validation data, and a complete checkpoint written atomically (weights
incl. encoders, config, processor, remote code, eval_results.json, plots, model card).

`train(TERTrainingArguments(...))` runs on one CPU process, on several CPU processes (gloo DDP) and on one or several
GPUs, as `accelerate launch` starts it (`scripts/train.py` is its command line).
"""

from __future__ import annotations

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
from tqdm.auto import tqdm

from trusted_f1.trusted_metrics import trusted_scores

from ..data.augmentation import modality_dropout
from ..data.feature_cache import compute_features, encode_missing
from ..data.manifest import load_manifest_dataset, speaker_folds_of, summarize_splits
from ..encoders.defaults import build_default_model, build_default_processor
from ..evaluation.plotting import save_plots
from ..evaluation.predict import collect_outputs, model_opinions
from ..evaluation.report import evaluation_report, new_speaker_interval, opinion_report, threshold_promise
from ..hub.model_card import TRAINING_DATA_FILE, build_model_card
from ..models import EMOTION_LABELS, MODALITIES
from ..utils.io import write_json_atomic
from ..utils.threads import single_thread_on_cpu
from .arguments import TERTrainingArguments
from .calibration import select_held_out_threshold
from .checkpointing import (
    CHECKPOINTS_DIR,
    PROGRESS_FILE,
    TrainingProgress,
    latest_checkpoint,
    publish,
    register_head_only_checkpoints,
    save_checkpoint,
)
from .crossfit import (
    CrossFit,
    apply_evidence_calibration,
    calibrate_confidence,
    calibrate_modalities,
    cross_fit,
    fit_domain_gate,
)
from .datasets import get_dataloaders, noisy_audio_copies, with_noisy_copies

logger = get_logger(__name__)

# Adapters of `--finetune lora` (rank, scaling); every linear layer of the backbones gets one.
LORA_RANK, LORA_ALPHA = 8, 16


def check_arguments(args: TERTrainingArguments) -> tuple[DatasetDict, tuple[str, ...], Path | None]:
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
    # Frozen encoders cross-fit over speaker folds of the whole corpus; fine-tuning holds out validation speakers.
    validation_fraction = 0.0 if args.cross_fits else args.validation_fraction
    try:
        splits = load_manifest_dataset(args.manifest, validation_fraction=validation_fraction, seed=args.seed)
    except (ValueError, FileNotFoundError) as error:
        raise type(error)(f"--manifest: {error}") from None
    if args.cross_fits:
        speakers = set(zip(splits["train"]["corpus"], splits["train"]["speaker_id"]))
        if len(speakers) < 2:
            raise ValueError(
                f"--manifest {args.manifest} has {len(speakers)} speaker: calibrating the confidence and the trusted "
                "threshold on speakers the heads never saw needs a corpus with at least two speakers."
            )
    elif "validation" not in splits or len(splits["validation"]) == 0:
        raise ValueError(
            f"--manifest {args.manifest} gives no validation speakers: calibrating the trusted threshold needs a "
            "corpus with at least two speakers (or a larger --validation_fraction)."
        )
    columns = {m: [v for split in splits.values() for v in split[m]] for m in MODALITIES}
    available = tuple(m for m in MODALITIES if any(value is not None for value in columns[m]))
    requested = args.requested_modalities()
    if requested is None:
        return splits, available, resume
    lacking = [m for m in requested if m not in available]
    if lacking:
        raise ValueError(
            f"--modalities asks for {lacking}, but no row of --manifest {args.manifest} has them (it has "
            f"{list(available)})."
        )
    return splits, tuple(m for m in MODALITIES if m in requested), resume


def validate(model, dataloader, accelerator, args, num_labels: int) -> dict:
    """Validation loss and trusted scores (threshold chosen on these data with `--threshold_strategy`)."""
    outputs = collect_outputs(model, dataloader, gather=accelerator.gather_for_metrics)
    scores = trusted_scores(
        outputs["predictions"],
        outputs["labels"],
        outputs["confidence"],
        threshold=args.threshold_strategy,
        target_precision=args.target_precision,
        num_classes=num_labels,
    )
    return {"loss": float(torch.from_numpy(outputs["loss"]).mean()), **scores}


def balanced_class_weights(labels: np.ndarray, num_labels: int) -> list[float]:
    """`N / (K n_k)` per class `k` (scikit-learn's "balanced"; a class absent from `labels` gets 0)."""
    counts = np.bincount(labels, minlength=num_labels)
    return [len(labels) / (num_labels * n) if n else 0.0 for n in counts.tolist()]


def build_model(args, modalities: Sequence[str], id2label: dict[int, str], annealing_steps: int, class_weights=None):
    """The TER model on the default pretrained encoders, set up for `--finetune`."""
    options = {m: {"use_weighted_layer_sum": True} for m in modalities if m in args.layer_sum_modalities}
    model = build_default_model(
        modalities,
        modality_options=options,
        id2label=id2label,
        label2id={label: i for i, label in id2label.items()},
        fusion=args.fusion,
        head_dropout=args.head_dropout,
        annealing_steps=annealing_steps,
        class_weights=class_weights,
    )
    if args.finetune == "none":
        model.encoders.requires_grad_(False)
        return model
    if args.gradient_checkpointing:
        # Non-reentrant checkpointing also gives gradients to LoRA adapters on frozen backbone weights.
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    if args.finetune == "lora":
        from peft import LoraConfig, get_peft_model

        backbone_linears = [
            name
            for name, module in model.named_modules()
            if name.startswith("encoders.") and isinstance(module, torch.nn.Linear)
        ]
        heads = [f"heads.{m}" for m in modalities] + [f"layer_weighting.{m}" for m in model.layer_weighting]
        lora = LoraConfig(r=LORA_RANK, lora_alpha=LORA_ALPHA, target_modules=backbone_linears, modules_to_save=heads)
        model = get_peft_model(model, lora)
    return model


def shared_encoding(accelerator: Accelerator, model, processor, items, modalities: Sequence[str], args) -> int:
    """`encode_missing` of `items` shared out: each process encodes its share of the batches the cache lacks (the
    batches one process would form, so the cached features do not depend on the number of processes); returns, once
    all have finished, how many (item, modality) pairs they encoded together."""
    encoded = encode_missing(
        model,
        processor,
        items,
        modalities,
        args.cache_dir,
        args.encode_batch_size,
        accelerator.process_index,
        accelerator.num_processes,
        show_progress=accelerator.is_local_main_process,
    )
    accelerator.wait_for_everyone()
    return int(accelerator.reduce(torch.tensor(encoded, device=accelerator.device), "sum"))


def shared_features(
    accelerator: Accelerator, model, processor, items, modalities: Sequence[str], args, encoded: int = 0
):
    """`compute_features` of `items` after their `shared_encoding`: every process reads them all. `encoded`: pairs of
    these items encoded before (by an earlier `shared_encoding`), counted as encoded in the returned features."""
    encoded += shared_encoding(accelerator, model, processor, items, modalities, args)
    features = compute_features(model, processor, items, modalities, args.cache_dir, False)
    encoded = min(encoded, features.num_cached)  # two that took over a stale claim both encoded it
    features.num_encoded, features.num_cached = encoded, features.num_cached - encoded
    return features


def train(args: TERTrainingArguments) -> dict:
    """Trains, calibrates and saves a TER checkpoint in `args.output_dir`; returns its evaluation report (on the
    main process; `None` on the others)."""
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

    label_ids = sorted({label for split in splits.values() for label in split["label"]})
    id2label = {i: EMOTION_LABELS[label_id] for i, label_id in enumerate(label_ids)}
    to_model_label = {label_id: i for i, label_id in enumerate(label_ids)}

    split_names = ("train",) if args.cross_fits else ("train", "validation")
    split_data = []
    for name in split_names:
        split = splits[name]
        split_data.append(
            {
                "items": {m: list(split[m]) for m in modalities},
                "labels": np.array([to_model_label[label] for label in split["label"]]),
                "corpora": list(split["corpus"]),
                "speakers": list(split["speaker_id"]),
                "is_copy": np.zeros(len(split), dtype=bool),
            }
        )

    # Build the model after set_seed so the seed also controls the heads' initialisation. The KL annealing is
    # counted in optimizer steps, which do not depend on the number of processes for a fixed effective batch.
    num_train = len(splits["train"])
    steps_per_epoch = math.ceil(
        math.ceil(num_train / (args.batch_size * accelerator.num_processes)) / args.gradient_accumulation_steps
    )
    balanced = args.class_weighting == "balanced"
    class_weights = balanced_class_weights(split_data[0]["labels"], len(id2label)) if balanced else None
    model = build_model(
        args, modalities, id2label, max(1, round(args.annealing_epochs * steps_per_epoch)), class_weights
    )
    processor = build_default_processor(modalities)

    if args.finetune == "none":
        single_thread_on_cpu(accelerator.device)
        for split in split_data:
            split["features"] = shared_features(accelerator, model, processor, split["items"], modalities, args)
        if "noise" in args.augmentations and "audio" in modalities:
            # The copies of the items with usable audio, encoded alone first (batches of copies, not copies between
            # items already cached), then read with the items: one store.
            rows, copies = noisy_audio_copies(split_data[0], args.seed)
            encoded = split_data[0]["features"].num_encoded
            encoded += shared_encoding(accelerator, model, processor, {"audio": copies}, ("audio",), args)
            split_data[0] = with_noisy_copies(split_data[0], rows, copies)
            split_data[0]["features"] = shared_features(
                accelerator, model, processor, split_data[0]["items"], modalities, args, encoded
            )
        for split, name in zip(split_data, split_names):
            cached = split["features"]
            accelerator.print(
                f"{name}: {len(split['labels'])} items; modality features: {cached.num_encoded} encoded now, "
                f"{cached.num_cached} from the cache, {len(cached.failures)} masked after a failure"
            )
            for index, modality, reason in cached.failures:
                accelerator.print(f"  {name} item {index}: {modality} masked ({reason})")
            usable = cached.mask.any(1).nonzero().flatten().tolist()
            if len(usable) < len(split["labels"]):
                accelerator.print(
                    f"  {len(split['labels']) - len(usable)} {name} items have no usable modality: dropped"
                )
                split["features"] = cached.select(usable)
                for key in ("labels", "is_copy"):
                    split[key] = split[key][usable]
                for key in ("corpora", "speakers"):
                    split[key] = [split[key][i] for i in usable]

    crossfit = folds = None
    epochs = args.epochs
    if args.cross_fits:
        train = split_data[0]
        num_folds = min(args.calibration_folds, len(set(zip(train["corpora"], train["speakers"]))))
        folds = speaker_folds_of(train["corpora"], train["speakers"], num_folds, args.seed)
        accelerator.print(f"Cross-fitting the heads over {num_folds} speaker folds, up to {args.epochs} epochs each")
        effective_batch = args.batch_size * accelerator.num_processes * args.gradient_accumulation_steps
        labels = torch.as_tensor(train["labels"])
        crossfit = cross_fit(
            model.config, train["features"], labels, folds, args, effective_batch, accelerator.is_local_main_process
        )
        epochs = crossfit.epochs
        accelerator.print(
            f"Lowest held-out NLL after {epochs} epochs ({crossfit.nll[epochs - 1]:.4f}; after 1 epoch "
            f"{crossfit.nll[0]:.4f}, after {len(crossfit.nll)} {crossfit.nll[-1]:.4f}): the final heads train for {epochs}"
        )

    train_dataloader, eval_dataloader = get_dataloaders(args, split_data, processor, modalities)
    trainable = [p for p in model.parameters() if p.requires_grad]
    # One fused kernel per step instead of a loop over the parameters (the heads' step is many small tensors).
    fused = accelerator.device.type in ("cpu", "cuda")
    optimizer = torch.optim.Adam(trainable, lr=args.learning_rate, weight_decay=args.weight_decay, fused=fused)
    model, optimizer, train_dataloader = accelerator.prepare(model, optimizer, train_dataloader)
    if eval_dataloader is not None:
        eval_dataloader = accelerator.prepare(eval_dataloader)
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
    for epoch in range(progress.epoch, epochs):
        model.train()
        train_dataloader.set_epoch(epoch)
        total_loss, num_batches = 0.0, 0
        bar = tqdm(
            train_dataloader,
            desc=f"epoch {epoch + 1}/{epochs}",
            leave=False,
            disable=not accelerator.is_local_main_process,
        )
        for batch in bar:
            if "modality_dropout" in args.augmentations:
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
        progress.epoch = epoch + 1
        line = f"epoch {progress.epoch}: train loss {train_loss.item():.4f}"
        if eval_dataloader is not None:
            scores = validate(model, eval_dataloader, accelerator, args, len(id2label))
            if scores["accuracy"] >= progress.best_accuracy:  # ties go to the later, longer-trained epoch
                progress.best_epoch, progress.best_accuracy = progress.epoch, scores["accuracy"]
            line += (
                f", validation loss {scores['loss']:.4f}, accuracy {scores['accuracy']:.4f}, trusted F1 "
                f"{scores['trusted_f1']:.4f} ({args.threshold_strategy} τ={scores['threshold']:.4f}, coverage "
                f"{scores['coverage']:.4f})"
            )
        save_checkpoint(accelerator, output_dir, progress.epoch)
        accelerator.print(line)

    if eval_dataloader is not None and progress.best_epoch != progress.epoch:
        # Early stopping after the fact: the heads of the epoch with the best validation accuracy are the ones kept.
        # (The validation loss is no guide here: its full-weight KL term is lowest while the heads are still vague.)
        accelerator.print(
            f"Keeping epoch {progress.best_epoch} (best validation accuracy {progress.best_accuracy:.4f})"
        )
        accelerator.load_state(str(output_dir / CHECKPOINTS_DIR / f"epoch_{progress.best_epoch}"))
    accelerator.wait_for_everyone()
    report = None
    if accelerator.is_main_process:
        final = accelerator.unwrap_model(model)
        training_data = summarize_splits(splits, args.manifest)
        if args.cross_fits:
            report = finalize_cross_fitted(
                args, final, processor, split_data[0], crossfit, folds, output_dir, training_data
            )
        else:
            report = finalize(args, final, processor, split_data[1], modalities, output_dir, training_data)
        held_out = "the cross-fitted held-out opinions" if args.cross_fits else "validation"
        accelerator.print(
            f"Trusted threshold strategies on {held_out} (the checkpoint stores {args.threshold_strategy}, "
            f"τ={report['overall']['threshold']:.4f}):"
        )
        for strategy, scores in report["overall"]["thresholds"].items():
            accelerator.print(
                f"  {strategy:<16} τ={scores['threshold']:.4f} trusted P={scores['trusted_precision']:.4f} "
                f"R={scores['trusted_recall']:.4f} F1={scores['trusted_f1']:.4f} coverage={scores['coverage']:.4f}"
            )
        accelerator.print(f"Done in {time.perf_counter() - start:.1f} s: {output_dir}")
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return report


def finalize(
    args, model, processor, validation: dict, modalities, output_dir: Path, training_data: dict | None = None
) -> dict:
    """Calibrates the trusted threshold on validation data and writes the complete checkpoint atomically, with
    `training_data.json` (corpora, items, speakers of each split, from `summarize_splits`) that the card reads."""
    if args.finetune == "lora":
        model = model.merge_and_unload()
    model.eval()
    # Fine-tuned encoders have new weights, hence new cache keys: their validation features are encoded here.
    features = validation.get("features") or compute_features(
        model, processor, validation["items"], modalities, args.cache_dir, show_progress=False
    )
    references = validation["labels"]
    evidence, present = model_opinions(model, features, args.batch_size)
    threshold = select_held_out_threshold(model.config, evidence, present, torch.as_tensor(references), args)
    report, fused = evaluation_report(
        model,
        features,
        references,
        validation["corpora"],
        threshold,
        args.batch_size,
        compare_strategies=True,
        target_precision=args.target_precision,
    )
    write_checkpoint(model, processor, report, fused, output_dir, "validation (speaker-disjoint)", training_data)
    return report


def finalize_cross_fitted(
    args, model, processor, train: dict, crossfit: CrossFit, folds, output_dir: Path, training_data: dict
) -> dict:
    """Fits the domain gates, the confidence calibration and the trusted threshold on the cross-fitted held-out
    opinions, scores those opinions (every training speaker by heads that never saw it) and writes the checkpoint."""
    model.eval()
    features, labels = train["features"], torch.as_tensor(train["labels"])
    # Noisy copies (--augment noise) train the heads, but neither define the domain nor are scored: they share their
    # speaker's fold.
    scored = torch.from_numpy(~train["is_copy"])
    scale = features.mask.to(torch.float32)
    for modality in args.gated_modalities:
        if modality in model.config.modalities:
            scale[:, model.config.modalities.index(modality)] = fit_domain_gate(
                model, features, labels, modality, folds, scored
            )
    evidence, present = (crossfit.evidence * scale[..., None])[scored], features.mask[scored]
    references, corpora = labels[scored], [c for c, keep in zip(train["corpora"], scored.tolist()) if keep]
    calibrate_modalities(model.config, evidence, present, references)
    evidence = apply_evidence_calibration(model.config, evidence)
    calibrate_confidence(model.config, evidence, present, references)
    threshold = select_held_out_threshold(model.config, evidence, present, references, args)
    report, fused = opinion_report(
        evidence, present, references.numpy(), corpora, model.config, threshold, True, args.target_precision
    )
    rows = present.any(1).numpy()
    trusted = fused["confidences"] >= threshold
    speakers = np.array(
        [f"{c}/{s}" for c, s, keep in zip(train["corpora"], train["speakers"], scored.tolist()) if keep]
    )[rows]
    in_corpus = {"overall": np.ones(len(speakers), dtype=bool)}
    in_corpus.update({c: np.asarray(corpora)[rows] == c for c in dict.fromkeys(corpora)})
    new_speaker = {
        name: new_speaker_interval(fused["correct"][keep], trusted[keep], speakers[keep])
        for name, keep in in_corpus.items()
    }
    report["promise"] = threshold_promise(report, new_speaker)
    report["calibration"] = {
        "folds": len(folds),
        "epochs": crossfit.epochs,
        "held_out_nll": [float(v) for v in crossfit.nll],
        "evidence_calibration": model.config.evidence_calibration,
        "confidence_calibration": model.config.confidence_calibration,
        "domain_gates": {
            m: {k: model.config.modality_config(m)[k] for k in ("domain_reference", "domain_width")}
            for m in model.domains
        },
    }
    write_checkpoint(model, processor, report, fused, output_dir, "cross-fitted over speaker folds", training_data)
    return report


def write_checkpoint(
    model, processor, report: dict, fused: dict, output_dir: Path, split: str, training_data: dict | None
) -> None:
    """Weights, config, processor, remote code, eval_results.json, plots and card, published atomically."""
    output_dir.mkdir(parents=True, exist_ok=True)
    staging = output_dir / f".final.incomplete-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging)
    processor.save_pretrained(staging)
    write_json_atomic(report, staging / "eval_results.json")
    if training_data is not None:
        write_json_atomic(training_data, staging / TRAINING_DATA_FILE)
    threshold = model.config.trusted_threshold
    save_plots(fused["correct"], fused["confidences"], threshold, staging / "plots")
    build_model_card(report, model.config, output_path=staging / "README.md", split=split, training_data=training_data)
    publish(staging, output_dir)
