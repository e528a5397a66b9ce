"""TER processor: audio files or arrays, transcripts and face videos -> the inputs of `TERForEmotionRecognition`.

`save_pretrained` copies this file and its siblings `audio.py` and `video.py` next to the checkpoint as remote code
(`auto_map` in processor_config.json), so it imports nothing else of the `modeling_ter` package; `modeling_ter`
registers it with `AutoProcessor` for `TERConfig`. Audio arrays and text need only the dependencies of transformers;
audio files need soundfile (PyAV for a video container's audio track), resampling needs scipy, face video needs PyAV
and OpenCV: each is imported when first needed.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any, Optional, Union

import numpy as np
from transformers import AutoFeatureExtractor, AutoTokenizer, BatchFeature
from transformers.processing_utils import ProcessorMixin
from transformers.utils import cached_file

from .audio import batched_log_mel_applies, load_audio, prepare_waveform, whisper_log_mel

# The face crops' side; `video.py` (PyAV + OpenCV) is imported only when a video is processed.
FACE_IMAGE_SIZE = 64
# `MODALITIES` and `FACE_CNN_MODEL_TYPE` of configuration_ter.py, which this remote-code file cannot import (it
# travels with the processor, not with the model); tests/processing/test_processing.py checks that they agree.
MODALITIES = ("audio", "text", "video")
FACE_CNN_MODEL_TYPE = "ter_face_cnn"

logger = logging.getLogger(__name__)

AudioInput = Union[str, os.PathLike, np.ndarray, Mapping[str, Any], None]
VideoInput = Union[str, os.PathLike, np.ndarray, None]


class TERProcessor(ProcessorMixin):
    r"""
    Turns a batch of raw samples into the inputs of [`TERForEmotionRecognition`].

    It holds an audio feature extractor (e.g. `WhisperFeatureExtractor`, or `Wav2Vec2FeatureExtractor` for waveform
    models), a tokenizer, and the face-video settings. Each sample may lack any modality: such a sample gets a
    minimal placeholder input (padding, with one position marked real so that every encoder sees a non-empty input)
    and `False` in `modality_mask`, so the model gives it the vacuous opinion, which drops out of the fusion. A
    modality that no sample of the batch has is left out of the output altogether (the model skips its encoder).

    Audio comes at any rate, mono or multi-channel, from a file (WAV, FLAC, MP3, OGG) or an array, and is resampled
    to the feature extractor's rate. Whisper features keep the clip's real length (at most 30 s), padded only to the
    longest clip of the batch, with a per-mel-frame `audio_attention_mask`. Video is a file PyAV decodes (or an
    array of RGB frames `(num_video_frames, height, width, 3)`): `num_frames` uniformly sampled frames, the largest
    face of each cropped to `image_size` grey pixels for the FER2013 face CNN. A video in which no face is found has
    its video modality masked for that sample (a warning is logged). A missing or corrupt audio or video file raises
    (`FileNotFoundError` or `ValueError` naming the file): the caller decides whether to drop the sample.

    Args:
        feature_extractor ([`FeatureExtractionMixin`], *optional*): The audio feature extractor; required with audio.
        tokenizer ([`PreTrainedTokenizerBase`], *optional*): The text tokenizer; required with text.
        modalities (`tuple[str, ...]`, *optional*, defaults to `("audio", "text", "video")`): The model's modalities,
            in the order of `TERConfig.modalities` (the columns of `modality_mask`).
        num_frames (`int`, *optional*, defaults to 16): Frames sampled per video.
        image_size (`int`, *optional*, defaults to 64): Side of the square grey face crops.

    Examples:

    ```python
    >>> from modeling_ter.encoders.defaults import build_default_processor
    >>> processor = build_default_processor()  # doctest: +SKIP
    >>> inputs = processor(audio=["a.flac", None], text=["I am so happy!", "Leave me alone."])  # doctest: +SKIP
    >>> inputs["modality_mask"]  # doctest: +SKIP
    tensor([[ True,  True, False],
            [False,  True, False]])
    ```
    """

    def __init__(
        self,
        feature_extractor=None,
        tokenizer=None,
        modalities: Sequence[str] = MODALITIES,
        num_frames: int = 16,
        image_size: int = FACE_IMAGE_SIZE,
    ):
        modalities = tuple(modalities)
        in_order = [m for m in MODALITIES if m in modalities]
        if not modalities or list(modalities) != in_order:
            raise ValueError(
                f"modalities must be a non-empty subset of {list(MODALITIES)} in that order, got {list(modalities)}."
            )
        parts = {"feature_extractor": ("audio", feature_extractor), "tokenizer": ("text", tokenizer)}
        for name, (modality, part) in parts.items():
            if (modality in modalities) != (part is not None):
                raise ValueError(
                    f"A TERProcessor has a {name} exactly when it has the {modality} modality; got modalities="
                    f"{list(modalities)} and {name}={type(part).__name__ if part is not None else None}."
                )
        if num_frames < 1 or image_size < 1:
            raise ValueError(f"num_frames and image_size must be positive, got {num_frames} and {image_size}.")
        held = tuple(name for name, (_, part) in parts.items() if part is not None)
        # ProcessorMixin checks, saves and lists the parts named by `get_attributes()`, all of them required; a model
        # without audio (or text) has no feature extractor (or tokenizer), so this instance names only the parts it
        # holds. (No public way to declare a part optional; the save/load round trip of a text-only and an
        # audio-only processor in tests/processing fails if upstream stops reading `get_attributes` this way.)
        self.get_attributes = functools.partial(list, held)
        super().__init__(**{name: parts[name][1] for name in held})
        for name in parts.keys() - set(held):
            setattr(self, name, None)
        self.modalities = modalities
        self.num_frames = num_frames
        self.image_size = image_size

    @classmethod
    def from_encoders_pretrained(
        cls,
        audio: Optional[Union[str, os.PathLike]] = None,
        text: Optional[Union[str, os.PathLike]] = None,
        video: Optional[Union[str, os.PathLike]] = None,
        **kwargs: Any,
    ) -> "TERProcessor":
        """The processor for a model built by `TERForEmotionRecognition.from_encoders_pretrained` from the same sources.

        Args:
            audio: checkpoint (Hub ID or folder) with a feature extractor (`preprocessor_config.json`).
            text: checkpoint with a tokenizer.
            video: a `ter_face_cnn` folder; its `image_size` is used.
            kwargs: further `TERProcessor` arguments (`num_frames`, ...).
        """
        sources = {"audio": audio, "text": text, "video": video}
        modalities = tuple(m for m in MODALITIES if sources[m] is not None)
        if video is not None:
            with open(cached_file(os.fspath(video), "config.json"), encoding="utf-8") as config_file:
                video_config = json.load(config_file)
            if video_config.get("model_type") != FACE_CNN_MODEL_TYPE:
                raise ValueError(
                    f"TERProcessor prepares grey face crops for the `{FACE_CNN_MODEL_TYPE}` face encoder, but the "
                    f"video checkpoint {video} is a {video_config.get('model_type')!r} model; use a {FACE_CNN_MODEL_TYPE} "
                    "folder (e.g. modeling_ter/encoders/fer2013_mini_xception)."
                )
            kwargs.setdefault("image_size", video_config.get("image_size", FACE_IMAGE_SIZE))
        return cls(
            feature_extractor=AutoFeatureExtractor.from_pretrained(os.fspath(audio)) if audio is not None else None,
            tokenizer=AutoTokenizer.from_pretrained(os.fspath(text)) if text is not None else None,
            modalities=modalities,
            **kwargs,
        )

    @classmethod
    def _get_arguments_from_pretrained(cls, pretrained_model_name_or_path, processor_dict=None, **kwargs):
        """Loads the parts the saved modalities need: `[feature_extractor or None, tokenizer or None]`.

        Overrides `ProcessorMixin`'s private hook (upstream loads every part of `__init__`'s signature, and one of
        ours may be absent); tests/processing/test_processing.py fails when upstream's hook changes.
        """
        modalities = (processor_dict or {}).get("modalities", MODALITIES)
        source = pretrained_model_name_or_path
        return [
            AutoFeatureExtractor.from_pretrained(source, **kwargs) if "audio" in modalities else None,
            AutoTokenizer.from_pretrained(source, **kwargs) if "text" in modalities else None,
        ]

    @property
    def model_input_names(self) -> list[str]:
        """The model inputs this processor can return."""
        names = []
        if self.feature_extractor is not None:
            names += [f"audio_{self.feature_extractor.model_input_names[0]}", "audio_attention_mask"]
        if self.tokenizer is not None:
            names += [f"text_{name}" for name in self.tokenizer.model_input_names]
        if "video" in self.modalities:
            names += ["video_pixel_values", "video_frame_mask"]
        return names + ["modality_mask"]

    def __call__(
        self,
        audio: Union[AudioInput, Sequence[AudioInput]] = None,
        text: Union[str, None, Sequence[Optional[str]]] = None,
        video: Union[VideoInput, Sequence[VideoInput]] = None,
        sampling_rate: Union[int, None, Sequence[Optional[int]]] = None,
        return_tensors: Optional[str] = "pt",
    ) -> BatchFeature:
        """Prepares a batch; every modality is a list with one entry per sample (`None`: missing), or one sample.

        Args:
            audio: per sample a file path, a waveform `(T,)`, `(T, C)` or `(C, T)`, or a dict with `array` and
                `sampling_rate` (as `datasets` decodes audio).
            text: per sample a string; an empty or blank string counts as missing.
            video: per sample a video file path (or an RGB frame array `(num_video_frames, height, width, 3)`).
            sampling_rate: the rate of waveform arrays, one for all samples or one per sample.
            return_tensors: `"pt"`, `"np"` or `None` (lists).

        Returns:
            [`BatchFeature`] with `audio_input_features` `(batch, num_mel_bins, frames)` (Whisper) or
            `audio_input_values` `(batch, samples)` (waveform models) and `audio_attention_mask`; `text_input_ids`,
            `text_attention_mask` (and `text_token_type_ids` when the tokenizer gives them) `(batch, tokens)`;
            `video_pixel_values` `(batch, num_frames, 1, image_size, image_size)` and `video_frame_mask`
            `(batch, num_frames)`; `modality_mask` `(batch, num_modalities)` bool, columns in `self.modalities` order.
        """
        given = {m: value for m, value in (("audio", audio), ("text", text), ("video", video)) if value is not None}
        if not given:
            raise ValueError(
                f"Give at least one of audio=, text= or video= (this processor has {list(self.modalities)})."
            )
        unknown = sorted(set(given) - set(self.modalities))
        if unknown:
            raise ValueError(f"Got {unknown} inputs, but this processor's modalities are {list(self.modalities)}.")
        batches = {m: list(value) if isinstance(value, (list, tuple)) else [value] for m, value in given.items()}
        sizes = {m: len(batch) for m, batch in batches.items()}
        batch_size = next(iter(sizes.values()))
        if batch_size == 0 or any(size != batch_size for size in sizes.values()):
            raise ValueError(
                f"Every given modality needs one entry per sample (None for missing); got lengths {sizes}."
            )
        rates = list(sampling_rate) if isinstance(sampling_rate, (list, tuple)) else [sampling_rate] * batch_size
        if len(rates) != batch_size:
            raise ValueError(f"sampling_rate has {len(rates)} entries for {batch_size} samples; give one per sample.")
        # Audio first, for the whole batch (one STFT for all the clips Whisper features allow, see `whisper_log_mel`).
        audio = self._encode_audio_batch(batches["audio"], rates) if "audio" in batches else None
        examples = [
            self._encode_example({m: batch[index] for m, batch in batches.items() if m != "audio"}, rates[index])
            for index in range(batch_size)
        ]
        for index, encoded in enumerate(audio or []):
            if encoded is not None:
                examples[index] = {**{f"audio_{n}": a[None] for n, a in encoded.items()}, **examples[index]}
                examples[index]["modality_mask"][0, self.modalities.index("audio")] = True
        return self.pad(examples, return_tensors=return_tensors)

    def _encode_example(self, example: dict[str, Any], sampling_rate: Optional[int]) -> dict[str, np.ndarray]:
        """One sample's arrays, each with a leading batch axis of 1; only the present modalities have entries."""
        encoders = {"audio": self._encode_audio, "text": self._encode_text, "video": self._encode_video}
        features, present = {}, []
        for modality in self.modalities:
            value = example.get(modality)
            encoded = None if value is None else encoders[modality](value, sampling_rate)
            present.append(encoded is not None)
            features.update({f"{modality}_{name}": array[None] for name, array in (encoded or {}).items()})
        features["modality_mask"] = np.array([present], dtype=bool)
        return features

    def load_waveform(self, value: AudioInput, sampling_rate: Optional[int] = None) -> np.ndarray:
        """One audio sample as a mono waveform `(T,)` at the feature extractor's rate.

        Args:
            value: a file path (audio file, or a video container whose audio track is decoded), a waveform `(T,)`,
                `(T, C)` or `(C, T)`, or a dict with `array` (or `raw`) and `sampling_rate` (or with `path`).
            sampling_rate: the rate of a waveform array.
        """
        target_rate = self.feature_extractor.sampling_rate
        if isinstance(value, Mapping):
            if "array" not in value and "raw" not in value and "path" in value:
                value = value["path"]
            else:
                value, sampling_rate = value.get("array", value.get("raw")), value.get("sampling_rate")
        if isinstance(value, (str, os.PathLike)):
            return load_audio(value, sampling_rate=target_rate)
        if sampling_rate is None:
            raise ValueError(
                "An audio waveform given as an array needs its rate: pass sampling_rate= (or "
                "{'array': ..., 'sampling_rate': ...})."
            )
        return prepare_waveform(np.asarray(value), sampling_rate, target_rate)

    def _encode_audio_batch(
        self, values: Sequence[AudioInput], rates: Sequence[Optional[int]]
    ) -> list[Optional[dict[str, np.ndarray]]]:
        """Every audio sample's arrays (without a batch axis), `None` where it has none: each waveform decoded and
        resampled once; Whisper log-mel features of all of them in one batched STFT, else one at a time."""
        waveforms = [None if value is None else self._load_clip(value, rate) for value, rate in zip(values, rates)]
        batched = [
            index
            for index, waveform in enumerate(waveforms)
            if waveform is not None and batched_log_mel_applies(self.feature_extractor, len(waveform))
        ]
        encoded: list[Optional[dict[str, np.ndarray]]] = [None] * len(waveforms)
        if batched:
            hop = self.feature_extractor.hop_length
            features = whisper_log_mel([waveforms[index] for index in batched], self.feature_extractor)
            for index, feature in zip(batched, features):
                encoded[index] = {"input_features": feature, "attention_mask": np.ones(feature.shape[1], np.int32)}
                if len(waveforms[index]) // hop == 0:
                    raise self._too_short(len(waveforms[index]))
        for index, waveform in enumerate(waveforms):
            if waveform is not None and encoded[index] is None:
                encoded[index] = self._encode_audio(waveform, self.feature_extractor.sampling_rate)
        return encoded

    def _too_short(self, num_samples: int) -> ValueError:
        return ValueError(
            f"An audio clip of {num_samples} samples at {self.feature_extractor.sampling_rate} Hz is too short for "
            f"the feature extractor ({type(self.feature_extractor).__name__}); drop its audio or pass a longer clip."
        )

    def _load_clip(self, value: AudioInput, sampling_rate: Optional[int]) -> np.ndarray:
        """One audio sample as a mono waveform at the feature extractor's rate, cut to what the encoder takes."""
        target_rate = self.feature_extractor.sampling_rate
        waveform = self.load_waveform(value, sampling_rate)
        max_samples = getattr(self.feature_extractor, "n_samples", None)  # Whisper: 30 s
        if max_samples is not None and len(waveform) > max_samples:
            logger.warning(
                "An audio clip of %.1f s is longer than the %.0f s the audio encoder takes; only its start is used.",
                len(waveform) / target_rate,
                max_samples / target_rate,
            )
            waveform = waveform[:max_samples]
        return waveform

    def _encode_audio(self, value: AudioInput, sampling_rate: Optional[int]) -> dict[str, np.ndarray]:
        """One sample's arrays through the feature extractor itself (waveform models, and clips the batched Whisper
        path does not take)."""
        target_rate = self.feature_extractor.sampling_rate
        waveform = self._load_clip(value, sampling_rate)
        encoded = self.feature_extractor(
            waveform, sampling_rate=target_rate, padding="longest", return_attention_mask=True, return_tensors="np"
        )
        name = self.feature_extractor.model_input_names[0]
        features = {name: encoded[name][0]}
        if "attention_mask" in encoded:
            features["attention_mask"] = encoded["attention_mask"][0]
            if not features["attention_mask"].any():
                raise self._too_short(len(waveform))
        return features

    def _encode_text(self, value: str, sampling_rate: Optional[int] = None) -> Optional[dict[str, np.ndarray]]:
        if not isinstance(value, str):
            raise ValueError(f"A text sample must be a string (or None when missing), got {type(value).__name__}.")
        if not value.strip():
            return None
        encoded = self.tokenizer(value, truncation=True, return_tensors="np")
        return {name: encoded[name][0] for name in ("input_ids", "attention_mask", "token_type_ids") if name in encoded}

    def _encode_video(self, value: VideoInput, sampling_rate: Optional[int] = None) -> Optional[dict[str, np.ndarray]]:
        from .video import NoFaceDetectedError, extract_face_frames, extract_face_frames_from_array

        try:
            if isinstance(value, (str, os.PathLike)):
                frames, frame_mask = extract_face_frames(value, self.num_frames, self.image_size)
            else:
                frames, frame_mask = extract_face_frames_from_array(np.asarray(value), self.num_frames, self.image_size)
        except NoFaceDetectedError as error:
            logger.warning("%s The video modality of this sample is masked.", error)
            return None
        return {"pixel_values": frames, "frame_mask": frame_mask}

    def _padding_value(self, name: str) -> Union[int, float]:
        if name == "text_input_ids":
            return self.tokenizer.pad_token_id or 0
        if name in ("audio_input_features", "audio_input_values"):
            return self.feature_extractor.padding_value
        return 0

    def pad(self, features: Sequence[Mapping[str, Any]], return_tensors: Optional[str] = "pt") -> BatchFeature:
        """Joins processor outputs (batches, e.g. of one sample each, arrays or tensors) into one batch.

        Every array is padded at the end of each axis to the largest shape (input ids with the tokenizer's pad id,
        audio features with the feature extractor's padding value, masks with 0); samples without a modality get
        its minimal placeholder. This is also the pipeline's collate function.
        """
        if not features:
            raise ValueError("pad needs at least one processor output.")
        arrays = [{name: np.asarray(value) for name, value in feature.items()} for feature in features]
        sizes = [len(feature["modality_mask"]) for feature in arrays]
        modality_mask = np.concatenate([feature["modality_mask"] for feature in arrays]).astype(bool)
        batch = {"modality_mask": modality_mask}
        for index, modality in enumerate(self.modalities):
            if not modality_mask[:, index].any():
                continue
            all_names = dict.fromkeys(name for feature in arrays for name in feature)
            names = [name for name in all_names if name.startswith(f"{modality}_")]
            for name in names:
                given = [feature[name] for feature in arrays if name in feature]
                shape = tuple(np.max([array.shape[1:] for array in given], axis=0))
                padded = np.full((len(modality_mask), *shape), self._padding_value(name), dtype=given[0].dtype)
                start = 0
                for feature, size in zip(arrays, sizes):
                    if name in feature:
                        region = (slice(start, start + size), *(slice(0, n) for n in feature[name].shape[1:]))
                        padded[region] = feature[name]
                    start += size
                batch[name] = padded
            mask_name = f"{modality}_attention_mask"
            if mask_name in batch:
                # The placeholder of a sample without this modality: one padding position marked real.
                batch[mask_name][~modality_mask[:, index], 0] = 1
        return BatchFeature(batch, tensor_type=return_tensors)


__all__ = ["TERProcessor"]
