"""The `"trusted-emotion-recognition"` pipeline: raw audio / text / face video in, a trusted emotion decision out.

Importing this module registers the task with `transformers.pipeline`. The file imports only numpy, torch and
transformers, so it also travels with a checkpoint as remote code (`custom_pipelines` in config.json, written by the
model's `save_pretrained`); the evidential math it needs comes from the model (`model.fuse`, `model.combine_windows`).
"""

import os
from collections.abc import Mapping
from typing import Any, Optional, Union

import numpy as np
import torch
from torch.utils.data import DataLoader
from transformers import AutoModel
from transformers.pipelines import PIPELINE_REGISTRY
from transformers.pipelines.base import ChunkPipeline
from transformers.pipelines.pt_utils import PipelineChunkIterator, PipelineIterator, PipelinePackIterator

INPUT_KEYS = ("audio", "text", "video", "sampling_rate")
WINDOW_RULES = ("tempered_dempster_shafer", "dempster_shafer", "evidence_average")
# Window length for a clip longer than it when `chunk_length_s` is not given. Chosen by scripts/bench_long_audio.py
# (README, "Long audio"): on clips of concatenated held-out utterances, 3 s and 10 s windows classify the per-emotion
# clips alike (7/7) and better than one 30 s window (5/7), but only 3 s windows (near the 2 s utterances the model was
# trained on) keep the label of a 10-minute clip of utterances the model labels alike.
DEFAULT_CHUNK_LENGTH_S = 3.0
# The default window rule, chosen by the same measurement (README, "Long audio"): with the same accuracy,
# Dempster-Shafer's confidence grows with the number of windows (1.000 on the 10-minute clip, also where its label is
# wrong), so a threshold calibrated on utterances would trust any long clip; evidence averaging leaves a clip of
# agreeing windows at their mean, below most of them (weak windows pull it down). Tempered Dempster-Shafer lifts it
# above the median window, to a bound that stops growing with the clip's length.
DEFAULT_WINDOW_RULE = "tempered_dempster_shafer"
# A window counts as speech when its loudest 25 ms frame is at most this many dB below the clip's speech level (the
# 99th percentile of its frame levels, so speech filling 1 % of the clip sets it); quieter windows are masked out of
# the pooled audio opinion.
DEFAULT_SILENCE_DB = 30.0
_FRAME_S = 0.025
# How the pipeline's encoders compute on CPU (`encoder_quantization=`): "none" (float32) or "dynamic_int8" (the
# encoders' linear layers in int8, `TERForEmotionRecognition.quantize_encoders`). README, "Inference speed": int8
# makes the encoders 1.3-1.5x faster but costs 0.047 accuracy on scripts/bench_quality.py (the bar was 0.005), so
# float32 is the default.
DEFAULT_ENCODER_QUANTIZATION = "none"
ENCODER_QUANTIZATIONS = ("none", "dynamic_int8")
_NOT_GIVEN = object()
# Per-item fields that travel beside the model inputs through the pipeline's batching.
_META_KEYS = ("is_last", "window", "speech")


def frame_levels(waveform: np.ndarray, frame_length: int) -> np.ndarray:
    """RMS level of each non-overlapping frame of a mono waveform `(T,)`; returns `(ceil(T / frame_length),)`."""
    num_frames = -(-len(waveform) // frame_length)
    padded = np.zeros(num_frames * frame_length, dtype=np.float32)
    padded[: len(waveform)] = waveform
    return np.sqrt(np.square(padded.reshape(num_frames, frame_length)).mean(1, dtype=np.float64))


def audio_windows(num_samples: int, chunk: int, stride_left: int, stride_right: int) -> list[tuple[int, int]]:
    """`(start, end)` sample ranges of `chunk`-long windows covering `num_samples`, consecutive windows overlapping by
    `stride_left + stride_right` samples (as transformers' ASR pipeline chunks); one window when the clip fits."""
    step = chunk - stride_left - stride_right
    if step <= 0:
        raise ValueError(
            f"The window ({chunk} samples) must be longer than its strides ({stride_left} + {stride_right} samples): "
            "choose stride_length_s below chunk_length_s / 2."
        )
    windows, start = [], 0
    while True:
        end = min(start + chunk, num_samples)
        windows.append((start, end))
        if end >= num_samples:
            return windows
        start += step


def encoder_max_samples(processor: Any) -> Optional[int]:
    """The longest clip, in samples, the processor's audio encoder takes (Whisper: 30 s); `None` when unbounded."""
    return getattr(processor.feature_extractor, "n_samples", None)


def window_samples(
    num_samples: int,
    rate: int,
    chunk_length_s: Optional[float] = None,
    stride_length_s: Union[float, tuple[float, float], None] = None,
    max_samples: Optional[int] = None,
) -> tuple[int, int, int]:
    """Window length and left / right strides in samples for a clip of `num_samples` at `rate`.

    Without `chunk_length_s`, a clip of at most `DEFAULT_CHUNK_LENGTH_S` is one window of its own length, a longer one
    is cut into `DEFAULT_CHUNK_LENGTH_S` windows; `stride_length_s` defaults to `chunk_length_s / 6` on each side.
    """
    if chunk_length_s is None:
        if num_samples <= DEFAULT_CHUNK_LENGTH_S * rate:
            return max(num_samples, 1), 0, 0
        chunk_length_s = DEFAULT_CHUNK_LENGTH_S
    chunk = int(round(chunk_length_s * rate))
    if chunk <= 0 or (max_samples is not None and chunk > max_samples):
        limit = f" and at most the encoder's {max_samples / rate:.0f} s" if max_samples is not None else ""
        raise ValueError(f"chunk_length_s must be positive{limit}, got {chunk_length_s}.")
    if stride_length_s is None:
        stride_length_s = chunk_length_s / 6
    left, right = stride_length_s if isinstance(stride_length_s, (tuple, list)) else (stride_length_s,) * 2
    return chunk, int(round(left * rate)), int(round(right * rate))


def plan_audio_windows(
    waveform: np.ndarray,
    rate: int,
    chunk_length_s: Optional[float] = None,
    stride_length_s: Union[float, tuple[float, float], None] = None,
    silence_db: Optional[float] = DEFAULT_SILENCE_DB,
    max_samples: Optional[int] = None,
) -> list[tuple[int, int, bool]]:
    """The windows a mono waveform `(T,)` at `rate` is scored in: `(start, end, speech)` per window, sample ranges
    from `window_samples` and `audio_windows`; `speech` is False for a window whose loudest `_FRAME_S` frame is more
    than `silence_db` dB below the clip's speech level (the 99th percentile of its frame levels; `None`: every window
    is speech). The pipeline and `modeling_ter.evaluation` both window long audio with this function."""
    chunk, left, right = window_samples(len(waveform), rate, chunk_length_s, stride_length_s, max_samples)
    frame = max(1, int(_FRAME_S * rate))
    levels = frame_levels(waveform, frame)
    floor = 0.0 if silence_db is None else np.percentile(levels, 99) * 10 ** (-silence_db / 20)
    planned = []
    for start, end in audio_windows(len(waveform), chunk, left, right):
        loudest = levels[start // frame : max(start // frame + 1, -(-end // frame))].max()
        planned.append((start, end, bool(loudest >= floor)))
    return planned


def pool_windows(
    model: Any,
    evidence: torch.Tensor,
    present: torch.Tensor,
    speech: torch.Tensor,
    domain_scale: torch.Tensor,
    rule: str = DEFAULT_WINDOW_RULE,
) -> Optional[tuple[torch.Tensor, torch.Tensor]]:
    """One audio opinion from its windows' opinions: `model.combine_windows` over the windows that are speech and
    present, with their mean domain scale.

    Args:
        evidence: `(num_windows, num_labels)`; present, speech: `(num_windows,)` bool; domain_scale: `(num_windows,)`.

    Returns:
        `(evidence (num_labels,), domain scale ())`, or `None` when no window counts (the audio is then missing).
    """
    counted = speech & present
    if not counted.any():
        return None
    return model.combine_windows(evidence, counted, rule), domain_scale[counted].mean()


# Below this domain scale a modality's opinion is reported as out of domain: the gate took most of its evidence.
OUT_OF_DOMAIN_SCALE = 0.5


def _by_score(entry: dict) -> float:
    return -entry["score"]


class TrustedEmotionRecognitionPipeline(ChunkPipeline):
    r"""
    Emotion recognition from any subset of audio, text and face video, with a confidence, a trust decision and the
    opinion of each modality.

    Input: an audio clip alone, as the audio-classification pipeline takes it (a file path, a waveform array with
    `sampling_rate=`, or `{"array"|"raw": ..., "sampling_rate": ...}`), or a dict (or a list of either) with any of
    `audio` (the same forms; a video container such as `.mp4`/`.flv`/`.mkv` gives its audio track), `sampling_rate`,
    `text` (a string) and `video` (a video file path). With `use_video_audio=True`, an input with a `video` but no
    `audio` also uses the video's audio track.

    Audio of any length: a clip longer than `chunk_length_s` (default 3 s; at most what the audio encoder takes,
    30 s for Whisper) is scored window by window, `stride_length_s` overlapping on each side (default
    `chunk_length_s / 6`), streaming the windows through the model so memory stays flat in the
    clip's length. The windows' audio opinions are pooled by `window_fusion`: `"tempered_dempster_shafer"` (the
    default: the windows as one witness split into `n`, each window's evidence divided by `n`, then Dempster-Shafer),
    `"dempster_shafer"` (independent witnesses) or `"evidence_average"`; a window whose loudest frame is more
    than `silence_db` dB (default 30; `None`: none is) below the clip's speech level is masked out, so silence does
    not dilute speech.
    `return_windows=True` adds each window's result.

    Speed: `pipeline(..., encoder_quantization="dynamic_int8")` runs the encoders' linear layers in int8 on CPU
    (`TERForEmotionRecognition.quantize_encoders`; `"none"`, the default, keeps float32); README, "Inference speed",
    gives its speed and accuracy cost.

    Output per input, JSON-serialisable:
        - `label`, `score`: the top class and its fused expected probability.
        - `confidence`: the fused, calibrated confidence (an estimate of P(correct); `config.confidence_measure`
          through `config.confidence_calibration`).
        - `trusted`: `confidence >= config.trusted_threshold`, or `None` while the checkpoint has no calibrated
          threshold.
        - `scores`: every class, `[{"label", "score"}]` sorted by score (as the audio-classification pipeline).
        - `modalities`: `{name: {"present", "confidence", "label", "scores", "domain_scale", "out_of_domain",
          "reason"}}`: `scores` is the modality's own opinion (expected probabilities, sorted);
          `domain_scale` is the factor the modality's domain gate left of its evidence (1: familiar input), and
          `reason` says why an opinion is (near-)vacuous: `"missing"` or `"out of domain"` (scale below 0.5), else
          `None`; a missing modality (not given, empty text, no
          face found) has `present: False` and `None` confidence and label, so one sees which modality drove the
          decision.
        - `conflict`: `{"max": the largest Dempster-Shafer conflict between two present modalities (None with fewer
          than two), "matrix": the pairwise conflicts as nested lists in `modalities` order (None where a
          modality is missing)}`.
        - `windows` (with `return_windows=True` and audio): `[{"start", "end" (seconds), "speech", "label",
          "confidence"}]`, each window's own audio opinion.

    Examples:

    ```python
    >>> from transformers import pipeline
    >>> classify = pipeline("trusted-emotion-recognition", model="org/ter", trust_remote_code=True)  # doctest: +SKIP
    >>> classify("clip.flac")  # doctest: +SKIP
    >>> classify({"audio": waveform, "sampling_rate": 16000, "text": "Don't forget a jacket"})  # doctest: +SKIP
    >>> classify("interview.flac", chunk_length_s=10, return_windows=True)  # doctest: +SKIP
    ```
    """

    _load_processor = True
    _load_tokenizer = False
    _load_feature_extractor = False
    _load_image_processor = False
    _load_video_processor = False

    def __init__(self, *args: Any, encoder_quantization: str = DEFAULT_ENCODER_QUANTIZATION, **kwargs: Any):
        """`Pipeline.__init__`, plus `encoder_quantization` (`"none"` or `"dynamic_int8"`): on CPU, the model runs
        as `model.quantize_encoders(encoder_quantization)` (a copy; the given model is unchanged and is what
        `save_pretrained` saves). On other devices, and for models without `quantize_encoders` (onnxruntime, remote
        code of older checkpoints), the encoders stay as they are."""
        if encoder_quantization not in ENCODER_QUANTIZATIONS:
            raise ValueError(
                f"encoder_quantization must be one of {ENCODER_QUANTIZATIONS}, got {encoder_quantization!r}."
            )
        super().__init__(*args, **kwargs)
        self.float_model = self.model
        quantize = getattr(self.model, "quantize_encoders", None)
        on_cpu = getattr(self.model, "device", torch.device("cpu")).type == "cpu"
        if encoder_quantization != "none" and quantize is not None and on_cpu:
            self.model = quantize(encoder_quantization)
        self.encoder_quantization = getattr(self.model, "encoder_quantization", "none")

    def _sanitize_parameters(
        self,
        sampling_rate: Optional[int] = None,
        use_video_audio: Optional[bool] = None,
        chunk_length_s: Optional[float] = None,
        stride_length_s: Union[float, tuple[float, float], None] = None,
        silence_db: Any = _NOT_GIVEN,
        window_fusion: Optional[str] = None,
        return_windows: Optional[bool] = None,
    ) -> tuple[dict, dict, dict]:
        preprocess: dict[str, Any] = {}
        for name, value in (
            ("sampling_rate", sampling_rate),
            ("use_video_audio", use_video_audio),
            ("chunk_length_s", chunk_length_s),
            ("stride_length_s", stride_length_s),
        ):
            if value is not None:
                preprocess[name] = value
        if silence_db is not _NOT_GIVEN:  # None is a value here: no window is masked
            preprocess["silence_db"] = silence_db
        postprocess: dict[str, Any] = {}
        if window_fusion is not None:
            if window_fusion not in WINDOW_RULES:
                raise ValueError(f"window_fusion must be one of {WINDOW_RULES}, got {window_fusion!r}.")
            postprocess["window_fusion"] = window_fusion
        if return_windows is not None:
            postprocess["return_windows"] = bool(return_windows)
        return preprocess, {}, postprocess

    def _as_input_dict(self, inputs: Any, sampling_rate: Optional[int]) -> dict:
        """The input as a dict of `INPUT_KEYS`: a bare path, array or `{"array"|"raw", "sampling_rate"}` is audio."""
        if isinstance(inputs, (str, os.PathLike, np.ndarray, torch.Tensor)):
            inputs = {"audio": inputs}
        elif isinstance(inputs, Mapping) and ("array" in inputs or "raw" in inputs):
            inputs = {"audio": dict(inputs)}
        if not isinstance(inputs, Mapping):
            raise ValueError(
                "The trusted-emotion-recognition pipeline takes an audio clip (file path or waveform array) or a dict "
                f"with any of {list(INPUT_KEYS)} (or a list of those), got {type(inputs).__name__}."
            )
        unknown = sorted(set(inputs) - set(INPUT_KEYS))
        if unknown:
            raise ValueError(f"Unknown input keys {unknown}; the pipeline reads {list(INPUT_KEYS)}.")
        inputs = dict(inputs)
        if sampling_rate is not None:
            inputs.setdefault("sampling_rate", sampling_rate)
        if isinstance(inputs.get("audio"), torch.Tensor):
            inputs["audio"] = inputs["audio"].numpy()
        return inputs

    def preprocess(
        self,
        inputs: Any,
        sampling_rate: Optional[int] = None,
        use_video_audio: bool = False,
        chunk_length_s: Optional[float] = None,
        stride_length_s: Union[float, tuple[float, float], None] = None,
        silence_db: Optional[float] = DEFAULT_SILENCE_DB,
    ):
        """Yields one item with the text and video (when given and usable), then one per audio window (audio only).

        Every item holds the processor's tensors (batch axis 1) and `is_last` `(1,)`, `window` `(1, 2)` (start and
        end in seconds; NaN for the text / video item) and `speech` `(1,)`; windows are encoded one at a time.
        """
        inputs = self._as_input_dict(inputs, sampling_rate)
        if use_video_audio and inputs.get("audio") is None and inputs.get("video") is not None:
            inputs["audio"] = inputs["video"]
        others = {m: [inputs[m]] for m in ("text", "video") if inputs.get(m) is not None}
        items = []  # (model inputs or a function making them, (start, end), speech)
        if others:
            encoded = dict(self.processor(**others))
            if encoded["modality_mask"].any():  # an empty text or a video without a face is no input
                items.append((encoded, (float("nan"), float("nan")), True))
        if inputs.get("audio") is not None:
            if "audio" not in self.model.config.modalities:
                raise ValueError(f"This model has no audio modality (it has {list(self.model.config.modalities)}).")
            waveform = self.processor.load_waveform(inputs["audio"], inputs.get("sampling_rate"))
            rate = self.processor.feature_extractor.sampling_rate
            max_samples = encoder_max_samples(self.processor)
            windows = plan_audio_windows(waveform, rate, chunk_length_s, stride_length_s, silence_db, max_samples)
            for start, end, speech in windows:
                encode = lambda segment=waveform[start:end]: self.processor(audio=[segment], sampling_rate=rate)  # noqa: E731
                items.append((encode, (start / rate, end / rate), speech))
        if not items:
            raise ValueError(
                f"The input with keys {sorted(inputs)} has no usable modality (no input, an empty text, or a video "
                "without a detectable face); give at least one of audio, text or video."
            )
        for index, (model_inputs, window, speech) in enumerate(items):
            yield {
                "is_last": torch.tensor([index == len(items) - 1]),
                "window": torch.tensor([window], dtype=torch.float64),
                "speech": torch.tensor([speech]),
                **dict(model_inputs() if callable(model_inputs) else model_inputs),
            }

    def get_iterator(self, inputs, num_workers, batch_size, preprocess_params, forward_params, postprocess_params):
        """As `ChunkPipeline.get_iterator`, with our own collate function (the processor's `pad`).

        `Pipeline` offers no hook for the collate function: its `pad_collate_fn` knows only a tokenizer's and a
        feature extractor's own input names, not our `<modality>_*` inputs. So this is upstream's body with the
        collate function replaced; tests/pipelines/test_pipeline.py fails when upstream's body changes.
        """
        num_workers = min(num_workers or 0, 1)
        dataset = PipelineChunkIterator(inputs, self.preprocess, preprocess_params)
        dataloader = DataLoader(dataset, num_workers=num_workers, batch_size=batch_size, collate_fn=self._collate)
        model_iterator = PipelinePackIterator(dataloader, self.forward, forward_params, loader_batch_size=batch_size)
        return PipelineIterator(model_iterator, self.postprocess, postprocess_params)

    def _collate(self, items: list[dict]) -> dict:
        meta = {key: torch.cat([item[key] for item in items]) for key in _META_KEYS}
        padded = self.processor.pad([{k: v for k, v in item.items() if k not in _META_KEYS} for item in items])
        return {**meta, **dict(padded)}

    def _forward(self, model_inputs: dict) -> dict:
        meta = {key: model_inputs.pop(key) for key in _META_KEYS}
        outputs = self.model(**model_inputs, return_dict=True)
        # Only the small per-item opinions travel on (memory stays flat in the number of windows).
        return {
            **meta,
            "evidence": outputs.modality_alpha - 1.0,
            "modality_mask": outputs.modality_mask,
            "domain_scale": outputs.modality_domain_scale,
        }

    def postprocess(
        self, model_outputs: list[dict], window_fusion: str = DEFAULT_WINDOW_RULE, return_windows: bool = False
    ) -> dict[str, Any]:
        """Pools the audio windows into one audio opinion, fuses it with the other modalities, and reports."""
        config = self.model.config
        id2label, names = config.id2label, list(config.modalities)
        evidence = torch.cat([output["evidence"] for output in model_outputs]).float()  # (items, M, K)
        present = torch.cat([output["modality_mask"] for output in model_outputs])  # (items, M)
        windows = torch.cat([output["window"] for output in model_outputs])  # (items, 2)
        speech = torch.cat([output["speech"] for output in model_outputs])  # (items,)
        scale = torch.cat([output["domain_scale"] for output in model_outputs]).float()  # (items, M)
        is_window = ~torch.isnan(windows[:, 0])
        fused_evidence = evidence[~is_window].sum(0)  # the text / video item, if any: (M, K)
        fused_present = present[~is_window].any(0)
        fused_scale = scale[~is_window].sum(0)  # each modality comes from one item
        window_results = []
        if is_window.any():
            audio = names.index("audio")
            window_evidence = evidence[is_window, audio]
            pooled = pool_windows(
                self.model,
                window_evidence,
                present[is_window, audio],
                speech[is_window],
                scale[is_window, audio],
                window_fusion,
            )
            if pooled is not None:
                fused_evidence[audio], fused_scale[audio] = pooled
                fused_present[audio] = True
            if return_windows:
                alone = torch.zeros(len(window_evidence), len(names), window_evidence.shape[-1])
                alone[:, audio] = window_evidence
                mask = torch.zeros(len(window_evidence), len(names), dtype=torch.bool)
                mask[:, audio] = True
                with torch.no_grad():
                    confidence = self.model.fuse(alone, mask).confidence.tolist()
                for (start, end), is_speech, own, conf in zip(
                    windows[is_window].tolist(),
                    speech[is_window].tolist(),
                    window_evidence.argmax(-1).tolist(),
                    confidence,
                ):
                    window_results.append(
                        {
                            "start": start,
                            "end": end,
                            "speech": is_speech,
                            "label": id2label[own],
                            "confidence": float(conf),
                        }
                    )
        with torch.no_grad():
            output = self.model.fuse(fused_evidence[None], fused_present[None], domain_scale=fused_scale[None])
        result = self._report(output)
        if return_windows and is_window.any():
            result["windows"] = window_results
        return result

    def _report(self, output) -> dict[str, Any]:
        """The JSON-serialisable result of one fused `TEROutput` (batch of 1)."""
        id2label, names = self.model.config.id2label, list(self.model.config.modalities)
        probs = output.probs[0].tolist()
        order = sorted(range(len(probs)), key=lambda k: -probs[k])
        scores = [{"label": id2label[k], "score": probs[k]} for k in order]
        present = output.modality_mask[0].tolist()
        confidence = output.modality_confidence[0].tolist()
        own_label = output.modality_alpha[0].argmax(-1).tolist()
        own_probs = (output.modality_alpha[0] / output.modality_alpha[0].sum(-1, keepdim=True)).tolist()
        scale = output.modality_domain_scale[0].tolist()
        modalities = {}
        for m, name in enumerate(names):
            out_of_domain = present[m] and scale[m] < OUT_OF_DOMAIN_SCALE
            modalities[name] = {
                "present": present[m],
                "confidence": confidence[m] if present[m] else None,
                "label": id2label[own_label[m]] if present[m] else None,
                "scores": (
                    sorted(({"label": id2label[k], "score": p} for k, p in enumerate(own_probs[m])), key=_by_score)
                    if present[m]
                    else None
                ),
                "domain_scale": scale[m] if present[m] else None,
                "out_of_domain": out_of_domain,
                # Why this modality's opinion is (near-)vacuous, if it is: no usable input, or an input unlike
                # anything the modality was trained on (its domain gate took most of its evidence).
                "reason": "missing" if not present[m] else "out of domain" if out_of_domain else None,
            }
        conflict = output.conflict[0].tolist()
        indices = range(len(names))
        matrix = [[conflict[i][j] if present[i] and present[j] else None for j in indices] for i in indices]
        pairs = [matrix[i][j] for i in indices for j in indices if i < j and matrix[i][j] is not None]
        trusted: Optional[bool] = None if output.trusted is None else bool(output.trusted[0])
        return {
            "label": scores[0]["label"],
            "score": scores[0]["score"],
            "confidence": float(output.confidence[0]),
            "trusted": trusted,
            "scores": scores,
            "modalities": modalities,
            "conflict": {"max": max(pairs) if pairs else None, "matrix": matrix},
        }

    def save_pretrained(self, save_directory, **kwargs: Any) -> None:
        """Saves the model (with `custom_pipelines` in its config) and the processor, so that
        `pipeline("trusted-emotion-recognition", model=save_directory)` rebuilds this pipeline."""
        running, self.model = self.model, self.float_model  # never the quantized copy
        try:
            super().save_pretrained(save_directory, **kwargs)
        finally:
            self.model = running
        self.processor.save_pretrained(save_directory)


PIPELINE_REGISTRY.register_pipeline(
    "trusted-emotion-recognition",
    pipeline_class=TrustedEmotionRecognitionPipeline,
    pt_model=AutoModel,
    type="multimodal",
)

__all__ = [
    "TrustedEmotionRecognitionPipeline",
    "audio_windows",
    "encoder_max_samples",
    "plan_audio_windows",
    "pool_windows",
    "window_samples",
]
