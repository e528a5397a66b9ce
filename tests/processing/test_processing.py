"""TERProcessor on the embedded demo corpus (data/) with the real default encoders' feature extractor and tokenizer."""

import hashlib
import inspect
import logging
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
from transformers import AutoProcessor
from transformers.processing_utils import ProcessorMixin

from modeling_ter.encoders.defaults import build_default_processor
from modeling_ter.processing.audio import load_audio, resample
from modeling_ter.processing.processing_ter import TERProcessor

DATA = Path(__file__).resolve().parents[2] / "data"
EMODB_A = DATA / "emodb" / "wav" / "03a01Fa.flac"  # 2.0 s
EMODB_B = DATA / "emodb" / "wav" / "03a04Lc.flac"
CREMA_AUDIO = DATA / "crema_d" / "AudioWAV_16k" / "1001_DFA_ANG_XX.flac"
CREMA_VIDEO = DATA / "crema_d" / "VideoFlash" / "1001_DFA_ANG_XX.flv"
HOP = 160  # Whisper: one mel frame per 10 ms at 16 kHz


@pytest.fixture(scope="module")
def processor() -> TERProcessor:
    return build_default_processor()


def test_audio_only_batch_keeps_real_length(processor):
    out = processor(audio=[str(EMODB_A), CREMA_AUDIO])
    assert set(out) == {"audio_input_features", "audio_attention_mask", "modality_mask"}
    lengths = [len(load_audio(path)) // HOP for path in (EMODB_A, CREMA_AUDIO)]
    assert out["audio_input_features"].shape == (2, 80, max(lengths)) and max(lengths) < 3000
    assert out["audio_attention_mask"].sum(-1).tolist() == lengths
    assert out["modality_mask"].tolist() == [[True, False, False]] * 2
    # Each sample's features are the feature extractor's own on that sample alone; the padding is the padding value.
    alone = processor.feature_extractor(
        load_audio(CREMA_AUDIO), sampling_rate=16000, padding="longest", return_tensors="np"
    )["input_features"][0]
    np.testing.assert_allclose(out["audio_input_features"][1, :, : lengths[1]].numpy(), alone, atol=1e-6)
    short = int(np.argmin(lengths))
    assert (out["audio_input_features"][short, :, min(lengths) :] == processor.feature_extractor.padding_value).all()


def test_text_only_batch_and_missing_text(processor):
    out = processor(text=["I am absolutely furious!", "   ", None])
    assert set(out) == {"text_input_ids", "text_attention_mask", "text_token_type_ids", "modality_mask"}
    expected = processor.tokenizer("I am absolutely furious!")["input_ids"]
    assert out["text_input_ids"][0].tolist() == expected
    assert out["modality_mask"].tolist() == [[False, True, False], [False, False, False], [False, False, False]]
    # Missing text: the minimal placeholder, one pad token marked real.
    assert out["text_input_ids"][1:].eq(processor.tokenizer.pad_token_id).all()
    assert out["text_attention_mask"][1:].tolist() == [[1] + [0] * (len(expected) - 1)] * 2


def test_audio_video_text_batch(processor, caplog):
    out = processor(
        audio=[CREMA_AUDIO, EMODB_B],
        text=["Don't forget a jacket", "Heute abend könnte ich es ihm sagen."],
        video=[CREMA_VIDEO, None],
    )
    assert out["modality_mask"].tolist() == [[True, True, True], [True, True, False]]
    assert out["video_pixel_values"].shape == (2, 16, 1, 64, 64)
    assert out["video_frame_mask"].shape == (2, 16)
    assert out["video_frame_mask"][0].sum() >= 12 and not out["video_frame_mask"][1].any()
    faces = out["video_pixel_values"][0][out["video_frame_mask"][0]]
    assert faces.min() >= -1 and faces.max() <= 1 and faces.std() > 0.1
    assert out["text_input_ids"].shape[0] == out["audio_input_features"].shape[0] == 2


def test_stereo_44k_matches_mono_16k(processor, tmp_path):
    mono = load_audio(EMODB_A)
    upsampled = resample(mono, 16000, 44100)
    stereo = np.stack([1.25 * upsampled, 0.75 * upsampled], axis=1)  # (T, 2); the down-mix is `upsampled`
    sf.write(tmp_path / "stereo.wav", stereo, 44100, subtype="FLOAT")
    reference = processor(audio=[mono], sampling_rate=16000)["audio_input_features"]
    from_file = processor(audio=[tmp_path / "stereo.wav"])["audio_input_features"]
    from_array = processor(audio=[stereo.T], sampling_rate=44100)["audio_input_features"]
    assert reference.shape == from_file.shape == from_array.shape
    # Normalised log-mel features (here in [-0.68, 1.32]). Measured: max |diff| 0.0038 on mel bins 0-69, mean 0.0014;
    # the 16k -> 44.1k -> 16k round trip filters the band near 8 kHz, which only the top bins see (max 0.10 there).
    for features in (from_file, from_array):
        difference = (features - reference).abs()
        assert difference[:, :70].max() < 0.01 and difference.mean() < 0.005


def _write_faceless_video(path: Path, num_frames: int = 12) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=12)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        gradient = np.tile(np.linspace(0, 255, 160, dtype=np.uint8), (120, 1))
        for _ in range(num_frames):
            frame = av.VideoFrame.from_ndarray(np.stack([gradient] * 3, axis=-1), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


def test_video_without_face_is_masked_with_warning(processor, tmp_path, caplog):
    video = tmp_path / "no_face.mp4"
    _write_faceless_video(video)
    with caplog.at_level(logging.WARNING, logger="modeling_ter.processing.processing_ter"):
        out = processor(text=["hello", "there"], video=[video, CREMA_VIDEO])
    assert out["modality_mask"][:, 2].tolist() == [False, True]
    assert not out["video_frame_mask"][0].any() and out["video_frame_mask"][1].any()
    assert any("no_face.mp4" in record.getMessage() and "masked" in record.getMessage() for record in caplog.records)


def test_bad_inputs_give_clear_errors(processor, tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.flac"):
        processor(audio=[tmp_path / "missing.flac"])
    with pytest.raises(FileNotFoundError, match="missing.mp4"):
        processor(video=[tmp_path / "missing.mp4"])
    corrupt = tmp_path / "corrupt.flv"
    corrupt.write_bytes(CREMA_VIDEO.read_bytes()[:2000])
    with pytest.raises(ValueError, match="corrupt.flv"):
        processor(video=[corrupt])
    with pytest.raises(ValueError, match="sampling_rate"):
        processor(audio=[np.zeros(16000, dtype=np.float32)])
    with pytest.raises(ValueError, match="one entry per sample"):
        processor(audio=[EMODB_A, EMODB_B], text=["only one"])
    with pytest.raises(ValueError, match="must be a string"):
        processor(text=[3])
    text_only = build_default_processor(("text",))
    with pytest.raises(ValueError, match="modalities are \\['text'\\]"):
        text_only(audio=[EMODB_A])
    with pytest.raises(ValueError, match="in that order"):
        TERProcessor(processor.feature_extractor, processor.tokenizer, modalities=("text", "audio"))
    with pytest.raises(ValueError, match="feature_extractor exactly when"):
        TERProcessor(tokenizer=processor.tokenizer, modalities=("audio", "text"))


@pytest.mark.parametrize("modalities", [("audio", "text", "video"), ("text",)])
def test_save_and_load_round_trip(modalities, tmp_path):
    processor = build_default_processor(modalities, num_frames=8)
    processor.save_pretrained(tmp_path)
    assert (tmp_path / "processor_config.json").is_file() and (tmp_path / "tokenizer.json").is_file()
    loaded = AutoProcessor.from_pretrained(tmp_path)
    assert isinstance(loaded, TERProcessor)
    assert (loaded.modalities, loaded.num_frames, loaded.image_size) == (modalities, 8, 64)
    assert (loaded.feature_extractor is None) == ("audio" not in modalities)
    inputs = {"text": ["Don't forget a jacket"]}
    if "audio" in modalities:
        inputs["audio"] = [CREMA_AUDIO]
    expected, actual = processor(**inputs), loaded(**inputs)
    assert expected.keys() == actual.keys()
    for name in expected:
        assert expected[name].equal(actual[name]), name


def test_waveform_feature_extractor_gives_input_values(processor):
    from transformers import Wav2Vec2FeatureExtractor

    waveform_processor = TERProcessor(
        feature_extractor=Wav2Vec2FeatureExtractor(return_attention_mask=True),
        tokenizer=processor.tokenizer,
        modalities=("audio", "text"),
    )
    out = waveform_processor(audio=[EMODB_A, None, CREMA_AUDIO], text=[None, "hi", None])
    lengths = [len(load_audio(path)) for path in (EMODB_A, CREMA_AUDIO)]
    assert out["audio_input_values"].shape == (3, max(lengths))
    assert out["audio_attention_mask"].sum(-1).tolist() == [lengths[0], 1, lengths[1]]  # placeholder: one sample
    assert out["modality_mask"].tolist() == [[True, False], [False, True], [True, False]]
    real = out["audio_input_values"][0, : lengths[0]]
    assert abs(real.mean()) < 1e-3 and abs(real.std() - 1) < 1e-2  # zero-mean unit-variance per sample
    assert waveform_processor.model_input_names[:2] == ["audio_input_values", "audio_attention_mask"]


def test_private_loading_hook_still_mirrors_upstream():
    """`TERProcessor._get_arguments_from_pretrained` overrides a private hook of `ProcessorMixin`: when upstream's
    changes, check that ours still fits its callers, then record the new digest here."""
    source = inspect.getsource(ProcessorMixin._get_arguments_from_pretrained)
    assert hashlib.sha256(source.encode()).hexdigest() == (
        "1bf9804b48f262d0a2a4b55adb75d8a14104e593b9f64f31e62a4e2117e39160"
    ), "transformers changed ProcessorMixin._get_arguments_from_pretrained: check TERProcessor's override"


def test_remote_code_constants_agree_with_the_config():
    """processing_ter.py travels without configuration_ter.py, so it restates two of its constants."""
    from modeling_ter.models import configuration_ter
    from modeling_ter.processing import processing_ter

    assert processing_ter.MODALITIES == configuration_ter.MODALITIES
    assert processing_ter.FACE_CNN_MODEL_TYPE == configuration_ter.FACE_CNN_MODEL_TYPE


def test_video_container_audio_track_is_the_clip_audio():
    """`{"audio": "clip.flv"}`: PyAV decodes the container's audio track; it is CREMA-D's own 16 kHz audio."""
    from_container = load_audio(CREMA_VIDEO)
    shipped = load_audio(CREMA_AUDIO)
    assert abs(len(from_container) - len(shipped)) <= 16  # within 1 ms
    n = min(len(from_container), len(shipped))
    assert np.corrcoef(from_container[:n], shipped[:n])[0, 1] > 0.999


def test_missing_optional_decoders_name_their_pip_install(monkeypatch):
    import sys

    from modeling_ter.processing import audio

    for module, fix in (("soundfile", "pip install soundfile"), ("av", "pip install av")):
        monkeypatch.setitem(sys.modules, module, None)
        with pytest.raises(ImportError, match=fix):
            load_audio(EMODB_A if module == "soundfile" else CREMA_VIDEO)
    monkeypatch.setitem(sys.modules, "scipy.signal", None)
    with pytest.raises(ImportError, match="pip install scipy"):
        audio.resample(np.zeros(100, dtype=np.float32), 8000, 16000)


def test_whisper_features_of_a_batch_come_from_one_batched_stft(processor, monkeypatch):
    expected = {
        path: processor.feature_extractor(load_audio(path), sampling_rate=16000, padding="longest")["input_features"][0]
        for path in (EMODB_A, EMODB_B, CREMA_AUDIO)
    }
    calls = []
    monkeypatch.setattr(type(processor.feature_extractor), "__call__", lambda *args, **kwargs: calls.append(args))
    out = processor(audio=list(expected), text=["a", None, "b"])
    assert not calls  # the per-clip feature extractor did not run
    for row, alone in enumerate(expected.values()):
        frames = int(out["audio_attention_mask"][row].sum())
        assert frames == alone.shape[1]
        np.testing.assert_allclose(out["audio_input_features"][row, :, :frames].numpy(), alone, atol=1e-6)
