"""Input perturbations of the robustness protocol (design notes §6), also usable as training augmentation.

The same plain functions serve `scripts/robustness.py` (test-time corruptions) and training (noise, modality
dropout), so a model can be trained against exactly the corruptions it is tested on:

- `add_noise`: white or pink (1/f) Gaussian noise at an exact signal-to-noise ratio;
- `NoisyAudio`: an utterance with noise or babble mixed in, read like a file (a feature-cache item);
- `blank_frames` / `noise_frames`: corrupted face frames `(batch, frames, 1, height, width)`;
- `swap_text`: each sample's transcript replaced by that of a sample of another class (RCML's conflictive sets);
- `modality_dropout`: random modality masking that never leaves a sample without a modality.

Every function takes a `numpy.random.Generator` (`rng`) so that a fixed seed gives the same perturbation.

Examples:

```python
>>> import numpy as np
>>> from modeling_ter.data.augmentation import add_noise, measured_snr_db
>>> rng = np.random.default_rng(0)
>>> clean = np.sin(np.linspace(0, 200 * np.pi, 16000)).astype(np.float32)
>>> round(measured_snr_db(clean, add_noise(clean, 5.0, "pink", rng)), 3)
5.0

```
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Optional, TypeVar, Union

import numpy as np
import torch

from ..processing.audio import load_audio

# Power spectra: white flat, pink ∝ 1/f, brown ∝ 1/f².
NOISE_COLORS = ("white", "pink", "brown")
BABBLE = "babble"
# Bumped when what a `NoisyAudio` of the same fields sounds like changes, so that its cached features are not read.
NOISY_AUDIO_VERSION = 1
# The grey value of a blanked face frame: black, i.e. pixel 0 after the FER2013 normalisation (x / 255 - 0.5) * 2.
BLANK_FACE_VALUE = -1.0
FACE_VALUE_RANGE = (-1.0, 1.0)

MaskT = TypeVar("MaskT", np.ndarray, torch.Tensor)
T = TypeVar("T")


def _check_rng(rng: Optional[np.random.Generator]) -> np.random.Generator:
    if rng is None:
        return np.random.default_rng()
    if not isinstance(rng, np.random.Generator):
        raise ValueError(
            f"rng must be a numpy.random.Generator (np.random.default_rng(seed)), got {type(rng).__name__}."
        )
    return rng


def colored_noise(shape: Sequence[int], color: str, rng: np.random.Generator) -> np.ndarray:
    """Unit-variance Gaussian noise of `shape` (float64), coloured along the last axis.

    `"white"` has a flat power spectrum; `"pink"` power ∝ 1/f and `"brown"` power ∝ 1/f²: white noise shaped in
    the frequency domain by `f ** -0.5` or `f ** -1` (the DC bin set to 0), then normalised to unit variance per row.
    """
    if color not in NOISE_COLORS:
        raise ValueError(f"color must be one of {NOISE_COLORS}, got {color!r}.")
    white = rng.standard_normal(tuple(shape))
    if color == "white":
        noise = white
    else:
        length = white.shape[-1]
        spectrum = np.fft.rfft(white, axis=-1)
        frequencies = np.fft.rfftfreq(length)
        scale = np.zeros_like(frequencies)
        scale[1:] = frequencies[1:] ** (-0.5 if color == "pink" else -1.0)
        noise = np.fft.irfft(spectrum * scale, n=length, axis=-1)
        noise -= noise.mean(axis=-1, keepdims=True)
    return noise / np.sqrt(np.mean(noise**2, axis=-1, keepdims=True))


def signal_power(waveform: np.ndarray) -> np.ndarray:
    """Mean power `mean(x**2)` over the last axis of `(..., T)`; returns `(...)`."""
    return np.mean(np.asarray(waveform, dtype=np.float64) ** 2, axis=-1)


def measured_snr_db(clean: np.ndarray, noisy: np.ndarray) -> Union[float, np.ndarray]:
    """SNR in dB of `noisy` against `clean` (both `(..., T)`): `10 log10(P(clean) / P(noisy - clean))` per row."""
    clean = np.asarray(clean, dtype=np.float64)
    snr = 10.0 * np.log10(signal_power(clean) / signal_power(np.asarray(noisy, dtype=np.float64) - clean))
    return float(snr) if np.ndim(snr) == 0 else snr


def add_noise(
    waveform: np.ndarray, snr_db: float, color: str = "white", rng: Optional[np.random.Generator] = None
) -> np.ndarray:
    """Adds Gaussian noise so that the SNR against the signal's own power is exactly `snr_db`.

    The signal power is the mean of `x**2` over the whole clip (silent padding included); the noise is scaled to
    `P_signal / 10**(snr_db / 10)` exactly, per row.

    Args:
        waveform: `(T,)` or `(..., T)` audio; each row gets its own noise at its own power.
        snr_db: the signal-to-noise ratio in dB (finite; may be negative).
        color: one of `NOISE_COLORS`.
        rng: the random generator (a fixed seed gives the same noise).

    Returns:
        The noisy waveform, same shape and dtype (float32 for non-float input).
    """
    waveform = np.asarray(waveform)
    if waveform.ndim == 0 or waveform.shape[-1] < 2:
        raise ValueError(f"add_noise needs a waveform (..., T) with T >= 2 samples, got shape {waveform.shape}.")
    if not np.isfinite(snr_db):
        raise ValueError(f"snr_db must be a finite number of dB, got {snr_db}; to drop the audio, mask the modality.")
    power = signal_power(waveform)
    if not np.all(np.isfinite(power)) or np.any(power <= 0):
        raise ValueError(
            "add_noise needs a finite waveform with non-zero power: the SNR of a silent clip is undefined. "
            "Drop silent clips (or mask their audio) before adding noise."
        )
    return mix_at_snr(waveform, colored_noise(waveform.shape, color, _check_rng(rng)), snr_db)


def mix_at_snr(waveform: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """`waveform + noise`, the noise `(..., T)` scaled so that the SNR against the signal's own power is exactly
    `snr_db` per row; same shape and dtype as `waveform` (float32 for non-float input)."""
    waveform, noise = np.asarray(waveform), np.asarray(noise, dtype=np.float64)
    if noise.shape != waveform.shape or not np.all(signal_power(noise) > 0):
        raise ValueError(f"The noise must have the waveform's shape {waveform.shape} and non-zero power per row.")
    scale = np.sqrt(signal_power(waveform) / 10.0 ** (snr_db / 10.0) / signal_power(noise))
    dtype = waveform.dtype if np.issubdtype(waveform.dtype, np.floating) else np.float32
    return (waveform.astype(np.float64) + noise * scale[..., None]).astype(dtype)


def babble(
    waveforms: Sequence[np.ndarray], index: int, talkers: int = 4, rng: Optional[np.random.Generator] = None
) -> np.ndarray:
    """Babble noise for `waveforms[index]`: the sum of `talkers` other utterances of the list (each looped or cut to
    that clip's length, at equal power), as `(T,)` float64."""
    rng = _check_rng(rng)
    length = len(waveforms[index])
    others = [i for i in range(len(waveforms)) if i != index and waveforms[i] is not None]
    if len(others) < talkers:
        raise ValueError(f"Babble of {talkers} talkers needs {talkers} other utterances, got {len(others)}.")
    mixture = np.zeros(length)
    for other in rng.choice(others, size=talkers, replace=False):
        voice = np.resize(np.asarray(waveforms[other], dtype=np.float64), length)
        mixture += voice / np.sqrt(max(float(signal_power(voice)), 1e-12))
    return mixture


@dataclass(frozen=True)
class NoisyAudio:
    """An utterance with noise mixed in at an exact SNR, synthesised when read: an item of the feature cache like an
    audio file (its key holds `identity()` and the keys of its `sources`), e.g. a noisy copy of `--augment noise`.

    Attributes:
        path: the utterance's audio file.
        snr_db: the SNR of the mixture against the utterance's own power.
        noise: one of `NOISE_COLORS` (`colored_noise`) or `"babble"` (the `talkers` at equal power, `babble`).
        seed: the seed of the noise's draws, so the same fields give the same samples.
        talkers: for babble, the other utterances' audio files.
        sampling_rate: the rate the files are read and mixed at.
    """

    path: str
    snr_db: float
    noise: str
    seed: int
    talkers: tuple[str, ...] = ()
    sampling_rate: int = 16000

    def __post_init__(self):
        if self.noise not in (*NOISE_COLORS, BABBLE):
            raise ValueError(f"noise must be one of {(*NOISE_COLORS, BABBLE)}, got {self.noise!r}.")
        if (self.noise == BABBLE) != bool(self.talkers):
            raise ValueError(f"talkers are the voices of babble noise: give them with noise='babble' only ({self}).")

    @property
    def sources(self) -> tuple[str, ...]:
        """The files it reads, the utterance first (the mixture has its length)."""
        return (self.path, *self.talkers)

    def identity(self) -> list[Any]:
        """What it is besides its files' contents (JSON-serialisable)."""
        return ["noisy_audio", NOISY_AUDIO_VERSION, self.snr_db, self.noise, self.seed, self.sampling_rate]

    def load(self) -> dict[str, Any]:
        """`{"array": (T,) float32, "sampling_rate": ...}`, as a processor takes a waveform."""
        rng = np.random.default_rng(self.seed)
        waveform = load_audio(self.path, self.sampling_rate)
        if self.noise == BABBLE:
            voices = [waveform] + [load_audio(path, self.sampling_rate) for path in self.talkers]
            noise = babble(voices, 0, len(self.talkers), rng)
        else:
            noise = colored_noise(waveform.shape, self.noise, rng)
        return {"array": mix_at_snr(waveform, noise, self.snr_db), "sampling_rate": self.sampling_rate}


def _check_frames(pixel_values: np.ndarray) -> np.ndarray:
    pixel_values = np.asarray(pixel_values)
    if pixel_values.ndim != 5:
        raise ValueError(
            f"Face frames must have shape (batch, frames, channels, height, width) as the processor's "
            f"video_pixel_values, got shape {pixel_values.shape}."
        )
    return pixel_values


def _chosen_frames(shape: tuple[int, ...], fraction: float, rng: np.random.Generator) -> np.ndarray:
    """`(batch, frames)` bool: `round(fraction * frames)` distinct frames drawn per sample."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must lie in [0, 1], got {fraction}.")
    batch_size, num_frames = shape[:2]
    count = int(round(fraction * num_frames))
    ranks = np.argsort(rng.random((batch_size, num_frames)), axis=1)
    return ranks < count


def blank_frames(
    pixel_values: np.ndarray,
    fraction: float = 1.0,
    rng: Optional[np.random.Generator] = None,
    fill_value: float = BLANK_FACE_VALUE,
) -> np.ndarray:
    """Blanks a share of each sample's face frames.

    Args:
        pixel_values: `(batch, frames, 1, height, width)` normalised face crops (the processor's
            `video_pixel_values`).
        fraction: share of the frames blanked per sample (`1.0`: all of them).
        rng: picks which frames (only used when `0 < fraction < 1`).
        fill_value: the value written, by default black (`-1` after the FER2013 normalisation).

    Returns:
        A copy `(batch, frames, 1, height, width)` with the chosen frames set to `fill_value`.
    """
    pixel_values = _check_frames(pixel_values)
    chosen = _chosen_frames(pixel_values.shape, fraction, _check_rng(rng))
    blanked = pixel_values.copy()
    blanked[chosen] = fill_value
    return blanked


def noise_frames(
    pixel_values: np.ndarray,
    sigma: float,
    rng: Optional[np.random.Generator] = None,
    value_range: tuple[float, float] = FACE_VALUE_RANGE,
) -> np.ndarray:
    """Adds Gaussian pixel noise of standard deviation `sigma` to every face frame, clipped to `value_range`.

    Args:
        pixel_values: `(batch, frames, 1, height, width)` normalised face crops (in [-1, 1] for FER2013).
        sigma: noise standard deviation in normalised units (`0.5` is a quarter of the [-1, 1] range).

    Returns:
        The noisy copy, same shape and dtype.
    """
    pixel_values = _check_frames(pixel_values)
    if not sigma >= 0:
        raise ValueError(f"sigma must be a non-negative standard deviation, got {sigma}.")
    noise = _check_rng(rng).standard_normal(pixel_values.shape) * sigma
    return np.clip(pixel_values + noise, *value_range).astype(pixel_values.dtype)


def swap_text(
    texts: Sequence[Optional[T]], labels: Sequence[int], rng: Optional[np.random.Generator] = None
) -> tuple[list[Optional[T]], np.ndarray]:
    """Replaces every sample's text by that of a random sample of a *different* class (RCML's conflictive sets).

    Works for any per-sample modality input (transcripts, audio or video paths). A missing entry (`None`) stays
    missing and is never a donor.

    Args:
        texts: `(N,)` per-sample inputs, `None` where missing.
        labels: `(N,)` class ids.
        rng: picks the donors.

    Returns:
        `(swapped, donors)`: the new `(N,)` list and the donor index of each sample (`-1` where missing).
    """
    texts, labels = list(texts), np.asarray(labels)
    if labels.shape != (len(texts),):
        raise ValueError(
            f"swap_text needs one label per text: got {len(texts)} texts and labels of shape {labels.shape}."
        )
    rng = _check_rng(rng)
    available = np.array([text is not None for text in texts], dtype=bool)
    donors = np.full(len(texts), -1, dtype=np.int64)
    for index in np.flatnonzero(available):
        candidates = np.flatnonzero(available & (labels != labels[index]))
        if len(candidates) == 0:
            raise ValueError(
                f"Sample {index} (class {labels[index]}) has no donor of another class with a text; swap_text needs "
                "samples of at least two classes."
            )
        donors[index] = rng.choice(candidates)
    return [texts[d] if d >= 0 else None for d in donors], donors


def modality_dropout(modality_mask: MaskT, p: float, rng: Optional[np.random.Generator] = None) -> MaskT:
    """Drops each present modality with probability `p`, never the last one of a sample.

    A sample whose draw would drop all its modalities keeps one of them, chosen at random, so the model always has
    an input (and `p = 1` keeps exactly one modality per sample).

    Args:
        modality_mask: `(batch, num_modalities)` bool, numpy or torch (as the processor's `modality_mask`).
        p: drop probability in [0, 1].
        rng: the random generator.

    Returns:
        The new mask, same type, shape and device, `True` only where the input mask was.
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"The modality dropout probability p must lie in [0, 1], got {p}.")
    is_tensor = isinstance(modality_mask, torch.Tensor)
    mask = (modality_mask.detach().cpu().numpy() if is_tensor else np.asarray(modality_mask)).astype(bool)
    if mask.ndim != 2:
        raise ValueError(f"modality_mask must have shape (batch, num_modalities), got {mask.shape}.")
    empty = np.flatnonzero(~mask.any(1))
    if len(empty):
        raise ValueError(f"Samples {empty.tolist()} have no modality present before dropout; drop those samples.")
    rng = _check_rng(rng)
    kept = mask & (rng.random(mask.shape) >= p)
    for row in np.flatnonzero(~kept.any(1)):
        kept[row, rng.choice(np.flatnonzero(mask[row]))] = True
    if is_tensor:
        return torch.as_tensor(kept, device=modality_mask.device).to(modality_mask.dtype)
    return kept


__all__ = [
    "BABBLE",
    "NOISE_COLORS",
    "NOISY_AUDIO_VERSION",
    "NoisyAudio",
    "babble",
    "mix_at_snr",
    "add_noise",
    "blank_frames",
    "colored_noise",
    "measured_snr_db",
    "modality_dropout",
    "noise_frames",
    "signal_power",
    "swap_text",
]
