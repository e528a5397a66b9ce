"""Audio input/output for TER: decode files, down-mix to mono, resample with a polyphase filter.

Audio files are read with `soundfile` (libsndfile: WAV, FLAC, MP3, OGG); the audio track of a video container (MP4,
FLV, MKV, ...) with PyAV; resampling uses `scipy.signal.resample_poly`. librosa, torchaudio and `datasets.Audio`
decoding (which needs torchcodec) are deliberately avoided. This file also travels with a checkpoint as remote code:
each of those packages is imported only when it is needed (a waveform already at the model's rate needs none of
them), and a missing one raises an `ImportError` that says which `pip install` fixes it.

Examples:

```python
>>> import numpy as np
>>> from modeling_ter.processing.audio import prepare_waveform
>>> stereo = np.zeros((44100, 2), dtype=np.float32)  # 1 s, (T, C)
>>> prepare_waveform(stereo, sampling_rate=44100, target_rate=16000).shape
(16000,)

```
"""

from __future__ import annotations

import importlib
import logging
import math
import os
import struct
from pathlib import Path
from types import ModuleType

import numpy as np

logger = logging.getLogger(__name__)

AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg")
# Containers whose audio track PyAV decodes (`load_audio` falls back to PyAV for any other file libsndfile refuses).
CONTAINER_EXTENSIONS = (".mp4", ".m4a", ".flv", ".mkv", ".webm", ".avi", ".mov")
# A 2-D array is read as (T, C) or (C, T): the channel axis is the one no longer than this.
MAX_CHANNELS = 8


class AudioDecodeError(ValueError):
    """An audio file exists but cannot be decoded into finite, non-empty samples (zero-length, corrupt, truncated)."""


def import_optional(module: str, install: str, purpose: str) -> ModuleType:
    """Imports `module`, or raises an `ImportError` saying that `purpose` needs it and that `pip install {install}`
    fixes it. (`importlib` keeps these optional imports out of the remote-code import check of transformers.)"""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(f"{purpose} needs the `{module}` package: `pip install {install}`.") from error


def resample(waveform: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample a mono waveform `(T,)` from `orig_sr` to `target_sr` Hz with a polyphase FIR filter.

    Returns a float32 array of shape `(ceil(T * target_sr / orig_sr),)`; the input is returned unchanged (as
    float32) when both rates are equal.
    """
    for name, rate in (("orig_sr", orig_sr), ("target_sr", target_sr)):
        if not isinstance(rate, (int, np.integer)) or rate <= 0:
            raise ValueError(f"`{name}` must be a positive integer number of Hz, got {rate!r}.")
    waveform = np.asarray(waveform, dtype=np.float32)
    if waveform.ndim != 1:
        raise ValueError(f"`resample` expects a mono waveform of shape (T,), got shape {waveform.shape}.")
    if orig_sr == target_sr:
        return waveform
    signal = import_optional("scipy.signal", "scipy", "Resampling audio")
    g = math.gcd(int(orig_sr), int(target_sr))
    return signal.resample_poly(waveform, int(target_sr) // g, int(orig_sr) // g).astype(np.float32)


def whisper_log_mel(waveforms: list[np.ndarray], feature_extractor) -> list[np.ndarray]:
    """Whisper log-mel features of several mono waveforms in one batched STFT, equal to what
    `WhisperFeatureExtractor(waveform, padding="longest")` (its torch path) computes for each alone.

    Each waveform gets its own centre (reflect) padding of `n_fft // 2` samples before the batch is zero-padded to
    the longest, so no frame of a shorter clip sees another's padding; each clip keeps its `len // hop_length`
    frames and its own log-range floor (its maximum - 8). Needs `len(waveform) > n_fft // 2` (as `torch.stft`'s
    reflect padding does), `dither == 0` and no `do_normalize` (the caller checks, see `batched_log_mel_applies`).

    Returns:
        One `np.ndarray` of shape `(num_mel_bins, len(waveform) // hop_length)`, float32, per waveform.
    """
    import torch  # a dependency of the model anyway; imported here so that decoding alone does not need it

    n_fft, hop = feature_extractor.n_fft, feature_extractor.hop_length
    padded = [np.pad(np.asarray(w, dtype=np.float32), n_fft // 2, mode="reflect") for w in waveforms]
    batch = np.zeros((len(padded), max(len(p) for p in padded)), dtype=np.float32)
    for row, samples in zip(batch, padded):
        row[: len(samples)] = samples
    window = torch.hann_window(n_fft)
    stft = torch.stft(torch.from_numpy(batch), n_fft, hop, window=window, center=False, return_complex=True)
    magnitudes = (stft.abs() ** 2).contiguous()  # (batch, n_fft // 2 + 1, frames)
    mel_filters = torch.from_numpy(np.asarray(feature_extractor.mel_filters, dtype=np.float32))
    log_spec = torch.clamp(mel_filters.T @ magnitudes, min=1e-10).log10()  # (batch, num_mel_bins, frames)
    features = []
    for index, waveform in enumerate(waveforms):
        own = log_spec[index, :, : len(waveform) // hop]
        own = torch.maximum(own, own.max() - 8.0) if own.numel() else own
        features.append(((own + 4.0) / 4.0).numpy())
    return features


def batched_log_mel_applies(feature_extractor, num_samples: int) -> bool:
    """Whether `whisper_log_mel` computes exactly what `feature_extractor` does for a clip of `num_samples`."""
    return (
        all(hasattr(feature_extractor, name) for name in ("mel_filters", "n_fft", "hop_length", "n_samples"))
        and type(feature_extractor).__name__ == "WhisperFeatureExtractor"
        and not getattr(feature_extractor, "dither", 0.0)
        and not getattr(feature_extractor, "do_normalize", False)
        and num_samples > feature_extractor.n_fft // 2
    )


def _finalize(
    mono: np.ndarray, orig_sr: int, target_sr: int, source: str, fix: str, error: type[ValueError] = ValueError
) -> np.ndarray:
    """Check a mono waveform `(T,)` is non-empty and finite (else raise `error` naming `source` and `fix`), then
    resample it to `target_sr`."""
    if mono.size == 0:
        raise error(f"{source} holds no samples: {fix}.")
    finite = np.isfinite(mono)
    if not finite.all():
        raise error(f"{source} contains {int(mono.size - finite.sum())} NaN/inf samples: {fix}.")
    return resample(mono, orig_sr, target_sr)


def prepare_waveform(array: np.ndarray, sampling_rate: int, target_rate: int = 16000) -> np.ndarray:
    """Turn an in-memory waveform into float32 mono at `target_rate` Hz.

    Args:
        array (`np.ndarray` of shape `(T,)`, `(T, C)` or `(C, T)`):
            The samples; in a 2-D array the channel axis is the one of length <= 8, channels are averaged.
        sampling_rate (`int`): the rate of `array` in Hz.
        target_rate (`int`, *optional*, defaults to 16000): the rate to resample to.

    Returns:
        `np.ndarray` of shape `(T',)`, float32.
    """
    array = np.asarray(array)
    source = f"The waveform of shape {array.shape}"
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"The waveform must hold numbers, got dtype {array.dtype}.")
    if np.issubdtype(array.dtype, np.integer):
        # PCM integers -> [-1, 1), as soundfile would return them.
        array = array.astype(np.float32) / float(np.iinfo(array.dtype).max + 1)
    if array.ndim == 2:
        time_first, channel_first = array.shape[1] <= MAX_CHANNELS, array.shape[0] <= MAX_CHANNELS
        if time_first == channel_first:
            raise ValueError(
                f"Cannot tell the channel axis of a waveform of shape {array.shape}: give (T,), (T, C) or (C, T) "
                f"with C <= {MAX_CHANNELS} and T > {MAX_CHANNELS}, or down-mix it yourself."
            )
        array = array.mean(axis=1 if time_first else 0)
    elif array.ndim != 1:
        raise ValueError(f"A waveform must have shape (T,), (T, C) or (C, T); got shape {array.shape}.")
    fix = "pass a non-empty waveform of finite samples (clean NaN/inf with `np.nan_to_num`), or drop its audio"
    return _finalize(array.astype(np.float32), sampling_rate, target_rate, source, fix)


def _wav_missing_bytes(path: Path) -> int:
    """Bytes missing from a RIFF/WAVE file's `data` chunk (libsndfile reads truncated WAVs silently); 0 if complete
    or not a plain RIFF file."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        header = f.read(12)
        if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"WAVE":
            return 0
        offset = 12
        while offset + 8 <= size:
            f.seek(offset)
            chunk_id, chunk_size = struct.unpack("<4sI", f.read(8))
            if chunk_id == b"data":
                # Streamed writers leave the size at 0 or 0xFFFFFFFF: nothing to compare then.
                if chunk_size in (0, 0xFFFFFFFF):
                    return 0
                return max(0, chunk_size - (size - offset - 8))
            offset += 8 + chunk_size + (chunk_size & 1)
    return 0


def load_container_audio(path: str | os.PathLike, sampling_rate: int = 16000) -> np.ndarray:
    """Decode the first audio track of a media container (MP4, FLV, MKV, ...) with PyAV into float32 mono.

    Returns:
        `np.ndarray` of shape `(T,)` at `sampling_rate` Hz.

    Raises:
        FileNotFoundError: the file does not exist.
        AudioDecodeError: the file cannot be opened, has no audio track, or its audio does not decode.
        ImportError: PyAV is not installed.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Media file not found: '{path}'. Fix the path, or drop its audio modality.")
    av = import_optional("av", "av", f"Reading the audio track of '{path.name}'")
    fix = "check that it is a complete media file with an audio track, or drop its audio modality"
    chunks, orig_sr = [], None
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise AudioDecodeError(f"The file '{path}' has no audio track: {fix}.")
            stream = container.streams.audio[0]
            for frame in container.decode(stream):
                samples = frame.to_ndarray()  # (channels, samples), or (1, samples * channels) when interleaved
                if frame.format.is_packed:
                    samples = samples.reshape(-1, len(frame.layout.channels)).T
                if np.issubdtype(samples.dtype, np.integer):
                    samples = samples.astype(np.float32) / float(np.iinfo(samples.dtype).max + 1)
                chunks.append(samples.astype(np.float32).mean(axis=0))
                orig_sr = frame.sample_rate
    except av.FFmpegError as err:
        raise AudioDecodeError(f"Cannot decode the audio track of '{path}' ({err}): {fix}.") from err
    mono = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)
    return _finalize(
        mono, orig_sr or sampling_rate, sampling_rate, f"The audio track of '{path}'", fix, AudioDecodeError
    )


def load_audio(path: str | os.PathLike, sampling_rate: int = 16000) -> np.ndarray:
    """Decode an audio file (WAV, FLAC, MP3, OGG with soundfile) or the audio track of a media container (MP4, FLV,
    MKV, ... with PyAV) into float32 mono at `sampling_rate` Hz.

    Returns:
        `np.ndarray` of shape `(T,)`.

    Raises:
        FileNotFoundError: the file does not exist.
        AudioDecodeError: the file is empty, corrupt, truncated, or holds NaN/inf samples.
        ImportError: the decoder this file needs (soundfile, or PyAV for a container) is not installed.
    """
    path = Path(path)
    if path.suffix.lower() in CONTAINER_EXTENSIONS:
        return load_container_audio(path, sampling_rate)
    if not path.is_file():
        raise FileNotFoundError(
            f"Audio file not found: '{path}'. Fix the path, or drop the audio modality for that row."
        )
    fix = "re-encode it (e.g. `ffmpeg -i in -ar 16000 -ac 1 out.flac`), or drop the audio modality for that row"
    if path.stat().st_size == 0:
        raise AudioDecodeError(f"Audio file '{path}' is empty (0 bytes): {fix}.")
    sf = import_optional("soundfile", "soundfile", "Reading audio files")
    try:
        info = sf.info(str(path))
        data, orig_sr = sf.read(str(path), dtype="float32", always_2d=True)  # (T, C)
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        raise AudioDecodeError(f"Cannot decode audio file '{path}' ({err}): {fix}.") from err
    missing = _wav_missing_bytes(path)
    # Compressed formats may only estimate their length from the header (MP3 without a Xing frame): allow 1 % or
    # two MP3 frames (2 x 1152 samples) of slack before calling the file truncated.
    shortfall = info.frames - data.shape[0]
    if missing or shortfall > max(0.01 * info.frames, 2304):
        detail = (
            f"{missing} bytes of its data chunk are missing"
            if missing
            else (f"its header announces {info.frames} frames but only {data.shape[0]} decode")
        )
        raise AudioDecodeError(f"Audio file '{path}' is truncated ({detail}): {fix}.")
    return _finalize(data.mean(axis=1), orig_sr, sampling_rate, f"Audio file '{path}'", fix, AudioDecodeError)
