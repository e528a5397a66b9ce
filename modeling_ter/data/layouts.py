"""Parsers for the standard on-disk release layouts of CREMA-D, EmoDB, MELD, RAVDESS and IEMOCAP: each returns
`ManifestRow`s with absolute paths, ready for `write_manifest`.

Command line: `python -m modeling_ter.data.layouts {crema_d,emodb,meld,ravdess,iemocap} ROOT OUT.csv`.
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path

from ..processing.audio import AUDIO_EXTENSIONS
from .manifest import VIDEO_EXTENSIONS, ManifestRow, normalize_label, write_manifest

logger = logging.getLogger(__name__)

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
    """`python -m modeling_ter.data.layouts CORPUS ROOT OUT.csv`: parse a corpus layout and write its manifest."""
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
