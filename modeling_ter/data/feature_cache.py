"""Frozen-encoder features, computed once per (encoder, item) and reused across epochs and runs.

A frozen encoder turns the same item into the same pooled features every time, so training the evidential heads
only needs them once. Each entry is keyed by

- the encoder: its backbone config and pooling settings, a SHA-256 of its weights (so a fine-tuned or different
  checkpoint never reads another encoder's features) and the processor's settings for that modality;
- the item: the file's resolved path, size and modification time, or the text itself; an item synthesised when read
  (`SynthesizedItem`, e.g. the noisy copies of `--augment noise`) by what it is and the keys of the files it reads.

Entries are safetensors files `<cache_dir>/<modality>/<encoder key>/<item key>.safetensors` holding `features`
`(num_feature_layers, embed_dim)`, written atomically (temporary file, then `os.replace`). An item whose modality
cannot be used (no face in the video, a corrupt file) is stored as a *masked* entry with the reason in the file's
metadata: the corpus never crashes, the modality is masked for that item, and the reason is reported.

The cache folder is `$TER_CACHE/features`, else `~/.cache/ter/features`.

A corpus whose features do not fit in memory (more than `$TER_FEATURES_MAX_IN_MEMORY_MB`, default 1024 MiB, or
`compute_features(..., memory_map=True)`) is read through a *packed* file: the entries of its item list, in order, in
one `.npy` array `<cache_dir>/<modality>/<encoder key>/packed/<item-list key>.npy` `(num_items, num_feature_layers,
embed_dim)`, memory-mapped (copy-on-write) behind the same `CachedFeatures` tensors. The next run over the same items
opens it instead of reading one entry per item; the bytes, hence the training results, are the in-memory path's.
(`scripts/bench_scale.py` measured this against per-item files and a `datasets` Arrow table.)

Beside the entries, `<cache_dir>/<modality>/<encoder key>/claims/` holds, while several processes encode, a file per
batch being encoded (`batch_claim`).

Example:

```python
>>> from modeling_ter.data.feature_cache import compute_features  # doctest: +SKIP
>>> cached = compute_features(model, processor, dataset, ["audio", "text"])  # doctest: +SKIP
>>> cached.features["audio"].shape, cached.mask.shape  # doctest: +SKIP
(torch.Size([226, 1, 384]), torch.Size([226, 2]))
```
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import soundfile
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from tqdm.auto import tqdm

from ..utils.cache import default_cache_dir
from ..utils.io import atomic_path, write_json_atomic

logger = logging.getLogger(__name__)

# Bump when the layout or meaning of an entry changes: old entries are then never read.
CACHE_FORMAT_VERSION = "1"
MASKED = "masked"
ENCODED = "encoded"
# Above this many MiB of features (all modalities), `compute_features` memory-maps them instead of holding them.
MAX_IN_MEMORY_MB_VARIABLE = "TER_FEATURES_MAX_IN_MEMORY_MB"
DEFAULT_MAX_IN_MEMORY_MB = 1024.0
# A batch claimed longer ago than this is taken to be left by a process that died, and is encoded again.
CLAIM_TIMEOUT_S = 600.0


def default_feature_cache_dir() -> Path:
    """`$TER_CACHE/features`, else `~/.cache/ter/features`."""
    return default_cache_dir() / "features"


def _sha256_json(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode("utf-8")).hexdigest()


def weights_fingerprint(module: torch.nn.Module) -> str:
    """SHA-256 of a module's state dict: every tensor's name, dtype, shape and bytes, in name order."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        tensor = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def encoder_key(model: torch.nn.Module, modality: str, processor_settings: Any) -> str:
    """The cache key of one modality's encoder of a TER model: backbone config, pooling, weights, processor settings.

    Args:
        model: a `TERForEmotionRecognition` with a backbone for `modality`.
        modality: `"audio"`, `"text"` or `"video"`.
        processor_settings: anything JSON-serialisable that determines the encoder's inputs (e.g. the processor's
            `to_dict()`).
    """
    if modality not in getattr(model, "encoders", {}):
        raise ValueError(
            f"The model has no {modality} encoder (it has {sorted(getattr(model, 'encoders', {}))}); only modalities "
            "with a backbone have features to cache."
        )
    modality_config = dict(model.config.modality_config(modality))
    # The backbone's name is a label (a local folder became its last component, see `portable_name`), not what the
    # encoder computes: leave it out so renaming a backbone keeps its cached features.
    if modality_config.get("backbone"):
        modality_config["backbone"] = {k: v for k, v in modality_config["backbone"].items() if k != "_name_or_path"}
    identity = {
        "format": CACHE_FORMAT_VERSION,
        "modality_config": modality_config,
        "weights": weights_fingerprint(model.encoders[modality]),
        "processor": processor_settings,
    }
    return _sha256_json(identity)[:32]


class SynthesizedItem(Protocol):
    """An item made when it is read (e.g. `data.augmentation.NoisyAudio`), cached like a file: keyed by
    `identity()` and the keys of the files it reads (`sources`, the first one gives its length), encoded from what
    `load()` returns (an input the processor takes, e.g. `{"array": ..., "sampling_rate": ...}`)."""

    sources: tuple[str, ...]

    def identity(self) -> Any: ...

    def load(self) -> Any: ...


def _is_synthesized(value: Any) -> bool:
    """Whether an item is a `SynthesizedItem`, not a path (or a text)."""
    return not isinstance(value, (str, os.PathLike))


def item_key(modality: str, value: Any) -> str:
    """The cache key of one item: the text itself for `text`, else the file's resolved path, size and mtime; for a
    synthesised item (`SynthesizedItem`, e.g. a `NoisyAudio`), its `identity()` and the keys of its `sources`."""
    if modality == "text":
        return _sha256_json(["text", value])[:32]
    if _is_synthesized(value):
        return _sha256_json([modality, value.identity(), [item_key(modality, source) for source in value.sources]])[:32]
    path = Path(value)
    if not path.is_file():
        # A vanished file has no stable identity; key it by path alone so the failure is cached and reported.
        return _sha256_json([modality, str(path.resolve()), None])[:32]
    stat = path.stat()
    return _sha256_json([modality, str(path.resolve()), stat.st_size, stat.st_mtime_ns])[:32]


def _write_entry(path: Path, features: torch.Tensor | None, reason: str | None, source: str) -> None:
    """Writes one entry atomically (see `atomic_path`)."""
    tensor = features if features is not None else torch.zeros(0)
    metadata = {"status": ENCODED if features is not None else MASKED, "reason": reason or "", "source": source}
    with atomic_path(path) as temporary:
        save_file({"features": tensor.detach().to("cpu", torch.float32).contiguous()}, temporary, metadata=metadata)


def _read_entry(path: Path) -> tuple[torch.Tensor | None, str | None]:
    """`(features, None)` of an encoded entry or `(None, reason)` of a masked one."""
    with safe_open(str(path), framework="pt") as entry:
        metadata = entry.metadata() or {}
        if metadata.get("status") == MASKED:
            return None, metadata.get("reason") or "masked"
        return entry.get_tensor("features"), None


@dataclass
class CachedFeatures:
    """Pooled features of a dataset's items, one tensor per modality.

    Attributes:
        modalities: the modalities, in the column order of `mask`.
        features: modality -> `(num_items, num_feature_layers, embed_dim)` float32, zeros where masked.
        mask: `(num_items, num_modalities)` bool, `True` where the modality is present and usable.
        failures: `(item index, modality, reason)` of every item whose modality was given but could not be used.
        num_encoded: how many (item, modality) pairs were encoded in this call (cache misses).
        num_cached: how many were read from the cache.
    """

    modalities: tuple[str, ...]
    features: dict[str, torch.Tensor]
    mask: torch.Tensor
    failures: list[tuple[int, str, str]] = field(default_factory=list)
    num_encoded: int = 0
    num_cached: int = 0

    def select(self, indices: Sequence[int]) -> "CachedFeatures":
        """The rows `indices` (e.g. one split); failures keep their new row numbers."""
        index = torch.as_tensor(list(indices), dtype=torch.long)
        position = {int(old): new for new, old in enumerate(index.tolist())}
        return CachedFeatures(
            modalities=self.modalities,
            features={m: f[index] for m, f in self.features.items()},
            mask=self.mask[index],
            failures=[(position[i], m, r) for i, m, r in self.failures if i in position],
            num_encoded=self.num_encoded,
            num_cached=self.num_cached,
        )


class FeatureCache:
    """A folder of cached pooled features (see the module docstring).

    Args:
        cache_dir (`str` or `os.PathLike`, *optional*): defaults to `$TER_CACHE/features` or `~/.cache/ter/features`.
    """

    def __init__(self, cache_dir: str | os.PathLike | None = None):
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_feature_cache_dir()

    def entry_path(self, modality: str, encoder: str, item: str) -> Path:
        return self.cache_dir / modality / encoder / f"{item}.safetensors"

    def keyed_path(self, modality: str, encoder: str, folder: str, identity: Any, suffix: str) -> Path:
        """A file kept beside the entries, `<modality>/<encoder>/<folder>/<key><suffix>`, keyed by the SHA-256 of
        the JSON-serialisable `identity` (packed features, batch claims)."""
        return self.cache_dir / modality / encoder / folder / f"{_sha256_json(identity)[:32]}{suffix}"

    def get_or_compute(
        self,
        modality: str,
        encoder: str,
        value: str,
        compute: Callable[[], torch.Tensor],
    ) -> tuple[torch.Tensor | None, str | None, bool]:
        """The features of one item, computed with `compute()` on a cache miss.

        `compute` returns `(num_feature_layers, embed_dim)` features or raises (`ValueError`, `OSError`, ...) when
        the item cannot be used; the error message is stored as the masked entry's reason.

        Returns:
            `(features or None, reason or None, encoded_now)`.
        """
        path = self.entry_path(modality, encoder, item_key(modality, value))
        if path.is_file():
            features, reason = _read_entry(path)
            return features, reason, False
        try:
            features, reason = compute(), None
        except (ValueError, OSError) as error:  # corrupt, empty or unreadable file, no face, ...
            features, reason = None, f"{type(error).__name__}: {error}"
        _write_entry(path, features, reason, source=value if modality != "text" else "text")
        return features, reason, True


def processor_settings(processor: Any, modality: str) -> dict[str, Any]:
    """The settings of a `TERProcessor` that shape `modality`'s encoder inputs (part of the encoder's cache key).

    Audio: the feature extractor's config; text: the tokenizer's class, vocabulary (hashed), size and maximum length;
    video: the number of sampled frames and the face crop size.
    """
    if modality == "audio":
        return processor.feature_extractor.to_dict()
    if modality == "text":
        tokenizer = processor.tokenizer
        return {
            "class": type(tokenizer).__name__,
            # The vocabulary, not `name_or_path`: a saved checkpoint holds the same tokenizer under another path.
            "vocab": _sha256_json(sorted(tokenizer.get_vocab().items())),
            "vocab_size": len(tokenizer),
            "model_max_length": tokenizer.model_max_length,
        }
    return {"num_frames": processor.num_frames, "image_size": processor.image_size}


@torch.no_grad()
def embed_item(
    model: torch.nn.Module, processor: Any, modality: str, value: Any, sampling_rate: int | None = None
) -> torch.Tensor:
    """Pooled features `(num_feature_layers, embed_dim)` of one item of one modality, from its raw input (a path,
    a text, or an audio array with its `sampling_rate`).

    Raises `ValueError` (or `FileNotFoundError`) when the processor cannot read the item or masks it (no face).
    """
    batch = processor(**{modality: [value]}, sampling_rate=sampling_rate, return_tensors="pt")
    if not bool(batch["modality_mask"][0, list(processor.modalities).index(modality)]):
        shown = value if isinstance(value, str) else f"an array of shape {getattr(value, 'shape', '?')}"
        raise ValueError(f"the processor masked the {modality} modality of {shown!r} (for video: no face found).")
    return embed_processed(model, batch, modality)[0].float().cpu()


def embed_processed(model: torch.nn.Module, batch: Any, modality: str) -> torch.Tensor:
    """Pooled features `(batch, num_feature_layers, embed_dim)` of one modality of a processor's output.

    `batch` holds the model's input names (`audio_input_features`, `text_input_ids`, ...); the `<modality>_` ones
    go, without their prefix and on the model's device, to `model.embed_modality`.
    """
    prefix = f"{modality}_"
    device = next(model.parameters()).device
    inputs = {name[len(prefix) :]: value for name, value in batch.items() if name.startswith(prefix)}
    inputs = {name: torch.as_tensor(value).to(device) for name, value in inputs.items()}
    return model.embed_modality(modality, **inputs)


def _length_key(modality: str, value: Any) -> float:
    """How long an item is, to batch items of similar length: seconds of audio (from the file header; a synthesised
    item's first source), characters of text; 0 where unknown (video, or an unreadable file, which then fails in
    its own batch)."""
    if modality == "text":
        return float(len(value))
    if modality == "audio":
        try:
            return float(soundfile.info(value.sources[0] if _is_synthesized(value) else value).duration)
        except (RuntimeError, OSError, TypeError, ValueError):  # soundfile's LibsndfileError is a RuntimeError
            return 0.0
    return 0.0


def encoding_plan(
    cache: FeatureCache, modality: str, key: str, values: Sequence[Any], batch_size: int
) -> list[list[int]]:
    """The positions of the distinct items of `values`, sorted by length and cut into batches of `batch_size`:
    similar lengths share a batch, so padding costs little. Once any item is missing, the plan covers every distinct
    item, so it does not depend on which entries other processes have written meanwhile: processes that start at
    different times (one already writing while another plans) agree on it, and `encode_missing` drops, batch by
    batch, the items already cached. With every item cached the plan is empty (no file header is read to sort)."""
    distinct, planned, any_missing = [], set(), False
    for index, value in enumerate(values):
        if value is None:
            continue
        path = cache.entry_path(modality, key, item_key(modality, value))
        if path not in planned:  # each distinct item once (EmoDB repeats its 10 sentences)
            planned.add(path)
            distinct.append(index)
            any_missing = any_missing or not path.is_file()
    if not any_missing:
        return []
    distinct.sort(key=lambda index: (_length_key(modality, values[index]), index))
    return [distinct[start : start + batch_size] for start in range(0, len(distinct), batch_size)]


def batch_claim_path(cache: FeatureCache, modality: str, key: str, entry_paths: Sequence[Path]) -> Path:
    """The claim file of the batch whose entries are `entry_paths` (the same for every process)."""
    return cache.keyed_path(modality, key, "claims", sorted(path.name for path in entry_paths), ".claim")


@contextlib.contextmanager
def batch_claim(cache: FeatureCache, modality: str, key: str, entry_paths: Sequence[Path], shared: bool):
    """Yields whether this process encodes the batch whose entries are `entry_paths`: alone (`shared=False`)
    always; beside other processes only if it is the first to claim it (its claim file created exclusively, removed
    once the entries are written). A claim older than `CLAIM_TIMEOUT_S` is taken over. What a live claim keeps a
    process from encoding is cached by the claimant before `accelerator.wait_for_everyone()`, and what a dead one
    kept is encoded by `compute_features` afterwards (alone: claims not read)."""
    if not shared:
        yield True
        return
    claim = batch_claim_path(cache, modality, key, entry_paths)
    claim.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.close(os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        try:
            age = time.time() - claim.stat().st_mtime
        except FileNotFoundError:  # released meanwhile: its entries are written
            age = 0.0
        if age < CLAIM_TIMEOUT_S:
            yield False
            return
        claim.touch()
    try:
        yield True
    finally:
        claim.unlink(missing_ok=True)


@torch.no_grad()
def _encode_batch(
    model: torch.nn.Module, processor: Any, modality: str, values: Sequence[Any]
) -> list[tuple[torch.Tensor | None, str | None]]:
    """`(features (num_feature_layers, embed_dim) or None, reason or None)` of each value, encoded as one batch.

    When the processor refuses the batch (a corrupt or unreadable file), its items are encoded one by one, so that
    only the bad item is masked, with the error as its reason.
    """
    try:
        inputs = [value.load() if _is_synthesized(value) else value for value in values]
        batch = processor(**{modality: inputs}, return_tensors="pt")
    except (ValueError, OSError) as error:  # corrupt, empty or unreadable file, ...
        if len(values) == 1:
            return [(None, f"{type(error).__name__}: {error}")]
        return [result for value in values for result in _encode_batch(model, processor, modality, [value])]
    present = batch["modality_mask"][:, list(processor.modalities).index(modality)]
    if not present.any():
        features = [None] * len(values)
    else:
        features = list(embed_processed(model, batch, modality).float().cpu())
    reason = f"ValueError: the processor masked the {modality} modality (for video: no face found)."
    return [(f, None) if usable else (None, reason) for f, usable in zip(features, present.tolist())]


def encode_missing(
    model: torch.nn.Module,
    processor: Any,
    items: Any,
    modalities: Sequence[str],
    cache_dir: str | os.PathLike | None = None,
    batch_size: int = 16,
    process_index: int = 0,
    num_processes: int = 1,
    show_progress: bool = True,
) -> int:
    """Encodes the items the cache lacks, in length-sorted batches, and stores them; returns how many
    (item, modality) pairs this process encoded (a batch two processes met on counts in both).

    With `num_processes > 1` (`accelerator.process_index`, `accelerator.num_processes`) each process encodes every
    `num_processes`-th batch of the same plan (`encoding_plan`, over every distinct item), then takes the other
    processes' batches, last first, skipping what is cached by then: a process that started late or runs slow is
    helped, so all end together. A batch is claimed before it is encoded (`batch_claim`), so two processes that
    meet do not both encode it (they did: one batch of each modality, 16 of the demo corpus's 226 clips, twice).
    Each writes its own entries, and after `accelerator.wait_for_everyone()` every process reads them all with
    `compute_features`.
    """
    cache = FeatureCache(cache_dir)
    model_was_training = model.training
    model.eval()
    encoded = 0
    for modality in modalities:
        key = encoder_key(model, modality, processor_settings(processor, modality))
        values = list(items[modality])
        plan = encoding_plan(cache, modality, key, values, batch_size)
        others = [batch for j, batch in enumerate(plan) if j % num_processes != process_index]
        batches = plan[process_index::num_processes] + others[::-1]
        progress = tqdm(
            total=sum(len(b) for b in batches), desc=f"{modality} features", disable=not show_progress, leave=False
        )
        for batch in batches:
            paths = {i: cache.entry_path(modality, key, item_key(modality, values[i])) for i in batch}
            positions = [i for i in batch if not paths[i].is_file()]
            if positions:
                with batch_claim(cache, modality, key, list(paths.values()), num_processes > 1) as claimed:
                    # Once claimed, what the other process wrote meanwhile is not encoded again.
                    positions = [i for i in positions if claimed and not paths[i].is_file()]
                    if positions:
                        results = _encode_batch(model, processor, modality, [values[i] for i in positions])
                        for index, (features, reason) in zip(positions, results):
                            source = str(values[index]) if modality != "text" else "text"
                            _write_entry(paths[index], features, reason, source=source)
                    encoded += len(positions)
            progress.update(len(batch))
        progress.close()
    model.train(model_was_training)
    return encoded


def max_in_memory_bytes() -> float:
    """The most feature bytes `compute_features` holds in memory: `$TER_FEATURES_MAX_IN_MEMORY_MB` (MiB), else 1024."""
    value = os.environ.get(MAX_IN_MEMORY_MB_VARIABLE, "")
    try:
        megabytes = float(value) if value else DEFAULT_MAX_IN_MEMORY_MB
    except ValueError:
        raise ValueError(f"${MAX_IN_MEMORY_MB_VARIABLE} must be a number of MiB, got {value!r}.") from None
    return megabytes * 2**20


def _gather_entries(
    cache: FeatureCache, modality: str, key: str, values: Sequence[Any], out: torch.Tensor
) -> list[tuple[int, str]]:
    """Reads the entry of every value into `out[index]` (left as is where `None` or masked); returns the masked
    `(index, reason)`."""
    failures = []
    for index, value in enumerate(values):
        if value is None:
            continue
        item_features, reason = _read_entry(cache.entry_path(modality, key, item_key(modality, value)))
        if item_features is None:
            failures.append((index, reason))
            continue
        if item_features.shape != out.shape[1:]:
            raise ValueError(
                f"Cached {modality} features of {value!r} have shape {tuple(item_features.shape)}, expected "
                f"{tuple(out.shape[1:])}; delete {cache.cache_dir / modality / key} and run again."
            )
        out[index] = item_features
    return failures


def packed_path(cache: FeatureCache, modality: str, key: str, values: Sequence[Any]) -> Path:
    """Where the packed features of the item list `values` (in this order) go: keyed by its items' keys."""
    keys = [None if value is None else item_key(modality, value) for value in values]
    return cache.keyed_path(modality, key, "packed", keys, ".npy")


def _packed_features(
    cache: FeatureCache, modality: str, key: str, values: Sequence[Any], shape: tuple[int, ...]
) -> tuple[torch.Tensor, list[tuple[int, str]]]:
    """`(features, masked (index, reason))` of `values`, memory-mapped from their packed file, written first (row by
    row from the entries, so never held in memory) if absent. Its `.json` sidecar, written last, lists the masked
    items; a packed file without one is incomplete and rewritten."""
    path = packed_path(cache, modality, key, values)
    sidecar = path.with_suffix(".json")
    if not sidecar.is_file():
        with atomic_path(path) as temporary:
            array = np.lib.format.open_memmap(temporary, mode="w+", dtype=np.float32, shape=shape)
            failures = _gather_entries(cache, modality, key, values, torch.from_numpy(array))
            array.flush()
            del array
        write_json_atomic({"shape": list(shape), "failures": failures}, sidecar)
    failures = [(int(index), reason) for index, reason in json.loads(sidecar.read_text())["failures"]]
    # Copy-on-write: the tensor is writable (as torch expects) and a write never reaches the file.
    array = np.load(path, mmap_mode="c")
    if array.shape != shape:
        raise ValueError(f"{path} holds features of shape {array.shape}, expected {shape}; delete it and run again.")
    return torch.from_numpy(array), failures


def compute_features(
    model: torch.nn.Module,
    processor: Any,
    items: Any,
    modalities: Sequence[str],
    cache_dir: str | os.PathLike | None = None,
    show_progress: bool = True,
    batch_size: int = 16,
    memory_map: bool | None = None,
) -> CachedFeatures:
    """Pooled features of every item for each modality, from the cache or encoded (batched) and stored.

    Args:
        model: a `TERForEmotionRecognition` with a backbone for each of `modalities`.
        processor: callable as `processor(audio=[paths], return_tensors="pt")` (likewise `text=`, `video=`),
            returning `<modality>_*` raw inputs and `modality_mask` (a `TERProcessor`).
        items: a `datasets.Dataset` (or a dict of columns) with one column per modality: a file path (or a
            `SynthesizedItem`) for audio/video, the text for text; `None` where the item lacks the modality.
        modalities: the modalities to compute, in the column order of the returned mask.
        cache_dir: the cache folder (default: `$TER_CACHE/features` or `~/.cache/ter/features`).
        show_progress: show a progress bar per modality.
        batch_size: items encoded together (sorted by length, see `encoding_plan`).
        memory_map: read the features through memory-mapped packed files (see the module docstring) instead of
            holding them in memory; by default when they would take more than `max_in_memory_bytes()`.

    Returns:
        `CachedFeatures`; its `failures` list the items whose modality was given but unusable (also logged).
    """
    cache = FeatureCache(cache_dir)
    modalities = tuple(modalities)
    columns = {m: list(items[m]) for m in modalities}
    num_encoded = encode_missing(
        model, processor, columns, modalities, cache_dir, batch_size, show_progress=show_progress
    )
    num_items = len(next(iter(columns.values()))) if columns else 0
    shapes = {
        m: (
            num_items,
            model.config.modality_config(m)["num_feature_layers"],
            model.config.modality_config(m)["embed_dim"],
        )
        for m in modalities
    }
    if memory_map is None:
        memory_map = sum(4 * math.prod(shape) for shape in shapes.values()) > max_in_memory_bytes()
    mask = torch.zeros(num_items, len(modalities), dtype=torch.bool)
    features: dict[str, torch.Tensor] = {}
    failures: list[tuple[int, str, str]] = []
    for column, modality in enumerate(modalities):
        key = encoder_key(model, modality, processor_settings(processor, modality))
        values = columns[modality]
        if memory_map:
            features[modality], masked = _packed_features(cache, modality, key, values, shapes[modality])
        else:
            features[modality] = torch.zeros(shapes[modality])
            masked = _gather_entries(cache, modality, key, values, features[modality])
        mask[:, column] = torch.tensor([value is not None for value in values], dtype=torch.bool)
        for index, reason in masked:
            mask[index, column] = False
            failures.append((index, modality, reason))
    for index, modality, reason in failures:
        logger.warning("Item %d: %s modality masked (%s).", index, modality, reason)
    num_given = sum(value is not None for values in columns.values() for value in values)
    logger.info(
        "Features of %d items (%s): %d encoded now, %d from the cache in %s; %d masked after a failure.",
        num_items,
        ", ".join(modalities),
        num_encoded,
        num_given - num_encoded,
        cache.cache_dir,
        len(failures),
    )
    return CachedFeatures(modalities, features, mask, failures, num_encoded, num_given - num_encoded)


__all__ = [
    "CachedFeatures",
    "FeatureCache",
    "SynthesizedItem",
    "batch_claim",
    "batch_claim_path",
    "compute_features",
    "default_feature_cache_dir",
    "embed_item",
    "embed_processed",
    "encode_missing",
    "encoding_plan",
    "encoder_key",
    "item_key",
    "max_in_memory_bytes",
    "packed_path",
    "processor_settings",
    "weights_fingerprint",
]
