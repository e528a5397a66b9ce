"""Corpora: label vocabulary, manifest reading (bad rows reported and skipped), speaker-disjoint splits and folds,
the layout parsers on tiny fixtures in each corpus's real release layout, and the embedded demo corpus."""

import csv
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from modeling_ter.data.layouts import (
    CREMA_D_SENTENCES,
    EMODB_SENTENCES,
    main,
    parse_crema_d,
    parse_emodb,
    parse_iemocap,
    parse_meld,
    parse_ravdess,
)
from modeling_ter.data.manifest import (
    EMOTION_LABELS,
    ManifestRow,
    load_manifest_dataset,
    normalize_label,
    read_manifest,
    speaker_folds,
    write_manifest,
)
from modeling_ter.processing.audio import load_audio

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO.parent / "shared" / "data"
HEADER = ["corpus", "path", "label", "speaker_id", "modality_files", "transcript", "language"]


def write_wav(path: Path, seconds: float = 0.05, sr: int = 16000, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    noise = 0.1 * np.random.default_rng(seed).standard_normal(int(sr * seconds)).astype(np.float32)
    sf.write(path, noise, sr)
    return path


def touch(path: Path, content: bytes = b"not decoded by the parsers") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


# ----------------------------------------------------------------------------------------------- labels


def test_label_vocabulary_and_aliases():
    assert EMOTION_LABELS == ("anger", "boredom", "disgust", "fear", "happiness", "neutral", "sadness", "surprise")
    assert normalize_label("joy", "meld") == "happiness"
    assert normalize_label("Angry", "anything") == "anger"
    assert normalize_label("ps", "tess") == "surprise"
    assert normalize_label("exc", "iemocap") == "happiness"
    assert normalize_label("hap", "iemocap") == "happiness"
    assert normalize_label("fru", "iemocap") is None  # dropped by convention
    assert normalize_label("02", "ravdess") is None  # calm
    assert normalize_label("08", "ravdess") == "surprise"
    assert normalize_label("A", "emodb") == "fear"  # EmoDB's A is Angst
    assert normalize_label("ANG", "crema_d") == "anger"
    with pytest.raises(ValueError, match=r"Unknown emotion label 'contempt' for corpus 'mine' at row 7"):
        normalize_label("contempt", "mine", row="row 7")
    with pytest.raises(ValueError, match="Unknown emotion label 'A'"):
        normalize_label("A", "crema_d")  # a code of another corpus is not accepted


# ----------------------------------------------------------------------------------------------- manifests


@pytest.fixture
def bad_manifest(tmp_path):
    write_wav(tmp_path / "audio" / "good.wav")
    write_wav(tmp_path / "audio" / "silent_text.wav", seed=1)
    touch(tmp_path / "audio" / "empty.wav", b"")
    touch(tmp_path / "video" / "clip.mp4")
    rows = [
        ["mine", "audio/good.wav", "anger", "s1", "audio/good.wav;video/clip.mp4", "Hello there.", "en"],  # 1 ok
        ["mine", "t#1", "joy", "s2", "text", "I am so glad!", "en"],  # 2 ok, alias
        ["mine", "audio/gone.wav", "fear", "s1", "audio/gone.wav", "x", "en"],  # 3 missing file
        ["mine", "audio/good.wav#2", "contempt", "s1", "audio/good.wav", "x", "en"],  # 4 unknown label
        ["mine", "audio/silent_text.wav", "sadness", "s3", "audio/silent_text.wav", "   ", "en"],  # 5 text masked
        ["mine", "t#2", "neutral", "s2", "text", "  ", "en"],  # 6 no modality at all
        ["mine", "audio/empty.wav", "fear", "s3", "audio/empty.wav", "x", "en"],  # 7 zero-length file
        ["mine", "t#3", "fear", "", "text", "x", "en"],  # 8 empty speaker
        ["mine", "doc.pdf", "fear", "s3", "doc.pdf", "x", "en"],  # 9 unknown extension
        ["mine", "t#1", "anger", "s2", "text", "again", "en"],  # 10 duplicate path
    ]
    return write_csv(tmp_path / "manifest.csv", HEADER, rows)


def test_bad_rows_are_reported_and_the_rest_loads(bad_manifest, caplog):
    rows, problems = read_manifest(bad_manifest)
    assert [r["id"] for r in rows] == ["audio/good.wav", "t#1", "audio/silent_text.wav"]
    good, text_only, masked = rows
    folder = bad_manifest.parent.resolve()
    assert good["audio"] == str(folder / "audio" / "good.wav")
    assert good["video"] == str(folder / "video" / "clip.mp4")
    assert good["text"] == "Hello there." and good["label"] == "anger"
    assert text_only == {
        "id": "t#1",
        "corpus": "mine",
        "label": "happiness",
        "speaker_id": "s2",
        "audio": None,
        "video": None,
        "text": "I am so glad!",
        "language": "en",
    }
    assert masked["text"] is None and masked["audio"].endswith("silent_text.wav")
    reasons = {p.row: p.reason for p in problems}
    assert sorted(reasons) == [3, 4, 6, 7, 8, 9, 10]
    assert "missing file" in reasons[3] and "gone.wav" in reasons[3]
    assert "Unknown emotion label 'contempt'" in reasons[4] and "row 4" in reasons[4]
    assert "no usable modality" in reasons[6]
    assert "zero-length file" in reasons[7]
    assert "speaker_id" in reasons[8]
    assert "'.pdf'" in reasons[9]
    assert "duplicate" in reasons[10]
    assert all(p.fix for p in problems)
    assert "row 3: missing file" in str(problems[0])
    assert sum("skipping row" in r.message for r in caplog.records) == 7


def test_strict_raises_on_first_bad_row(bad_manifest):
    with pytest.raises(ValueError, match=r"manifest\.csv', row 3: missing file"):
        read_manifest(bad_manifest, strict=True)


def test_manifest_without_label_column(tmp_path):
    header = ["corpus", "path", "speaker_id", "modality_files"]
    path = write_csv(tmp_path / "nolabel.csv", header, [["a", "b", "c", "text"]])
    with pytest.raises(ValueError, match=r"nolabel\.csv' lacks the required column\(s\) label"):
        read_manifest(path)
    with pytest.raises(ValueError, match="lacks the required column"):
        load_manifest_dataset(path)


def test_manifest_with_no_usable_rows_or_absent(tmp_path):
    path = write_csv(tmp_path / "bad.csv", HEADER, [["c", "x.wav", "anger", "s", "x.wav", "", "en"]])
    with pytest.raises(ValueError, match=r"bad\.csv' has no usable rows \(row 1: missing file"):
        read_manifest(path)
    empty = write_csv(tmp_path / "empty.csv", HEADER, [])
    with pytest.raises(ValueError, match="no data rows"):
        read_manifest(empty)
    with pytest.raises(FileNotFoundError, match="absent.csv"):
        read_manifest(tmp_path / "absent.csv")


# ----------------------------------------------------------------------------------------------- splits and folds


@pytest.fixture
def two_corpora(tmp_path):
    """Corpus `big`: 6 speakers x 4 items (text only); corpus `solo`: 1 speaker x 3 items (audio)."""
    rows = []
    for s in range(6):
        for i in range(4):
            rows.append(["big", f"big/{s}/{i}", EMOTION_LABELS[(s + i) % 8], f"b{s}", "text", f"utt {s} {i}", "en"])
    for i in range(3):
        write_wav(tmp_path / "solo" / f"{i}.wav", seed=i)
        rows.append(["solo", f"solo/{i}.wav", "neutral", "x", f"solo/{i}.wav", "", "de"])
    return write_csv(tmp_path / "manifest.csv", HEADER, rows)


def speakers_of(split) -> set:
    return set(zip(split["corpus"], split["speaker_id"]))


def test_splits_are_speaker_disjoint_and_every_corpus_placed(two_corpora, caplog):
    caplog.set_level("INFO")
    dd = load_manifest_dataset(two_corpora, validation_fraction=0.2, test_fraction=0.2, seed=3)
    assert set(dd) == {"train", "validation", "test"}
    assert sum(len(d) for d in dd.values()) == 27
    train, val, test = (speakers_of(dd[s]) for s in ("train", "validation", "test"))
    assert not (train & val) and not (train & test) and not (val & test)
    # big: about 20 % of 24 items = one 4-item speaker each; solo (one speaker) stays in train
    assert len(val) == 1 and len(test) == 1 and ("solo", "x") in train
    assert Counter(dd["train"]["corpus"]) == {"big": 16, "solo": 3}
    assert any("'solo' has 1 free speaker" in r.message for r in caplog.records)
    features = dd["train"].features
    assert features["label"].names == list(EMOTION_LABELS)
    row = dd["train"].filter(lambda r: r["corpus"] == "solo")[0]
    assert row["audio"].endswith(".wav") and Path(row["audio"]).is_file()
    assert row["text"] is None and row["video"] is None and row["label"] == EMOTION_LABELS.index("neutral")
    again = load_manifest_dataset(two_corpora, validation_fraction=0.2, test_fraction=0.2, seed=3)
    assert again["test"]["id"] == dd["test"]["id"]


def test_explicit_speakers_and_bad_arguments(two_corpora):
    dd = load_manifest_dataset(two_corpora, validation_speakers=["b0", "b1"], test_speakers=["b2"])
    assert set(dd["validation"]["speaker_id"]) == {"b0", "b1"}
    assert set(dd["test"]["speaker_id"]) == {"b2"}
    assert set(dd["train"]["speaker_id"]) == {"b3", "b4", "b5", "x"}
    only_val = load_manifest_dataset(two_corpora, validation_fraction=0.0)
    assert set(only_val) == {"train"} and len(only_val["train"]) == 27
    with pytest.raises(ValueError, match=r"validation_speakers \['nobody'\] do not occur"):
        load_manifest_dataset(two_corpora, validation_speakers=["nobody"])
    with pytest.raises(ValueError, match=r"\['b0'\] are in both"):
        load_manifest_dataset(two_corpora, validation_speakers=["b0"], test_speakers=["b0"])
    with pytest.raises(ValueError, match="must be below 1"):
        load_manifest_dataset(two_corpora, validation_fraction=0.6, test_fraction=0.5)
    with pytest.raises(ValueError, match=r"test_fraction` must be in \[0, 1\)"):
        load_manifest_dataset(two_corpora, test_fraction=-0.1)


def test_speaker_folds(two_corpora):
    data = load_manifest_dataset(two_corpora, validation_fraction=0.0)["train"]
    folds = speaker_folds(data, n_folds=3, seed=0)
    assert len(folds) == 3
    all_test = np.concatenate([test for _, test in folds])
    assert sorted(all_test.tolist()) == list(range(len(data)))  # every row tested exactly once
    pairs = list(zip(data["corpus"], data["speaker_id"]))
    for train_idx, test_idx in folds:
        assert len(train_idx) + len(test_idx) == len(data)
        assert not {pairs[i] for i in train_idx} & {pairs[i] for i in test_idx}
    # 7 speakers (6 x 4 items, 1 x 3 items): greedy balance gives 11/8/8 items
    assert sorted(len(test) for _, test in folds) == [8, 8, 11]
    with pytest.raises(ValueError, match=r"n_folds must be in \[2, number of speakers = 7\], got 8"):
        speaker_folds(data, n_folds=8)


# ----------------------------------------------------------------------------------------------- layout parsers


def test_parse_crema_d(tmp_path):
    root = tmp_path / "CREMA-D"
    write_wav(root / "AudioWAV" / "1001_DFA_ANG_XX.wav")
    write_wav(root / "AudioWAV" / "1002_IEO_HAP_HI.wav")
    write_wav(root / "AudioWAV" / "README_notes.wav")  # not a clip name: skipped
    touch(root / "VideoFlash" / "1001_DFA_ANG_XX.flv")
    touch(root / "VideoFlash" / "1091_WSI_SAD_LO.flv")  # video without audio
    rows = parse_crema_d(root)
    assert [(r.label, r.speaker_id, r.transcript) for r in rows] == [
        ("anger", "crema_1001", "Don't forget a jacket"),
        ("happiness", "crema_1002", "It's eleven o'clock"),
        ("sadness", "crema_1091", "We'll stop in a couple of minutes"),
    ]
    assert [Path(f).name for f in rows[0].modality_files] == ["1001_DFA_ANG_XX.flv", "1001_DFA_ANG_XX.wav"]
    assert [Path(f).name for f in rows[1].modality_files] == ["1002_IEO_HAP_HI.wav"]
    assert [Path(f).name for f in rows[2].modality_files] == ["1091_WSI_SAD_LO.flv"]
    assert len(CREMA_D_SENTENCES) == 12 and rows[0].language == "en"


def test_parse_emodb_and_cli_roundtrip(tmp_path):
    root = tmp_path / "emodb"
    for name in ("03a01Fa", "08b10Wb", "10a05Lc", "16b03Ta"):
        write_wav(root / "wav" / f"{name}.wav")
    write_wav(root / "wav" / "03a01Xa.wav")  # unknown emotion letter
    with pytest.raises(ValueError, match=r"Unknown emotion label 'X'.*03a01Xa\.wav"):
        parse_emodb(root)
    (root / "wav" / "03a01Xa.wav").unlink()
    rows = parse_emodb(root)
    assert [(r.label, r.speaker_id, r.transcript) for r in rows] == [
        ("happiness", "emodb_03", EMODB_SENTENCES["a01"]),
        ("anger", "emodb_08", "Die wird auf dem Platz sein, wo wir sie immer hinlegen."),
        ("boredom", "emodb_10", EMODB_SENTENCES["a05"]),
        ("sadness", "emodb_16", EMODB_SENTENCES["b03"]),
    ]
    assert all(r.language == "de" and len(r.modality_files) == 1 for r in rows)
    out = tmp_path / "manifests" / "emodb.csv"
    assert main(["emodb", str(root), str(out)]) == out
    with open(out, newline="", encoding="utf-8") as f:
        written = list(csv.DictReader(f))
    assert written[0]["path"] == "../emodb/wav/03a01Fa.wav"  # relative to the CSV's folder
    assert written[0]["modality_files"] == "../emodb/wav/03a01Fa.wav"
    loaded, problems = read_manifest(out)
    assert not problems
    assert [(r["label"], r["speaker_id"], r["text"], r["audio"]) for r in loaded] == [
        (r.label, r.speaker_id, r.transcript, r.path) for r in rows
    ]


def test_parse_meld(tmp_path):
    root = tmp_path / "MELD.Raw"
    header = [
        "Sr No.",
        "Utterance",
        "Speaker",
        "Emotion",
        "Sentiment",
        "Dialogue_ID",
        "Utterance_ID",
        "Season",
        "Episode",
        "StartTime",
        "EndTime",
    ]
    write_csv(
        root / "dev_sent_emo.csv",
        header,
        [
            ["1", "Oh my God!", "Phoebe", "joy", "positive", "0", "0", "4", "7", "0", "1"],
            ["2", "What?", "Monica", "surprise", "negative", "0", "1", "4", "7", "1", "2"],
            ["3", "   ", "Ross", "neutral", "neutral", "1", "0", "4", "7", "2", "3"],
        ],
    )
    train = [["1", "Fine.", "Ross", "anger", "negative", "0", "0", "1", "1", "0", "1"]]
    write_csv(root / "train_sent_emo.csv", header, train)
    touch(root / "dev_splits_complete" / "dia0_utt1.mp4")
    touch(root / "dev_splits_complete" / "dia1_utt0.mp4")
    rows = parse_meld(root)
    assert [(r.label, r.speaker_id, r.transcript) for r in rows] == [
        ("anger", "meld_Ross", "Fine."),
        ("happiness", "meld_Phoebe", "Oh my God!"),
        ("surprise", "meld_Monica", "What?"),
        ("neutral", "meld_Ross", None),  # empty utterance: text masked, the clip remains
    ]
    assert rows[0].path == f"{root / 'train_sent_emo.csv'}#SrNo=1" and rows[0].modality_files == ()
    assert rows[1].modality_files == ()
    assert [Path(f).name for f in rows[2].modality_files] == ["dia0_utt1.mp4"]
    assert rows[3].path.endswith("dia1_utt0.mp4")
    csv_path = write_manifest(rows, root / "manifest.csv")
    loaded, problems = read_manifest(csv_path)
    assert not problems and loaded[0]["id"] == "train_sent_emo.csv#SrNo=1" and loaded[0]["text"] == "Fine."
    assert loaded[2]["video"].endswith("dia0_utt1.mp4") and loaded[3]["text"] is None


def test_parse_ravdess(tmp_path):
    root = tmp_path / "RAVDESS"
    write_wav(root / "Audio_Speech_Actors_01-24" / "Actor_01" / "03-01-05-01-01-01-01.wav")  # angry, audio
    touch(root / "Video_Speech_Actor_01" / "Actor_01" / "02-01-05-01-01-01-01.mp4")  # same take, video only
    touch(root / "Video_Speech_Actor_01" / "Actor_01" / "01-01-05-01-01-01-01.mp4")  # same take, audio-video
    write_wav(root / "Audio_Speech_Actors_01-24" / "Actor_02" / "03-01-02-01-02-01-02.wav")  # calm
    write_wav(root / "Audio_Song_Actors_01-24" / "Actor_02" / "03-02-04-02-02-02-02.wav")  # sad song
    touch(root / "Video_Speech_Actor_03" / "Actor_03" / "01-01-08-02-01-02-03.mp4")  # surprised, AV only
    rows = parse_ravdess(root)
    assert [(r.label, r.speaker_id, r.transcript) for r in rows] == [
        ("anger", "ravdess_01", "Kids are talking by the door"),
        ("surprise", "ravdess_03", "Kids are talking by the door"),
        ("sadness", "ravdess_02", "Dogs are sitting by the door"),
    ]
    assert [Path(f).name for f in rows[0].modality_files] == ["02-01-05-01-01-01-01.mp4", "03-01-05-01-01-01-01.wav"]
    assert rows[0].path.endswith("03-01-05-01-01-01-01.wav")
    assert [Path(f).name for f in rows[1].modality_files] == ["01-01-08-02-01-02-03.mp4"]
    with_calm = parse_ravdess(root, calm_as_neutral=True)
    assert Counter(r.label for r in with_calm) == {"anger": 1, "surprise": 1, "sadness": 1, "neutral": 1}


def test_parse_iemocap(tmp_path):
    session = tmp_path / "IEMOCAP_full_release" / "Session1"
    dialog = "Ses01F_impro01"
    touch(
        session / "dialog" / "EmoEvaluation" / f"{dialog}.txt",
        (
            "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n"
            "[6.2901 - 8.2357]\tSes01F_impro01_F000\tneu\t[2.5000, 2.5000, 2.5000]\n"
            "C-E2:\tNeutral;\t()\n"
            "[10.0100 - 11.3925]\tSes01F_impro01_M000\texc\t[3.5000, 3.5000, 3.0000]\n"
            "[14.8872 - 18.0175]\tSes01F_impro01_F001\tfru\t[2.0000, 3.5000, 3.5000]\n"
            "[20.1000 - 22.0000]\tSes01F_impro01_M001\tang\t[1.5000, 4.0000, 4.0000]\n"
        ).encode(),
    )
    touch(
        session / "dialog" / "transcriptions" / f"{dialog}.txt",
        (
            "Ses01F_impro01_F000 [006.2901-008.2357]: Excuse me.\n"
            "Ses01F_impro01_M000 [010.0100-011.3925]: Do you have your forms?\n"
            "Ses01F_impro01_F001 [014.8872-018.0175]: Yeah.\n"
            "Ses01F_impro01_M001 [020.1000-022.0000]: Let me see them.\n"
        ).encode(),
    )
    for turn in ("F000", "M000", "F001"):
        write_wav(session / "sentences" / "wav" / dialog / f"{dialog}_{turn}.wav")
    rows = parse_iemocap(tmp_path / "IEMOCAP_full_release")
    assert [(r.label, r.speaker_id, r.transcript) for r in rows] == [
        ("neutral", "iemocap_Ses01F", "Excuse me."),
        ("happiness", "iemocap_Ses01M", "Do you have your forms?"),  # exc merged into happiness
        ("anger", "iemocap_Ses01M", "Let me see them."),  # fru was dropped
    ]
    assert rows[0].path.endswith(f"{dialog}_F000.wav") and len(rows[0].modality_files) == 1
    assert rows[2].modality_files == () and rows[2].path.endswith(f"{dialog}.txt#{dialog}_M001")  # wav missing


def test_parsers_reject_wrong_layout(tmp_path):
    (tmp_path / "empty").mkdir()
    for parser in (parse_crema_d, parse_emodb, parse_meld, parse_ravdess, parse_iemocap):
        with pytest.raises(ValueError, match="Expected the standard layout"):
            parser(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="Corpus folder not found"):
        parse_emodb(tmp_path / "absent")


def test_write_manifest_relative_paths(tmp_path):
    audio = write_wav(tmp_path / "corpus" / "a.wav")
    row = ManifestRow("mine", str(audio), "fear", "s1", (str(audio),), "Hi", "en")
    text_row = ManifestRow("mine", str(tmp_path / "corpus" / "t.csv") + "#7", "anger", "s2", (), "Go!", "en")
    out = write_manifest([row, text_row], tmp_path / "out" / "m.csv")
    lines = out.read_text(encoding="utf-8").splitlines()
    assert lines[1] == "mine,../corpus/a.wav,fear,s1,../corpus/a.wav,Hi,en"
    assert lines[2] == "mine,../corpus/t.csv#7,anger,s2,text,Go!,en"


# ----------------------------------------------------------------------------------------------- real data


def test_embedded_demo_corpus_loads_completely():
    manifest = REPO / "data" / "manifest.csv"
    rows, problems = read_manifest(manifest, strict=True)
    assert not problems and len(rows) == 488
    assert Counter(r["corpus"] for r in rows) == {"crema_d": 6, "emodb": 220, "meld": 262}
    by_corpus = {c: Counter(r["label"] for r in rows if r["corpus"] == c) for c in ("crema_d", "emodb", "meld")}
    assert by_corpus["emodb"] == {
        "anger": 40,
        "boredom": 35,
        "disgust": 12,
        "fear": 29,
        "happiness": 34,
        "neutral": 40,
        "sadness": 30,
    }
    assert by_corpus["meld"] == {
        "anger": 40,
        "disgust": 22,
        "fear": 40,
        "happiness": 40,
        "neutral": 40,
        "sadness": 40,
        "surprise": 40,
    }
    assert set(by_corpus["crema_d"].values()) == {1} and len(by_corpus["crema_d"]) == 6
    data_dir = (REPO / "data").resolve()
    for r in rows:
        for key in ("audio", "video"):
            if r[key] is not None:
                assert Path(r[key]).is_file() and data_dir in Path(r[key]).parents
    emodb = [r for r in rows if r["corpus"] == "emodb"]
    assert all(r["audio"].endswith(".flac") and r["text"] in EMODB_SENTENCES.values() for r in emodb)
    assert all(r["video"] and r["audio"] for r in rows if r["corpus"] == "crema_d")
    assert all(r["audio"] is None and r["video"] is None and r["text"] for r in rows if r["corpus"] == "meld")
    lengths = {load_audio(r["audio"]).shape[0] for r in emodb}
    assert lengths == {32000}  # 2.0 s at 16 kHz
    info = sf.info(emodb[0]["audio"])
    assert (info.samplerate, info.channels, info.format) == (16000, 1, "FLAC")
    for licence in ("crema_d/LICENSE.txt", "meld/LICENSE_GPL-3.0.txt", "README.md"):
        assert (REPO / "data" / licence).stat().st_size > 100
    size = sum(p.stat().st_size for p in (REPO / "data").rglob("*") if p.is_file())
    assert size < 12e6


@pytest.mark.skipif(not (SHARED_DATA / "manifest.csv").is_file(), reason=f"set A not present at {SHARED_DATA}")
def test_shared_set_a_loads_and_parsers_agree():
    rows, problems = read_manifest(SHARED_DATA / "manifest.csv", strict=True)
    assert not problems and len(rows) == 488
    expected = {r["id"]: (r["label"], r["speaker_id"], r["text"]) for r in rows if r["corpus"] == "emodb"}
    parsed = {
        f"emodb/wav/{Path(r.path).name}": (r.label, r.speaker_id, r.transcript)
        for r in parse_emodb(SHARED_DATA / "emodb")
    }
    assert parsed == expected
    crema = parse_crema_d(SHARED_DATA / "crema_d")
    assert [(r.label, len(r.modality_files)) for r in crema] == [
        ("anger", 2),
        ("disgust", 2),
        ("fear", 2),
        ("happiness", 2),
        ("neutral", 2),
        ("sadness", 2),
    ]
    assert len(parse_meld(SHARED_DATA / "meld")) == 1109
