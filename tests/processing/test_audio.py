"""Audio decoding, down-mixing, resampling and the errors for bad audio (modeling_ter.processing.audio)."""

import math

import numpy as np
import pytest
import soundfile as sf

from modeling_ter.processing.audio import AudioDecodeError, load_audio, prepare_waveform, resample


def tone(freq: float, sr: int, seconds: float, channels: int = 1) -> np.ndarray:
    """A sine of `freq` Hz, shape (T,) or (T, C) with each channel at a different amplitude."""
    t = np.arange(int(sr * seconds)) / sr
    mono = np.sin(2 * np.pi * freq * t).astype(np.float32)
    if channels == 1:
        return 0.5 * mono
    return np.stack([mono * (0.2 + 0.2 * c) for c in range(channels)], axis=1)


def peak_hz(waveform: np.ndarray, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(waveform * np.hanning(len(waveform))))
    return float(np.fft.rfftfreq(len(waveform), 1 / sr)[spectrum.argmax()])


def test_stereo_44k_wav_to_16k_mono_keeps_frequency(tmp_path):
    path = tmp_path / "tone.wav"
    stereo = tone(1000, 44100, 1.0, channels=2)  # (44100, 2), amplitudes 0.2 and 0.4
    sf.write(path, stereo, 44100)
    out = load_audio(path, sampling_rate=16000)
    assert out.dtype == np.float32 and out.shape == (16000,)
    assert peak_hz(out, 16000) == pytest.approx(1000, abs=2)
    # the mono mix is the channel mean: amplitude 0.3
    assert np.abs(out[1000:-1000]).max() == pytest.approx(0.3, abs=0.01)


@pytest.mark.parametrize("fmt", ["flac", "ogg", "mp3"])
def test_compressed_formats_decode_and_resample(tmp_path, fmt):
    path = tmp_path / f"tone.{fmt}"
    sf.write(path, tone(440, 22050, 1.0), 22050)
    out = load_audio(path, sampling_rate=16000)
    # MP3 encoders add a few ms of padding; the others are exact in length
    assert abs(len(out) - 16000) <= (3000 if fmt == "mp3" else 0)
    assert peak_hz(out, 16000) == pytest.approx(440, abs=3)


def test_in_memory_layouts_agree():
    stereo = tone(300, 8000, 0.5, channels=2)  # (T, C)
    a = prepare_waveform(stereo, 8000, 16000)
    b = prepare_waveform(stereo.T, 8000, 16000)  # (C, T)
    c = prepare_waveform(stereo.mean(axis=1), 8000, 16000)  # (T,)
    assert a.shape == (8000,)
    np.testing.assert_allclose(a, b, atol=1e-6)
    np.testing.assert_allclose(a, c, atol=1e-6)
    assert peak_hz(a, 16000) == pytest.approx(300, abs=3)


def test_int16_input_scaled_to_unit_range():
    pcm = (tone(500, 16000, 0.25) * 32768).astype(np.int16)  # amplitude 0.5 as int16
    out = prepare_waveform(pcm, 16000, 16000)
    assert out.dtype == np.float32
    assert np.abs(out).max() == pytest.approx(0.5, abs=1e-3)


def test_resample_lengths_and_identity():
    x = np.random.default_rng(0).standard_normal(22050).astype(np.float32)
    assert len(resample(x, 22050, 16000)) == math.ceil(22050 * 16000 / 22050)
    assert len(resample(x, 22050, 8000)) == 8000
    np.testing.assert_array_equal(resample(x, 22050, 22050), x)
    with pytest.raises(ValueError, match="orig_sr"):
        resample(x, 0, 16000)
    with pytest.raises(ValueError, match=r"\(T,\)"):
        resample(np.zeros((2, 100)), 16000, 8000)


def test_missing_file_names_path(tmp_path):
    missing = tmp_path / "nope.wav"
    with pytest.raises(FileNotFoundError, match="nope.wav"):
        load_audio(missing)


def test_zero_length_file(tmp_path):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    with pytest.raises(AudioDecodeError, match=r"empty\.wav.*0 bytes.*re-encode.*drop the audio modality"):
        load_audio(path)


@pytest.mark.parametrize("fmt", ["wav", "flac", "mp3"])
def test_truncated_file(tmp_path, fmt):
    full = tmp_path / f"full.{fmt}"
    sf.write(full, tone(440, 16000, 1.0), 16000)
    cut = tmp_path / f"cut.{fmt}"
    data = full.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    assert load_audio(full).shape[0] >= 16000  # the complete file is fine
    with pytest.raises(AudioDecodeError, match=rf"cut\.{fmt}.*re-encode"):
        load_audio(cut)


def test_corrupt_file(tmp_path):
    path = tmp_path / "noise.wav"
    path.write_bytes(np.random.default_rng(0).bytes(4000))
    with pytest.raises(AudioDecodeError, match=r"Cannot decode audio file .*noise\.wav"):
        load_audio(path)
    assert issubclass(AudioDecodeError, ValueError)


def test_non_finite_samples(tmp_path):
    x = tone(440, 16000, 0.1)
    x[10] = np.nan
    x[20] = np.inf
    path = tmp_path / "nan.wav"
    sf.write(path, x, 16000, subtype="FLOAT")
    with pytest.raises(AudioDecodeError, match=r"nan\.wav' contains 2 NaN/inf samples"):
        load_audio(path)
    with pytest.raises(ValueError, match="2 NaN/inf samples"):
        prepare_waveform(x, 16000)


@pytest.mark.parametrize(
    "array, message",
    [
        (np.zeros(0, dtype=np.float32), "holds no samples"),
        (np.zeros((4, 4), dtype=np.float32), "Cannot tell the channel axis"),
        (np.zeros((2, 3, 100), dtype=np.float32), r"shape \(2, 3, 100\)"),
        (np.array(["a", "b"]), "must hold numbers"),
    ],
)
def test_bad_arrays(array, message):
    with pytest.raises(ValueError, match=message):
        prepare_waveform(array, 16000)


def test_batched_whisper_log_mel_equals_the_feature_extractor_clip_by_clip():
    from transformers import WhisperFeatureExtractor

    from modeling_ter.processing.audio import batched_log_mel_applies, whisper_log_mel

    extractor = WhisperFeatureExtractor()
    rng = np.random.default_rng(0)
    # Unequal lengths (not multiples of the hop, one of a single frame: 201 samples), loud and quiet, in one batch.
    lengths = [32000, 16000 + 77, 8123, 201, 4000]
    waveforms = [(rng.standard_normal(n) * scale).astype(np.float32) for n, scale in zip(lengths, (1, 0.1, 3, 1, 1e-3))]
    batched = whisper_log_mel(waveforms, extractor)
    for waveform, features in zip(waveforms, batched):
        alone = extractor(waveform, sampling_rate=16000, padding="longest", return_tensors="np")["input_features"][0]
        assert features.shape == alone.shape == (80, len(waveform) // 160)
        np.testing.assert_allclose(features, alone, atol=2e-5, rtol=0)
    assert not batched_log_mel_applies(extractor, 200)  # torch.stft's reflect padding needs > n_fft // 2 samples
    assert batched_log_mel_applies(extractor, 201)
    assert not batched_log_mel_applies(WhisperFeatureExtractor(dither=1.0), 16000)
