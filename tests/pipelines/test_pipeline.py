"""The trusted-emotion-recognition pipeline on the embedded demo corpus (data/) with the real default encoders."""

import hashlib
import inspect
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import pipeline
from transformers.pipelines.base import ChunkPipeline

from modeling_ter.encoders.defaults import build_default_model, build_default_processor
from modeling_ter.pipelines.trusted_emotion_recognition import TrustedEmotionRecognitionPipeline

DATA = Path(__file__).resolve().parents[2] / "data"
EMODB = DATA / "emodb" / "wav" / "03a05Wa.flac"
CREMA_AUDIO = DATA / "crema_d" / "AudioWAV_16k" / "1001_DFA_HAP_XX.flac"
CREMA_VIDEO = DATA / "crema_d" / "VideoFlash" / "1001_DFA_HAP_XX.flv"
INPUTS = {
    "audio_only": {"audio": str(EMODB)},
    "text_only": {"text": "Oh my God, this is the best day of my life!"},
    "audio_video_text": {"audio": str(CREMA_AUDIO), "text": "Don't forget a jacket", "video": str(CREMA_VIDEO)},
}
PRESENT = {
    "audio_only": (True, False, False),
    "text_only": (False, True, False),
    "audio_video_text": (True, True, True),
}


@pytest.fixture(scope="module")
def recognizer():
    torch.manual_seed(0)
    model = build_default_model(head_hidden_size=8).eval()
    return pipeline("trusted-emotion-recognition", model=model, processor=build_default_processor())


@pytest.fixture(scope="module")
def results(recognizer):
    return {name: recognizer(item) for name, item in INPUTS.items()}


@pytest.mark.parametrize("name", list(INPUTS))
def test_output_is_valid_and_json_serialisable(recognizer, results, name):
    result = json.loads(json.dumps(results[name]))
    config = recognizer.model.config
    assert set(result) == {"label", "score", "confidence", "trusted", "scores", "modalities", "conflict"}
    scores = [entry["score"] for entry in result["scores"]]
    assert sorted((entry["label"] for entry in result["scores"])) == sorted(config.id2label.values())
    assert scores == sorted(scores, reverse=True) and sum(scores) == pytest.approx(1.0, abs=1e-5)
    assert (result["label"], result["score"]) == (result["scores"][0]["label"], scores[0])
    assert 0.0 < result["confidence"] < 1.0 and result["trusted"] is None  # no calibrated threshold yet
    assert list(result["modalities"]) == ["audio", "text", "video"]
    for modality, present in zip(result["modalities"], PRESENT[name]):
        entry = result["modalities"][modality]
        assert entry["present"] is present
        if present:
            assert 0.0 < entry["confidence"] < 1.0 and entry["label"] in config.id2label.values()
        else:  # reported as missing, never zero-filled
            assert entry["confidence"] is None and entry["label"] is None
    matrix = result["conflict"]["matrix"]
    for i, row_present in enumerate(PRESENT[name]):
        for j, column_present in enumerate(PRESENT[name]):
            assert (matrix[i][j] is None) == (not (row_present and column_present))
    if sum(PRESENT[name]) < 2:
        assert result["conflict"]["max"] is None
    else:
        pairs = [matrix[i][j] for i in range(3) for j in range(i + 1, 3)]
        assert result["conflict"]["max"] == max(pairs) > 0.0


def test_single_modality_decision_is_that_modality_alone(results):
    # A missing modality is the vacuous opinion: the fused opinion of a text-only input is the text opinion itself.
    result = results["text_only"]
    assert result["confidence"] == pytest.approx(result["modalities"]["text"]["confidence"], abs=1e-6)
    assert result["label"] == result["modalities"]["text"]["label"]


def test_matches_the_model_on_processor_inputs(recognizer, results):
    item = INPUTS["audio_video_text"]
    inputs = recognizer.processor(audio=[item["audio"]], text=[item["text"]], video=[item["video"]])
    with torch.no_grad():
        output = recognizer.model(**inputs)
    result = results["audio_video_text"]
    assert result["confidence"] == pytest.approx(output.confidence.item(), abs=1e-6)
    assert result["scores"][0]["score"] == pytest.approx(output.probs.max().item(), abs=1e-6)


def test_batch_equals_single(recognizer, results):
    items = list(INPUTS.values()) + [{"audio": str(EMODB), "text": ""}]  # empty text: audio only
    batched = recognizer(items, batch_size=3)
    expected = list(results.values()) + [results["audio_only"]]
    for single, batch in zip(expected, batched):
        assert batch["label"] == single["label"] and batch["modalities"].keys() == single["modalities"].keys()
        assert batch["confidence"] == pytest.approx(single["confidence"], abs=1e-5)
        assert [e["score"] for e in batch["scores"]] == pytest.approx([e["score"] for e in single["scores"]], abs=1e-5)
        for modality, entry in single["modalities"].items():
            assert batch["modalities"][modality]["present"] == entry["present"]
            assert batch["modalities"][modality]["confidence"] == pytest.approx(entry["confidence"], abs=1e-5)


def test_trusted_follows_the_calibrated_threshold(recognizer, monkeypatch):
    confidence = recognizer(INPUTS["text_only"])["confidence"]
    for threshold, expected in ((confidence - 1e-4, True), (confidence + 1e-4, False)):
        monkeypatch.setattr(recognizer.model.config, "trusted_threshold", threshold)
        assert recognizer(INPUTS["text_only"])["trusted"] is expected


def test_bad_inputs(recognizer):
    with pytest.raises(FileNotFoundError, match="just-a-name.flac"):
        recognizer("just-a-name.flac")  # a plain string is an audio file, as in the audio-classification pipeline
    with pytest.raises(ValueError, match="takes an audio clip"):
        recognizer(42)
    with pytest.raises(ValueError, match="Unknown input keys \\['image'\\]"):
        recognizer({"image": "x.png"})
    with pytest.raises(ValueError, match="no usable modality"):
        recognizer({"text": "   "})


def test_from_a_checkpoint_folder(recognizer, results, tmp_path_factory):
    folder = tmp_path_factory.mktemp("checkpoint")
    recognizer.model.save_pretrained(folder)
    recognizer.processor.save_pretrained(folder)
    loaded = pipeline("trusted-emotion-recognition", model=str(folder))
    assert isinstance(loaded, TrustedEmotionRecognitionPipeline)
    result = loaded(INPUTS["audio_video_text"])
    assert result["label"] == results["audio_video_text"]["label"]
    assert result["confidence"] == pytest.approx(results["audio_video_text"]["confidence"], abs=1e-6)


def test_get_iterator_override_still_mirrors_upstream():
    """Our `get_iterator` is `ChunkPipeline.get_iterator` with another collate function: when upstream's body
    changes, re-read it, carry the change over, and record the new digest here."""
    source = inspect.getsource(ChunkPipeline.get_iterator)
    assert hashlib.sha256(source.encode()).hexdigest() == (
        "933fe6c3bb165227701d0739abf6087b5352b0baee6120e7cf24e0a9a5af7825"
    ), "transformers changed ChunkPipeline.get_iterator: update TrustedEmotionRecognitionPipeline.get_iterator"


@pytest.fixture(scope="module")
def two_seconds():
    """The first 2.0 s of an EmoDB utterance, 16 kHz."""
    from modeling_ter.processing.audio import load_audio

    waveform = load_audio(EMODB)
    assert len(waveform) >= 32000
    return waveform[:32000]


def test_inputs_users_type(recognizer, results, two_seconds):
    """A plain path or array is the audio (as in the audio-classification pipeline); a container gives its audio."""
    as_dict = results["audio_only"]
    assert recognizer(str(EMODB))["confidence"] == pytest.approx(as_dict["confidence"], abs=1e-6)
    array_result = recognizer(two_seconds, sampling_rate=16000)
    assert array_result == recognizer({"array": two_seconds, "sampling_rate": 16000})
    assert array_result["modalities"]["audio"]["present"] and not array_result["modalities"]["text"]["present"]
    from_container = recognizer({"audio": str(CREMA_VIDEO)})
    from_flac = recognizer({"audio": str(CREMA_AUDIO)})
    assert from_container["label"] == from_flac["label"]
    assert from_container["confidence"] == pytest.approx(from_flac["confidence"], abs=1e-3)
    with_track = recognizer({"video": str(CREMA_VIDEO), "text": "Don't forget a jacket"}, use_video_audio=True)
    assert [entry["present"] for entry in with_track["modalities"].values()] == [True, True, True]
    assert with_track["confidence"] == pytest.approx(
        recognizer({**INPUTS["audio_video_text"], "audio": str(CREMA_VIDEO)})["confidence"], abs=1e-6
    )
    without = recognizer({"video": str(CREMA_VIDEO)})
    assert not without["modalities"]["audio"]["present"]


def test_silent_windows_do_not_dilute_speech(recognizer, two_seconds, monkeypatch):
    """2 s of speech then 20 s of silence, in 2 s windows: the silent windows are masked, so the pooled audio opinion
    is the speech window's own; without the silence mask they pull it towards the silent windows' opinion.

    The confidence is read as `1 - u` here (uncalibrated), so that the averaged opinion's can be recomputed from the
    windows' confidences."""
    monkeypatch.setattr(recognizer.model.config, "confidence_measure", "uncertainty")
    monkeypatch.setattr(recognizer.model.config, "confidence_calibration", None)
    alone = recognizer(two_seconds, sampling_rate=16000)
    padded = np.concatenate([two_seconds, np.zeros(20 * 16000, dtype=np.float32)])
    options = dict(sampling_rate=16000, chunk_length_s=2.0, stride_length_s=0.0, return_windows=True)
    masked = recognizer(padded, **options)
    assert [w["speech"] for w in masked["windows"]] == [True] + [False] * 10
    assert [(w["start"], w["end"]) for w in masked["windows"]][:2] == [(0.0, 2.0), (2.0, 4.0)]
    assert masked["confidence"] == pytest.approx(alone["confidence"], abs=1e-6)
    assert masked["label"] == alone["label"] == masked["windows"][0]["label"]
    diluted = recognizer(padded, **options, silence_db=None, window_fusion="evidence_average")
    assert all(w["speech"] for w in diluted["windows"])
    # Averaged evidence over all 11 windows: S = mean_w S_w with S_w = K / (1 - c_w), so c = 1 - K / S.
    num_labels = len(recognizer.model.config.id2label)
    strengths = [num_labels / (1.0 - w["confidence"]) for w in diluted["windows"]]
    assert diluted["confidence"] == pytest.approx(1.0 - num_labels / np.mean(strengths), abs=1e-5)
    assert abs(diluted["confidence"] - alone["confidence"]) > 1e-4


def test_window_rules_on_repeated_windows(recognizer, two_seconds):
    """Three identical windows: evidence averaging keeps the one window's opinion, Dempster-Shafer grows its
    confidence (independent witnesses agreeing), tempered Dempster-Shafer (the default) by less."""
    alone = recognizer(two_seconds, sampling_rate=16000)
    tiled = np.tile(two_seconds, 3)
    options = dict(sampling_rate=16000, chunk_length_s=2.0, stride_length_s=0.0)
    average = recognizer(tiled, **options, window_fusion="evidence_average")
    dempster_shafer = recognizer(tiled, **options, window_fusion="dempster_shafer")
    tempered = recognizer(tiled, **options)
    assert average["confidence"] == pytest.approx(alone["confidence"], abs=1e-6)
    assert dempster_shafer["confidence"] > tempered["confidence"] + 1e-4
    assert tempered["confidence"] > alone["confidence"] + 1e-4
    assert tempered == recognizer(tiled, **options, window_fusion="tempered_dempster_shafer")
    assert average["label"] == dempster_shafer["label"] == tempered["label"] == alone["label"]


def test_long_clip_is_windowed_by_default(recognizer, two_seconds, caplog):
    """A 36 s clip (longer than Whisper's 30 s) is cut into 3 s windows overlapping by 0.5 s on each side and every
    sample is scored (no "only its start is used" truncation); a clip of 3 s or less is one window."""
    clip = np.tile(two_seconds, 18)
    with caplog.at_level("WARNING"):
        result = recognizer(clip, sampling_rate=16000, return_windows=True)
    assert "only its start is used" not in caplog.text
    spans = [(w["start"], w["end"]) for w in result["windows"]]
    assert spans[0] == (0.0, 3.0) and spans[-1] == (34.0, 36.0) and len(spans) == 18
    assert all(b[0] == pytest.approx(a[0] + 2.0, abs=1e-6) for a, b in zip(spans, spans[1:]))
    assert len(recognizer(clip[: 3 * 16000], sampling_rate=16000, return_windows=True)["windows"]) == 1
    assert len(recognizer(clip[: 20 * 16000], sampling_rate=16000, return_windows=True)["windows"]) == 10
    with pytest.raises(ValueError, match="at most the encoder's 30 s"):
        recognizer(clip, sampling_rate=16000, chunk_length_s=40)


def test_int8_encoders_are_an_option_close_to_float32_and_never_saved(recognizer, results, tmp_path):
    int8 = pipeline(
        "trusted-emotion-recognition",
        model=recognizer.model,
        processor=recognizer.processor,
        encoder_quantization="dynamic_int8",
    )
    assert int8.encoder_quantization == "dynamic_int8" and int8.model.encoder_quantization == "dynamic_int8"
    assert int8.float_model is recognizer.model and recognizer.model.encoder_quantization == "none"
    assert pipeline("trusted-emotion-recognition", model=recognizer.model, processor=recognizer.processor,
                    encoder_quantization="none").model is recognizer.model  # fmt: skip
    item = INPUTS["audio_video_text"]
    result = int8(item)
    assert result["confidence"] != results["audio_video_text"]["confidence"]  # the int8 path is the one that ran
    assert result["confidence"] == pytest.approx(results["audio_video_text"]["confidence"], abs=0.02)
    int8.save_pretrained(tmp_path)  # saves the float model
    reloaded = pipeline("trusted-emotion-recognition", model=str(tmp_path))
    assert reloaded.model.encoder_quantization == "none"
    assert reloaded(item)["confidence"] == pytest.approx(results["audio_video_text"]["confidence"], abs=1e-6)
    with pytest.raises(ValueError, match="encoder_quantization must be one of"):
        pipeline("trusted-emotion-recognition", model=recognizer.model, processor=recognizer.processor,
                 encoder_quantization="fp8")  # fmt: skip
