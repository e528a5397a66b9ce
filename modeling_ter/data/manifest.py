"""Emotion corpora as `datasets`: one label vocabulary, our manifest CSV format, speaker-disjoint splits and folds.
(The parsers of the corpora's release layouts are in `layouts.py`.)

The manifest format (one row per item; paths relative to the CSV's folder):

- `corpus`: corpus name (`emodb`, `crema_d`, `meld`, `ravdess`, `iemocap`, or your own);
- `path`: the item's primary file, or for a text-only row a reference such as `meld/dev_sent_emo.csv#SrNo=50`;
- `label`: one of `EMOTION_LABELS` (or an alias of `LABEL_ALIASES`);
- `speaker_id`: the speaker (splits and folds never share one);
- `modality_files`: `;`-separated files, modality by extension (`.wav`/`.flac`/`.mp3`/`.ogg` audio,
  `.flv`/`.mp4`/`.avi`/`.mkv`/`.mov` video), or the literal `text` for a text-only row;
- `transcript`: the text modality (empty: the text modality is masked);
- `language`: e.g. `de` or `en`.

Audio is kept as a plain path string (decode it with `modeling_ter.processing.audio.load_audio`), never
`datasets.Audio`, whose decoding needs torchcodec.
"""

from __future__ import annotations

import csv
import logging
import os
import random
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

from ..models.configuration_ter import EMOTION_LABELS
from ..processing.audio import AUDIO_EXTENSIONS

logger = logging.getLogger(__name__)


# Per-corpus codes/words -> EMOTION_LABELS (keys lower-case). `None` marks a known label that is left out of the
# vocabulary by convention (the item is skipped and counted, not an error):
# - IEMOCAP: the usual 4-class convention merges `exc` (excited) into happiness; `fru` (frustrated), `oth` (other)
#   and `xxx` (no annotator agreement) are dropped; `sur`, `fea`, `dis` keep their own classes.
# - RAVDESS: `calm` (code 02) is dropped, not merged into neutral (it is a distinct, positive low-arousal state);
#   `parse_ravdess(..., calm_as_neutral=True)` merges it instead.
# - `"*"`: English words accepted for every corpus (TESS's `ps` is "pleasant surprise").
LABEL_ALIASES: dict[str, dict[str, str | None]] = {
    "*": {
        "angry": "anger",
        "bored": "boredom",
        "disgusted": "disgust",
        "fearful": "fear",
        "scared": "fear",
        "happy": "happiness",
        "joy": "happiness",
        "sad": "sadness",
        "surprised": "surprise",
        "ps": "surprise",
    },
    "crema_d": {
        "ang": "anger",
        "dis": "disgust",
        "fea": "fear",
        "hap": "happiness",
        "neu": "neutral",
        "sad": "sadness",
    },
    "emodb": {
        "w": "anger",
        "l": "boredom",
        "e": "disgust",
        "a": "fear",
        "f": "happiness",
        "t": "sadness",
        "n": "neutral",
    },
    "meld": {},  # MELD's words are anger, disgust, fear, joy, neutral, sadness, surprise: covered by "*".
    "ravdess": {
        "01": "neutral",
        "02": None,
        "03": "happiness",
        "04": "sadness",
        "05": "anger",
        "06": "fear",
        "07": "disgust",
        "08": "surprise",
        "calm": None,
    },
    "iemocap": {
        "ang": "anger",
        "hap": "happiness",
        "exc": "happiness",
        "sad": "sadness",
        "neu": "neutral",
        "sur": "surprise",
        "fea": "fear",
        "dis": "disgust",
        "fru": None,
        "oth": None,
        "xxx": None,
    },
}

MANIFEST_COLUMNS = ("corpus", "path", "label", "speaker_id", "modality_files", "transcript", "language")
REQUIRED_COLUMNS = ("corpus", "path", "label", "speaker_id", "modality_files")
VIDEO_EXTENSIONS = (".flv", ".mp4", ".avi", ".mkv", ".mov")
TEXT_ONLY = "text"

FEATURES = Features(
    {
        "id": Value("string"),
        "corpus": Value("string"),
        "label": ClassLabel(names=list(EMOTION_LABELS)),
        "speaker_id": Value("string"),
        "audio": Value("string"),
        "video": Value("string"),
        "text": Value("string"),
        "language": Value("string"),
    }
)


def normalize_label(raw: str, corpus: str, row: str | None = None) -> str | None:
    """Map a corpus's label code or word to `EMOTION_LABELS`.

    Returns the label, or `None` for a label that `LABEL_ALIASES` leaves out of the vocabulary by convention
    (IEMOCAP `fru`/`oth`/`xxx`, RAVDESS `calm`). Raises `ValueError` naming `row` for an unknown label.
    """
    key = raw.strip().lower()
    if key in EMOTION_LABELS:
        return key
    for table in (LABEL_ALIASES.get(corpus, {}), LABEL_ALIASES["*"]):
        if key in table:
            return table[key]
    where = f" at {row}" if row else ""
    raise ValueError(
        f"Unknown emotion label {raw!r} for corpus {corpus!r}{where}. Use one of {', '.join(EMOTION_LABELS)}, "
        f"or an alias listed in LABEL_ALIASES[{corpus!r}] / LABEL_ALIASES['*'], or drop the row."
    )


@dataclass
class ManifestRow:
    """One manifest item as the layout parsers produce it, with absolute paths (`write_manifest` relativises them).

    `modality_files` empty means a text-only row; `path` is the primary file or a `file#key` reference.
    """

    corpus: str
    path: str
    label: str
    speaker_id: str
    modality_files: tuple[str, ...] = ()
    transcript: str | None = None
    language: str | None = None


@dataclass(frozen=True)
class ManifestProblem:
    """A manifest row that was skipped: its 1-based data row number (header excluded), the reason and the fix."""

    row: int
    reason: str
    fix: str

    def __str__(self) -> str:
        return f"row {self.row}: {self.reason} Fix: {self.fix}"


class _RowError(Exception):
    def __init__(self, reason: str, fix: str):
        super().__init__(reason)
        self.reason, self.fix = reason, fix


def _parse_row(raw: dict[str, str | None], folder: Path, row_no: int) -> dict[str, str | None]:
    """Turn one CSV row into a record (id, corpus, label, speaker_id, audio, video, text, language)."""
    values = {key: (raw.get(key) or "").strip() for key in MANIFEST_COLUMNS}
    empty = [key for key in REQUIRED_COLUMNS if not values[key]]
    if empty:
        raise _RowError(f"empty value in column(s) {', '.join(empty)}.", "fill them in or delete the row.")
    try:
        label = normalize_label(values["label"], values["corpus"], row=f"row {row_no} ({values['path']})")
    except ValueError as err:
        raise _RowError(str(err), f"use one of {', '.join(EMOTION_LABELS)}.") from None
    if label is None:
        raise _RowError(
            f"label {values['label']!r} of corpus {values['corpus']!r} is left out of the vocabulary by convention.",
            "relabel it to one of EMOTION_LABELS, or leave the row out.",
        )
    modalities: dict[str, str | None] = {"audio": None, "video": None}
    for token in (t.strip() for t in values["modality_files"].split(";")):
        if not token or token == TEXT_ONLY:
            continue
        suffix = Path(token).suffix.lower()
        modality = "audio" if suffix in AUDIO_EXTENSIONS else "video" if suffix in VIDEO_EXTENSIONS else None
        if modality is None:
            raise _RowError(
                f"cannot tell the modality of {token!r} (extension {suffix!r}).",
                f"use an audio file ({', '.join(AUDIO_EXTENSIONS)}), a video file ({', '.join(VIDEO_EXTENSIONS)}) "
                f"or the literal '{TEXT_ONLY}'.",
            )
        if modalities[modality] is not None:
            raise _RowError(f"more than one {modality} file.", f"keep one {modality} file per row.")
        file = Path(os.path.normpath(folder / token))
        if not file.is_file():
            raise _RowError(f"missing file '{file}'.", "fix the path (relative to the manifest's folder) or drop it.")
        if file.stat().st_size == 0:
            raise _RowError(f"zero-length file '{file}'.", "re-export the file, or drop it from modality_files.")
        modalities[modality] = str(file)
    text = values["transcript"] or None  # whitespace-only -> masked text modality
    if modalities["audio"] is None and modalities["video"] is None and text is None:
        raise _RowError("no usable modality (no audio/video file and an empty transcript).", "add one or drop it.")
    return {
        "id": values["path"],
        "corpus": values["corpus"],
        "label": label,
        "speaker_id": values["speaker_id"],
        **modalities,
        "text": text,
        "language": values["language"] or None,
    }


def read_manifest(
    csv_path: str | os.PathLike, strict: bool = False
) -> tuple[list[dict[str, str | None]], list[ManifestProblem]]:
    """Read a manifest CSV into records, skipping (and reporting) bad rows.

    Returns:
        `(rows, problems)`: `rows` are dicts with `id` (the `path` column), `corpus`, `label` (in
        `EMOTION_LABELS`), `speaker_id`, `audio` / `video` (absolute paths or `None`), `text` (`None` when the
        transcript is empty: the modality is masked) and `language`; `problems` lists the skipped rows.

    Raises:
        FileNotFoundError: the manifest does not exist.
        ValueError: required columns are missing, no row is usable, or (with `strict=True`) any row is bad.
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise FileNotFoundError(f"Manifest not found: '{csv_path}'.")
    folder = csv_path.resolve().parent
    rows: list[dict[str, str | None]] = []
    problems: list[ManifestProblem] = []
    seen: set[str] = set()
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(
                f"Manifest '{csv_path}' lacks the required column(s) {', '.join(missing)} (found: "
                f"{', '.join(reader.fieldnames or []) or 'none'}). Its header must be {','.join(MANIFEST_COLUMNS)}."
            )
        for row_no, raw in enumerate(reader, start=1):
            try:
                record = _parse_row(raw, folder, row_no)
                if record["id"] in seen:
                    raise _RowError(f"duplicate path {record['id']!r}.", "give every item its own path.")
            except _RowError as err:
                problem = ManifestProblem(row_no, err.reason, err.fix)
                if strict:
                    raise ValueError(f"Manifest '{csv_path}', {problem}") from None
                logger.warning("Manifest '%s': skipping %s", csv_path, problem)
                problems.append(problem)
                continue
            seen.add(record["id"])
            rows.append(record)
    if not rows:
        detail = "; ".join(str(p) for p in problems[:3]) or "it has no data rows"
        raise ValueError(f"Manifest '{csv_path}' has no usable rows ({detail}). Fix the rows listed.")
    if problems:
        logger.warning("Manifest '%s': loaded %d rows, skipped %d.", csv_path, len(rows), len(problems))
    return rows, problems


def _speaker_key(corpus: str | None, speaker_id: str) -> tuple[str, str]:
    # Speakers are people of one corpus: "03" in two corpora are two people.
    return (corpus or "", speaker_id)


def _assign_splits(
    rows: Sequence[dict[str, str | None]],
    fixed: dict[str, set[str]],
    fractions: dict[str, float],
    seed: int,
) -> dict[str, list[int]]:
    """Row indices per split; whole speakers go to one split. `fixed` gives explicit speaker ids per split, the
    other held-out splits take about `fractions[split]` of each corpus's items, at least one speaker each while
    the corpus keeps one for train."""
    groups: dict[str, dict[tuple[str, str], list[int]]] = defaultdict(lambda: defaultdict(list))
    for i, row in enumerate(rows):
        groups[row["corpus"]][_speaker_key(row["corpus"], row["speaker_id"])].append(i)
    split_of = {speaker: split for split, speakers in fixed.items() for speaker in speakers}
    assignment: dict[str, list[int]] = {"train": [], **{split: [] for split in fractions}}
    for corpus in sorted(groups):
        speakers = groups[corpus]
        pool = sorted(s for s in speakers if s[1] not in split_of)
        random.Random(f"{seed}:{corpus}").shuffle(pool)
        n_items = sum(len(idx) for idx in speakers.values())
        chosen: dict[tuple[str, str], str] = {s: split_of[s[1]] for s in speakers if s[1] in split_of}
        wanted = [split for split, frac in fractions.items() if frac > 0 and split not in fixed]
        if wanted and len(pool) < 2:
            logger.info("Corpus %r has %d free speaker(s): all its items go to train.", corpus, len(pool))
        for split in wanted:
            # First fit in seeded order: take a speaker while it brings the split closer to its target size.
            target, taken = fractions[split] * n_items, 0
            for speaker in list(pool):
                if len(pool) > 1 and taken + len(speakers[speaker]) / 2 <= target:
                    pool.remove(speaker)
                    chosen[speaker], taken = split, taken + len(speakers[speaker])
            if taken == 0 and len(pool) > 1:  # every speaker is too big: still represent the corpus
                speaker = min(pool, key=lambda s: len(speakers[s]))
                pool.remove(speaker)
                chosen[speaker] = split
        for speaker, idx in speakers.items():
            assignment[chosen.get(speaker, "train")].extend(idx)
    return {split: sorted(idx) for split, idx in assignment.items()}


def _to_dataset(rows: Sequence[dict[str, str | None]]) -> Dataset:
    return Dataset.from_dict({key: [row[key] for row in rows] for key in FEATURES}, features=FEATURES)


def load_manifest_dataset(
    csv_path: str | os.PathLike,
    validation_speakers: Iterable[str] | None = None,
    test_speakers: Iterable[str] | None = None,
    validation_fraction: float = 0.2,
    test_fraction: float = 0.0,
    seed: int = 0,
) -> DatasetDict:
    """Load a manifest into a `DatasetDict` with speaker-disjoint `train` / `validation` / `test` splits.

    Explicit `validation_speakers` / `test_speakers` (speaker ids) fix those splits; otherwise each corpus gives
    about `*_fraction` of its items, as whole speakers chosen with `seed`, so every corpus with at least two
    speakers is represented; a corpus with a single speaker goes to train (logged). `validation` / `test` exist
    when requested (a fraction > 0 or a speaker list). Bad rows are skipped and logged (see `read_manifest`).

    Features: `id`, `corpus`, `label` (`ClassLabel(names=EMOTION_LABELS)`), `speaker_id`, `audio` (path or
    `None`), `video` (path or `None`), `text` (`None`: masked), `language`.
    """
    for name, frac in (("validation_fraction", validation_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= frac < 1.0:
            raise ValueError(f"`{name}` must be in [0, 1), got {frac}.")
    if validation_fraction + test_fraction >= 1.0:
        raise ValueError(
            f"validation_fraction ({validation_fraction}) + test_fraction ({test_fraction}) must be below 1: "
            "train needs speakers too."
        )
    rows, _ = read_manifest(csv_path)
    known = {row["speaker_id"] for row in rows}
    fixed = {}
    for split, speakers in (("validation", validation_speakers), ("test", test_speakers)):
        if speakers is not None:
            fixed[split] = {str(s) for s in speakers}
            unknown = sorted(fixed[split] - known)
            if unknown:
                raise ValueError(f"{split}_speakers {unknown} do not occur in '{csv_path}'; check the speaker ids.")
    if "validation" in fixed and "test" in fixed and fixed["validation"] & fixed["test"]:
        raise ValueError(f"Speakers {sorted(fixed['validation'] & fixed['test'])} are in both validation and test.")
    fractions = {
        split: frac
        for split, frac in (("validation", validation_fraction), ("test", test_fraction))
        if frac > 0 or split in fixed
    }
    splits = _assign_splits(rows, fixed, fractions, seed)
    for split, idx in splits.items():
        if not idx:
            logger.warning("Split %r of '%s' is empty (too few speakers).", split, csv_path)
    return DatasetDict({split: _to_dataset([rows[i] for i in idx]) for split, idx in splits.items()})


def summarize_splits(splits: DatasetDict, manifest: str | os.PathLike | None = None) -> dict:
    """What a model was trained (and validated) on, per corpus: the `training_data.json` of a checkpoint.

    Returns:
        `{"manifest": file name or None, "corpora": {corpus: {"splits": {split: {"items", "speakers"}},
        "modalities": {"audio"|"text"|"video": items}, "labels": [...], "languages": [...]}}}`, corpora in the order
        they first appear; the manifest's file name only (never a local folder).
    """
    corpora: dict[str, dict] = {}
    for split_name, split in splits.items():
        names = split.features["label"].names
        for row in split:
            corpus = corpora.setdefault(
                row["corpus"],
                {"splits": {}, "modalities": {}, "labels": set(), "languages": set(), "_speakers": defaultdict(set)},
            )
            counts = corpus["splits"].setdefault(split_name, {"items": 0, "speakers": 0})
            counts["items"] += 1
            corpus["_speakers"][split_name].add(row["speaker_id"])
            for modality in ("audio", "text", "video"):
                if row[modality]:
                    corpus["modalities"][modality] = corpus["modalities"].get(modality, 0) + 1
            corpus["labels"].add(names[row["label"]])
            if row["language"]:
                corpus["languages"].add(row["language"])
    for corpus in corpora.values():
        for split_name, speakers in corpus.pop("_speakers").items():
            corpus["splits"][split_name]["speakers"] = len(speakers)
        corpus["labels"] = sorted(corpus["labels"])
        corpus["languages"] = sorted(corpus["languages"])
    return {"manifest": Path(manifest).name if manifest is not None else None, "corpora": corpora}


def speaker_folds(dataset: Dataset, n_folds: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Speaker-disjoint cross-validation folds of a dataset with `speaker_id` (and `corpus`) columns; see
    `speaker_folds_of`."""
    corpora = dataset["corpus"] if "corpus" in dataset.column_names else [None] * len(dataset)
    return speaker_folds_of(corpora, dataset["speaker_id"], n_folds, seed)


def speaker_folds_of(
    corpora: Sequence[str | None], speakers: Sequence[str], n_folds: int, seed: int = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Speaker-disjoint cross-validation folds of items given by their corpus and speaker.

    Speakers (per corpus) are shuffled with `seed`, sorted by item count (largest first) and each given to the fold
    with the fewest items so far.

    Returns:
        `n_folds` pairs `(train_idx, test_idx)` of sorted int64 index arrays; every item is in exactly one test fold.
    """
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, (corpus, speaker) in enumerate(zip(corpora, speakers)):
        groups[_speaker_key(corpus, speaker)].append(i)
    if not 2 <= n_folds <= len(groups):
        raise ValueError(f"n_folds must be in [2, number of speakers = {len(groups)}], got {n_folds}.")
    order = sorted(groups)
    random.Random(seed).shuffle(order)
    order.sort(key=lambda s: -len(groups[s]))  # stable: equal sizes keep the seeded order
    folds: list[list[int]] = [[] for _ in range(n_folds)]
    for speaker in order:
        min(folds, key=len).extend(groups[speaker])
    everything = np.arange(len(speakers))
    return [(np.setdiff1d(everything, fold), np.array(sorted(fold), dtype=np.int64)) for fold in folds]


def _relative(path: str, folder: Path) -> str:
    file, sep, key = path.partition("#")
    return Path(os.path.relpath(file, folder)).as_posix() + sep + key


def write_manifest(rows: Iterable[ManifestRow], csv_path: str | os.PathLike) -> Path:
    """Write `rows` as a manifest CSV, with paths relative to the CSV's folder. Returns the CSV path."""
    csv_path = Path(csv_path)
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    folder = csv_path.resolve().parent
    with open(csv_path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(MANIFEST_COLUMNS)
        for row in rows:
            files = ";".join(_relative(p, folder) for p in row.modality_files) or TEXT_ONLY
            path, text, language = _relative(row.path, folder), row.transcript or "", row.language or ""
            writer.writerow([row.corpus, path, row.label, row.speaker_id, files, text, language])
    return csv_path
