"""Emotion corpora as `datasets`: one label vocabulary, our manifest CSV format, speaker-disjoint splits and folds,
and parsers for the standard on-disk layouts of CREMA-D, EmoDB, MELD, RAVDESS and IEMOCAP.

The manifest format (one row per item; paths relative to the CSV's folder):

- `corpus`: corpus name (`emodb`, `crema_d`, `meld`, `ravdess`, `iemocap`, or your own);
- `path`: the item's primary file, or for a text-only row a reference such as `meld/dev_sent_emo.csv#SrNo=50`;
- `label`: one of `EMOTION_LABELS` (or an alias of `LABEL_ALIASES`);
- `speaker_id`: the speaker (splits and folds never share one);
- `modality_files`: `;`-separated files, modality by extension (`.wav`/`.flac`/`.mp3`/`.ogg` audio,
  `.flv`/`.mp4`/`.avi`/`.mkv`/`.mov` video), or the literal `text` for a text-only row;
- `transcript`: the text modality (empty: the text modality is masked);
- `language`: e.g. `de` or `en`.

Audio is kept as a plain path string (decode it with `modeling_ter.audio.load_audio`), never `datasets.Audio`,
whose decoding needs torchcodec.

Command line: `python -m modeling_ter.corpora {crema_d,emodb,meld,ravdess,iemocap} ROOT OUT.csv`.
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
import random
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

from .audio import AUDIO_EXTENSIONS
from .configuration_ter import EMOTION_LABELS


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
        "angry": "anger", "bored": "boredom", "disgusted": "disgust", "fearful": "fear", "scared": "fear",
        "happy": "happiness", "joy": "happiness", "sad": "sadness", "surprised": "surprise", "ps": "surprise",
    },
    "crema_d": {
        "ang": "anger", "dis": "disgust", "fea": "fear", "hap": "happiness", "neu": "neutral", "sad": "sadness"
    },
    "emodb": {
        "w": "anger", "l": "boredom", "e": "disgust", "a": "fear", "f": "happiness", "t": "sadness", "n": "neutral"
    },
    "meld": {},  # MELD's words are anger, disgust, fear, joy, neutral, sadness, surprise: covered by "*".
    "ravdess": {
        "01": "neutral", "02": None, "03": "happiness", "04": "sadness", "05": "anger", "06": "fear",
        "07": "disgust", "08": "surprise", "calm": None,
    },
    "iemocap": {
        "ang": "anger", "hap": "happiness", "exc": "happiness", "sad": "sadness", "neu": "neutral",
        "sur": "surprise", "fea": "fear", "dis": "disgust", "fru": None, "oth": None, "xxx": None,
    },
}  # fmt: skip

CREMA_D_SENTENCES = {
    "IEO": "It's eleven o'clock",
    "TIE": "That is exactly what happened",
    "IOM": "I'm on my way to the meeting",
    "IWW": "I wonder what this is about",
    "TAI": "The airplane is almost full",
    "MTI": "Maybe tomorrow it will be cold",
    "IWL": "I would like a new alarm clock",
    "ITH": "I think I have a doctor's appointment",
    "DFA": "Don't forget a jacket",
    "ITS": "I think I've seen this before",
    "TSI": "The surface is slick",
    "WSI": "We'll stop in a couple of minutes",
}
EMODB_SENTENCES = {
    "a01": "Der Lappen liegt auf dem Eisschrank.",
    "a02": "Das will sie am Mittwoch abgeben.",
    "a04": "Heute abend könnte ich es ihm sagen.",
    "a05": "Das schwarze Stück Papier befindet sich da oben neben dem Holzstück.",
    "a07": "In sieben Stunden wird es soweit sein.",
    "b01": "Was sind denn das für Tüten, die da unter dem Tisch stehen?",
    "b02": "Sie haben es gerade hochgetragen und jetzt gehen sie wieder runter.",
    "b03": "An den Wochenenden bin ich jetzt immer nach Hause gefahren und habe Agnes besucht.",
    "b09": "Ich will das eben wegbringen und dann mit Karl was trinken gehen.",
    "b10": "Die wird auf dem Platz sein, wo wir sie immer hinlegen.",
}
RAVDESS_SENTENCES = {"01": "Kids are talking by the door", "02": "Dogs are sitting by the door"}

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


def speaker_folds(dataset: Dataset, n_folds: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Speaker-disjoint cross-validation folds.

    Speakers (per corpus when a `corpus` column exists) are shuffled with `seed`, sorted by item count (largest
    first) and each given to the fold with the fewest items so far.

    Returns:
        `n_folds` pairs `(train_idx, test_idx)` of sorted int64 index arrays; every row is in exactly one test fold.
    """
    corpora = dataset["corpus"] if "corpus" in dataset.column_names else [None] * len(dataset)
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, (corpus, speaker) in enumerate(zip(corpora, dataset["speaker_id"])):
        groups[_speaker_key(corpus, speaker)].append(i)
    if not 2 <= n_folds <= len(groups):
        raise ValueError(f"n_folds must be in [2, number of speakers = {len(groups)}], got {n_folds}.")
    order = sorted(groups)
    random.Random(seed).shuffle(order)
    order.sort(key=lambda s: -len(groups[s]))  # stable: equal sizes keep the seeded order
    folds: list[list[int]] = [[] for _ in range(n_folds)]
    for speaker in order:
        min(folds, key=len).extend(groups[speaker])
    everything = np.arange(len(dataset))
    return [
        (np.setdiff1d(everything, fold), np.array(sorted(fold), dtype=np.int64)) for fold in folds
    ]


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


# ---------------------------------------------------------------------------------------------------------------
# Layout parsers: standard release layouts -> ManifestRow lists (absolute paths).
# ---------------------------------------------------------------------------------------------------------------


def _label_or_skip(code: str, corpus: str, where: str, skipped: Counter) -> str | None:
    """The vocabulary label of `code`, or `None` (counted in `skipped`) for a label excluded by convention."""
    label = normalize_label(code, corpus, row=where)
    if label is None:
        skipped[code] += 1
    return label


def _finish(rows: list[ManifestRow], skipped: Counter, corpus: str, root: Path, layout: str) -> list[ManifestRow]:
    if skipped:
        logger.info("%s: skipped items whose label is outside the vocabulary: %s", corpus, dict(skipped))
    if not rows:
        raise ValueError(f"No {corpus} items found under '{root}'. Expected the standard layout: {layout}.")
    logger.info("%s: %d items from '%s'.", corpus, len(rows), root)
    return rows


def _root(root: str | os.PathLike) -> Path:
    path = Path(root).resolve()
    if not path.is_dir():
        raise FileNotFoundError(f"Corpus folder not found: '{path}'.")
    return path


def _files(folder: Path, extensions: Sequence[str]) -> list[Path]:
    return sorted(p for p in folder.glob("*") if p.suffix.lower() in extensions) if folder.is_dir() else []


def parse_crema_d(root: str | os.PathLike) -> list[ManifestRow]:
    """CREMA-D: `VideoFlash/*.flv` and/or `AudioWAV/*.wav` (else `AudioWAV_16k/`, `AudioMP3/`; `.flac` accepted),
    files named `ActorID_Sentence_Emotion_Intensity` (e.g. `1001_DFA_ANG_XX`). One row per clip with the video and
    one audio file, the sentence as transcript, speaker `crema_<ActorID>`."""
    root = _root(root)
    layout = "VideoFlash/1001_DFA_ANG_XX.flv and/or AudioWAV/1001_DFA_ANG_XX.wav"
    pattern = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})$")
    videos = {p.stem: p for p in _files(root / "VideoFlash", VIDEO_EXTENSIONS)}
    audios: dict[str, Path] = {}
    for folder in ("AudioWAV", "AudioWAV_16k", "AudioMP3"):  # first one holding a clip wins
        for p in _files(root / folder, AUDIO_EXTENSIONS):
            audios.setdefault(p.stem, p)
    rows, skipped = [], Counter()
    for stem in sorted(videos.keys() | audios.keys()):
        match = pattern.match(stem)
        if match is None or match.group(2) not in CREMA_D_SENTENCES:
            logger.warning("CREMA-D: '%s' does not follow ActorID_Sentence_Emotion_Intensity; skipped.", stem)
            continue
        actor, sentence, emotion, _ = match.groups()
        label = _label_or_skip(emotion, "crema_d", stem, skipped)
        if label is None:
            continue
        files = tuple(str(p) for p in (videos.get(stem), audios.get(stem)) if p is not None)
        rows.append(ManifestRow("crema_d", files[0], label, f"crema_{actor}", files, CREMA_D_SENTENCES[sentence], "en"))
    return _finish(rows, skipped, "crema_d", root, layout)


def parse_emodb(root: str | os.PathLike) -> list[ManifestRow]:
    """EmoDB (Berlin): `wav/*.wav` (`.flac` accepted) named e.g. `03a01Fa`: speaker = digits 1-2, text code =
    characters 3-5 (one of 10 fixed German sentences, the transcript), emotion = character 6 (W/L/E/A/F/T/N)."""
    root = _root(root)
    pattern = re.compile(r"^(\d{2})([ab]\d{2})([A-Z])[a-z]$")
    rows, skipped = [], Counter()
    for p in _files(root / "wav", AUDIO_EXTENSIONS):
        match = pattern.match(p.stem)
        if match is None or match.group(2) not in EMODB_SENTENCES:
            logger.warning("EmoDB: '%s' does not follow the SSTTTEV naming (e.g. 03a01Fa); skipped.", p.name)
            continue
        speaker, text_code, emotion = match.groups()
        label = _label_or_skip(emotion, "emodb", p.name, skipped)
        if label is not None:
            transcript = EMODB_SENTENCES[text_code]
            rows.append(ManifestRow("emodb", str(p), label, f"emodb_{speaker}", (str(p),), transcript, "de"))
    return _finish(rows, skipped, "emodb", root, "wav/03a01Fa.wav")


def parse_meld(root: str | os.PathLike, splits: Sequence[str] = ("train", "dev", "test")) -> list[ManifestRow]:
    """MELD: `{train,dev,test}_sent_emo.csv` (utterance = transcript, speaker `meld_<Speaker>`, `joy` ->
    happiness) plus, when present, clip folders whose name holds `splits` and the split name (`train_splits/`,
    `dev_splits_complete/`, `output_repeated_splits_test/`) with `dia{Dialogue_ID}_utt{Utterance_ID}.mp4` as the
    video. Text-only rows get the path `<split>_sent_emo.csv#SrNo=<n>`. MELD's own splits share speakers: use our
    speaker-disjoint splits."""
    root = _root(root)
    clip_dirs = [d for d in sorted(root.glob("*")) + sorted(root.glob("*/*")) if d.is_dir() and "splits" in d.name]
    rows, skipped = [], Counter()
    for split in splits:
        table = root / f"{split}_sent_emo.csv"
        if not table.is_file():
            continue
        clips = next((d for d in clip_dirs if split in d.name), None)
        with open(table, newline="", encoding="utf-8-sig") as f:
            for record in csv.DictReader(f):
                ref = f"{table}#SrNo={record['Sr No.']}"
                label = _label_or_skip(record["Emotion"], "meld", ref, skipped)
                if label is None:
                    continue
                clip = clips / f"dia{record['Dialogue_ID']}_utt{record['Utterance_ID']}.mp4" if clips else None
                files = (str(clip),) if clip is not None and clip.is_file() else ()
                text = record["Utterance"].strip() or None
                if not files and text is None:
                    logger.warning("MELD: %s has neither a clip nor an utterance; skipped.", ref)
                    continue
                speaker = f"meld_{record['Speaker'].strip()}"
                rows.append(ManifestRow("meld", files[0] if files else ref, label, speaker, files, text, "en"))
    return _finish(rows, skipped, "meld", root, "dev_sent_emo.csv (+ dev_splits_complete/dia0_utt0.mp4)")


def parse_ravdess(root: str | os.PathLike, calm_as_neutral: bool = False) -> list[ManifestRow]:
    """RAVDESS: `Actor_XX/MM-VV-EE-II-SS-RR-AA.{wav,mp4}` anywhere under `root` (modality MM: 01 audio-video,
    02 video-only, 03 audio-only; vocal channel VV: 01 speech, 02 song; emotion EE; intensity II; statement SS;
    repetition RR; actor AA). The renditions of one recording form one row: the `03` wav as audio and the `02`
    (else `01`) mp4 as video. Calm (02) is dropped unless `calm_as_neutral`."""
    root = _root(root)
    pattern = re.compile(r"^(0[1-3])-(0[12])-(0[1-8])-(0[12])-(0[12])-(0[12])-(\d{2})$")
    renditions: dict[tuple[str, ...], dict[str, Path]] = defaultdict(dict)
    for p in sorted(root.rglob("*")):
        match = pattern.match(p.stem)
        if match and p.suffix.lower() in (".wav", ".mp4"):
            renditions[match.groups()[1:]][match.group(1)] = p
    rows, skipped = [], Counter()
    for (channel, emotion, _, statement, _, actor), files in sorted(renditions.items()):
        video, audio = files.get("02", files.get("01")), files.get("03")
        where = str(audio or video)
        label = "neutral" if calm_as_neutral and emotion == "02" else _label_or_skip(emotion, "ravdess", where, skipped)
        if label is None:
            continue
        paths = tuple(str(p) for p in (video, audio) if p is not None)
        transcript = RAVDESS_SENTENCES[statement]
        rows.append(ManifestRow("ravdess", where, label, f"ravdess_{actor}", paths, transcript, "en"))
    return _finish(rows, skipped, "ravdess", root, "Actor_01/03-01-05-01-01-01-01.wav")


def parse_iemocap(root: str | os.PathLike) -> list[ManifestRow]:
    """IEMOCAP: `Session{1-5}/dialog/EmoEvaluation/<dialog>.txt` lines `[start - end]\\tTURN\\temo\\t[v, a, d]`,
    audio `Session*/sentences/wav/<dialog>/<TURN>.wav`, transcripts `Session*/dialog/transcriptions/<dialog>.txt`
    (`TURN [start-end]: text`). Speaker = session + the turn's speaker sex (`iemocap_Ses01F`); labels per
    `LABEL_ALIASES['iemocap']` (exc merged into happiness; fru/oth/xxx dropped). A turn without its wav keeps the
    text only. The dialog-level videos are not split per turn, so rows carry no video."""
    root = _root(root)
    line_re = re.compile(r"^\[\s*[\d.]+\s*-\s*[\d.]+\s*\]\t(\S+)\t(\S+)\t\[.*\]\s*$")
    text_re = re.compile(r"^(\S+)\s+\[[^\]]*\]:\s*(.*)$")
    rows, skipped = [], Counter()
    for session in sorted(root.glob("Session[1-5]")):
        for evaluation in sorted((session / "dialog" / "EmoEvaluation").glob("*.txt")):
            dialog = evaluation.stem
            transcripts: dict[str, str] = {}
            transcript_file = session / "dialog" / "transcriptions" / f"{dialog}.txt"
            if transcript_file.is_file():
                for line in transcript_file.read_text(encoding="utf-8", errors="replace").splitlines():
                    match = text_re.match(line.strip())
                    if match:
                        transcripts[match.group(1)] = match.group(2).strip()
            for line in evaluation.read_text(encoding="utf-8", errors="replace").splitlines():
                match = line_re.match(line)
                if match is None:
                    continue
                turn, emotion = match.groups()
                label = _label_or_skip(emotion, "iemocap", f"{evaluation.name}:{turn}", skipped)
                if label is None:
                    continue
                wav = session / "sentences" / "wav" / dialog / f"{turn}.wav"
                files = (str(wav),) if wav.is_file() else ()
                text = transcripts.get(turn) or None
                if not files and text is None:
                    logger.warning("IEMOCAP: %s has neither a wav nor a transcript; skipped.", turn)
                    continue
                speaker = f"iemocap_{turn[:5]}{turn.rsplit('_', 1)[-1][0]}"
                path = files[0] if files else f"{transcript_file}#{turn}"
                rows.append(ManifestRow("iemocap", path, label, speaker, files, text, "en"))
    return _finish(rows, skipped, "iemocap", root, "Session1/dialog/EmoEvaluation/Ses01F_impro01.txt")


PARSERS = {
    "crema_d": parse_crema_d,
    "emodb": parse_emodb,
    "meld": parse_meld,
    "ravdess": parse_ravdess,
    "iemocap": parse_iemocap,
}


def main(argv: Sequence[str] | None = None) -> Path:
    """`python -m modeling_ter.corpora CORPUS ROOT OUT.csv`: parse a corpus layout and write its manifest."""
    parser = argparse.ArgumentParser(description="Write a TER manifest CSV for a corpus in its release layout.")
    parser.add_argument("corpus", choices=sorted(PARSERS))
    parser.add_argument("root", help="the corpus folder (its standard release layout)")
    parser.add_argument("out", help="the manifest CSV to write (paths are stored relative to its folder)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    rows = PARSERS[args.corpus](args.root)
    out = write_manifest(rows, args.out)
    logger.info("Wrote %d rows to '%s'; labels: %s", len(rows), out, dict(Counter(r.label for r in rows)))
    return out


if __name__ == "__main__":
    main()
