"""Tests of the robustness perturbations / training augmentations (modeling_ter/augmentation.py)."""

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.signal import welch

from modeling_ter.data.augmentation import (
    NoisyAudio,
    add_noise,
    babble,
    blank_frames,
    colored_noise,
    measured_snr_db,
    mix_at_snr,
    modality_dropout,
    noise_frames,
    swap_text,
)
from modeling_ter.processing.audio import load_audio

EMODB_CLIP = Path(__file__).resolve().parents[2] / "data" / "emodb" / "wav" / "03a01Fa.flac"
# Tolerance of the fitted log-log slope of the pink-noise power spectrum (Welch, 2**17 samples, 4 decades).
PINK_SLOPE_TOLERANCE = 0.1


def _spectrum_slope(noise: np.ndarray) -> float:
    """Least-squares slope of log10 PSD against log10 frequency, over the bins above the lowest 4."""
    frequencies, psd = welch(noise, fs=1.0, nperseg=8192)
    keep = slice(4, None)
    return float(np.polyfit(np.log10(frequencies[keep]), np.log10(psd[keep]), 1)[0])


@pytest.mark.parametrize("color", ["white", "pink"])
@pytest.mark.parametrize("snr_db", [20.0, 10.0, 5.0, 0.0, -5.0])
def test_add_noise_hits_the_requested_snr_on_real_speech(color, snr_db):
    clean = load_audio(EMODB_CLIP)
    noisy = add_noise(clean, snr_db, color, np.random.default_rng(0))
    assert noisy.shape == clean.shape and noisy.dtype == np.float32
    assert measured_snr_db(clean, noisy) == pytest.approx(snr_db, abs=0.1)


def test_add_noise_per_row_power_and_seed():
    rng = np.random.default_rng(1)
    clean = np.stack([np.sin(np.arange(4000) / 7.0), 0.01 * rng.standard_normal(4000)])
    noisy = add_noise(clean, 3.0, "pink", np.random.default_rng(5))
    np.testing.assert_allclose(measured_snr_db(clean, noisy), [3.0, 3.0], atol=0.1)
    np.testing.assert_array_equal(noisy, add_noise(clean, 3.0, "pink", np.random.default_rng(5)))
    assert not np.array_equal(noisy, add_noise(clean, 3.0, "pink", np.random.default_rng(6)))


def test_noise_spectrum_slopes():
    rng = np.random.default_rng(0)
    pink = colored_noise((2**17,), "pink", rng)
    white = colored_noise((2**17,), "white", rng)
    assert np.mean(pink**2) == pytest.approx(1.0) and np.mean(white**2) == pytest.approx(1.0)
    assert _spectrum_slope(pink) == pytest.approx(-1.0, abs=PINK_SLOPE_TOLERANCE)
    assert _spectrum_slope(white) == pytest.approx(0.0, abs=PINK_SLOPE_TOLERANCE)
    brown = colored_noise((2**17,), "brown", np.random.default_rng(2))
    assert _spectrum_slope(brown) == pytest.approx(-2.0, abs=PINK_SLOPE_TOLERANCE)


def test_babble_mixes_other_utterances_at_the_asked_snr():
    rng = np.random.default_rng(0)
    utterances = [rng.standard_normal(800 + 100 * i) for i in range(6)]
    noise = babble(utterances, 2, talkers=4, rng=np.random.default_rng(1))
    assert noise.shape == (1000,)
    # built from four of the other utterances (equal power each), never from the clip itself
    assert abs(np.corrcoef(noise, utterances[2])[0, 1]) < 0.1
    noisy = mix_at_snr(utterances[2], noise, 5.0)
    assert measured_snr_db(utterances[2], noisy) == pytest.approx(5.0, abs=1e-9)
    with pytest.raises(ValueError, match="4 other utterances"):
        babble(utterances[:3], 0, talkers=4)


def test_noisy_audio_reads_as_its_utterance_with_the_noise_its_fields_name():
    clean = load_audio(EMODB_CLIP)
    others = sorted(str(p) for p in EMODB_CLIP.parent.glob("*.flac") if p != EMODB_CLIP)[:2]
    pink = NoisyAudio(str(EMODB_CLIP), 5.0, "pink", seed=7).load()
    assert pink["sampling_rate"] == 16000 and pink["array"].dtype == np.float32 and pink["array"].shape == clean.shape
    assert measured_snr_db(clean, pink["array"]) == pytest.approx(5.0, abs=1e-3)
    assert np.array_equal(NoisyAudio(str(EMODB_CLIP), 5.0, "pink", seed=7).load()["array"], pink["array"])
    assert not np.array_equal(NoisyAudio(str(EMODB_CLIP), 5.0, "pink", seed=8).load()["array"], pink["array"])
    voices = NoisyAudio(str(EMODB_CLIP), 0.0, "babble", seed=7, talkers=tuple(others))
    assert voices.sources == (str(EMODB_CLIP), *others)
    noise = voices.load()["array"] - clean
    expected = babble([clean] + [load_audio(p) for p in others], 0, 2, np.random.default_rng(7))
    assert abs(np.corrcoef(noise, expected)[0, 1]) > 0.999  # the talkers' voices, not the clip's own
    with pytest.raises(ValueError, match="noise must be one of"):
        NoisyAudio(str(EMODB_CLIP), 5.0, "purple", seed=0)
    with pytest.raises(ValueError, match="noise='babble' only"):
        NoisyAudio(str(EMODB_CLIP), 5.0, "white", seed=0, talkers=tuple(others))
    with pytest.raises(ValueError, match="noise='babble' only"):
        NoisyAudio(str(EMODB_CLIP), 5.0, "babble", seed=0)


def test_add_noise_rejects_bad_input():
    with pytest.raises(ValueError, match="silent clip"):
        add_noise(np.zeros(100), 10.0)
    with pytest.raises(ValueError, match="color"):
        add_noise(np.ones(100), 10.0, "purple")
    with pytest.raises(ValueError, match="finite"):
        add_noise(np.ones(100), float("inf"))
    with pytest.raises(ValueError, match="Generator"):
        add_noise(np.ones(100), 10.0, rng=0)


def test_blank_frames_blanks_the_requested_share():
    frames = np.random.default_rng(0).uniform(-0.9, 0.9, (3, 8, 1, 4, 4)).astype(np.float32)
    half = blank_frames(frames, 0.5, np.random.default_rng(0))
    blanked = (half == -1.0).all(axis=(2, 3, 4))
    assert blanked.sum(1).tolist() == [4, 4, 4]
    np.testing.assert_array_equal(half[~blanked], frames[~blanked])
    assert (blank_frames(frames) == -1.0).all()
    assert not (frames == -1.0).any()  # the input is not modified
    with pytest.raises(ValueError, match="batch, frames"):
        blank_frames(frames[0])


def test_noise_frames_has_the_requested_sigma_and_stays_in_range():
    frames = np.zeros((2, 16, 1, 64, 64), dtype=np.float32)
    noisy = noise_frames(frames, 0.2, np.random.default_rng(0))
    assert noisy.dtype == np.float32 and noisy.shape == frames.shape
    assert noisy.std() == pytest.approx(0.2, rel=0.02)
    assert noise_frames(frames, 3.0, np.random.default_rng(0)).min() >= -1.0
    with pytest.raises(ValueError, match="sigma"):
        noise_frames(frames, -1.0)


@settings(max_examples=50, deadline=None)
@given(labels=st.lists(st.integers(0, 3), min_size=2, max_size=30), seed=st.integers(0, 2**32 - 1))
def test_swap_text_never_keeps_the_class(labels, seed):
    labels = np.array(labels)
    texts = [f"text of {i}" for i in range(len(labels))]
    texts[0] = None  # a missing text stays missing and is never a donor
    has_donor = [any(labels[j] != labels[i] for j in range(1, len(labels))) for i in range(1, len(labels))]
    if not all(has_donor):
        with pytest.raises(ValueError, match="two classes"):
            swap_text(texts, labels, np.random.default_rng(seed))
        return
    swapped, donors = swap_text(texts, labels, np.random.default_rng(seed))
    assert swapped[0] is None and donors[0] == -1
    for index in range(1, len(labels)):
        donor = donors[index]
        assert donor > 0 and labels[donor] != labels[index]
        assert swapped[index] == texts[donor]


@settings(max_examples=100, deadline=None)
@given(
    rows=st.lists(st.lists(st.booleans(), min_size=3, max_size=3).filter(any), min_size=1, max_size=40),
    p=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_modality_dropout_never_empties_a_sample(rows, p, seed):
    mask = np.array(rows)
    dropped = modality_dropout(mask, p, np.random.default_rng(seed))
    assert dropped.shape == mask.shape and dropped.dtype == bool
    assert dropped.any(1).all()
    assert not (dropped & ~mask).any()


def test_modality_dropout_rates_and_types():
    mask = torch.ones(20000, 3, dtype=torch.bool)
    dropped = modality_dropout(mask, 0.3, np.random.default_rng(0))
    assert isinstance(dropped, torch.Tensor) and dropped.dtype == torch.bool
    # P(kept) = 0.7 plus the rescue of fully dropped rows (0.3**3 of them get one modality back): 0.7 + 0.027/3.
    assert dropped.float().mean().item() == pytest.approx(0.7 + 0.3**3 / 3, abs=0.01)
    np.testing.assert_array_equal(modality_dropout(mask.numpy(), 0.0), mask.numpy())
    assert (modality_dropout(mask, 1.0, np.random.default_rng(0)).sum(1) == 1).all()
    with pytest.raises(ValueError, match="no modality present"):
        modality_dropout(np.array([[True, False], [False, False]]), 0.5)
    with pytest.raises(ValueError, match="probability"):
        modality_dropout(mask, 1.5)
