"""The `"trusted-emotion-recognition"` pipeline: raw audio / text / face video in, a trusted emotion decision out.

Importing this module registers the task with `transformers.pipeline`. The file imports only torch and transformers,
so it can also travel with a checkpoint as remote code (`custom_pipelines`).
"""

from collections.abc import Mapping, Sized
from typing import Any, Optional

from torch.utils.data import DataLoader
from transformers import AutoModel, Pipeline
from transformers.pipelines import PIPELINE_REGISTRY
from transformers.pipelines.pt_utils import PipelineDataset, PipelineIterator

INPUT_KEYS = ("audio", "text", "video", "sampling_rate")


class TrustedEmotionRecognitionPipeline(Pipeline):
    r"""
    Emotion recognition from any subset of audio, text and face video, with a confidence, a trust decision and the
    opinion of each modality.

    Input: a dict (or a list of dicts) with any of `audio` (file path, waveform array, or `{"array",
    "sampling_rate"}`), `sampling_rate` (for a waveform array), `text` (a string) and `video` (a video file path).

    Output per input, JSON-serialisable:
        - `label`, `score`: the top class and its fused expected probability.
        - `confidence`: the fused confidence (`1 - u` or `max_k p_k`, as `config.confidence_measure`).
        - `trusted`: `confidence >= config.trusted_threshold`, or `None` while the checkpoint has no calibrated
          threshold.
        - `scores`: every class, `[{"label", "score"}]` sorted by score (as the audio-classification pipeline).
        - `modalities`: `{name: {"present", "confidence", "label"}}`; a missing modality (not given, empty text, no
          face found) has `present: False` and `None` confidence and label, so one sees which modality drove the
          decision.
        - `conflict`: `{"max": the largest Dempster-Shafer conflict between two present modalities (None with fewer
          than two), "matrix": the pairwise conflicts as nested lists in `modalities` order (None where a
          modality is missing)}`.

    Examples:

    ```python
    >>> from transformers import pipeline
    >>> import modeling_ter  # registers the task  # doctest: +SKIP
    >>> recognizer = pipeline("trusted-emotion-recognition", model="path/to/ter-checkpoint")  # doctest: +SKIP
    >>> recognizer({"audio": "clip.flac", "text": "Don't forget a jacket"})  # doctest: +SKIP
    ```
    """

    _load_processor = True
    _load_tokenizer = False
    _load_feature_extractor = False
    _load_image_processor = False
    _load_video_processor = False

    def _sanitize_parameters(self, **kwargs: Any) -> tuple[dict, dict, dict]:
        if kwargs:
            raise ValueError(f"Unknown arguments {sorted(kwargs)} for the trusted-emotion-recognition pipeline.")
        return {}, {}, {}

    def preprocess(self, inputs: Mapping[str, Any]) -> dict:
        if not isinstance(inputs, Mapping):
            raise ValueError(
                f"The trusted-emotion-recognition pipeline takes a dict with any of {list(INPUT_KEYS)} (or a list of "
                f"such dicts), got {type(inputs).__name__}."
            )
        unknown = sorted(set(inputs) - set(INPUT_KEYS))
        if unknown:
            raise ValueError(f"Unknown input keys {unknown}; the pipeline reads {list(INPUT_KEYS)}.")
        given = {m: [inputs[m]] for m in ("audio", "text", "video") if inputs.get(m) is not None}
        model_inputs = self.processor(**given, sampling_rate=inputs.get("sampling_rate"))
        if not model_inputs["modality_mask"].any():
            raise ValueError(
                f"The input with keys {sorted(inputs)} has no usable modality (no input, an empty text, or a video "
                "without a detectable face); give at least one of audio, text or video."
            )
        return dict(model_inputs)

    def get_iterator(self, inputs, num_workers, batch_size, preprocess_params, forward_params, postprocess_params):
        """As `Pipeline.get_iterator`, with the processor's `pad` as collate function (mel features pad on time).

        `Pipeline` offers no hook for the collate function: its `pad_collate_fn` knows only a tokenizer's and a
        feature extractor's own input names, not our `<modality>_*` inputs. So this is upstream's body with the
        collate function replaced; tests/pipelines/test_pipeline.py fails when upstream's body changes.
        """
        if isinstance(inputs, Sized):
            dataset = PipelineDataset(inputs, self.preprocess, preprocess_params)
        else:
            dataset = PipelineIterator(inputs, self.preprocess, preprocess_params)
            num_workers = min(num_workers or 0, 1)
        dataloader = DataLoader(dataset, num_workers=num_workers, batch_size=batch_size, collate_fn=self._collate)
        model_iterator = PipelineIterator(dataloader, self.forward, forward_params, loader_batch_size=batch_size)
        return PipelineIterator(model_iterator, self.postprocess, postprocess_params)

    def _collate(self, items: list[dict]) -> dict:
        return dict(self.processor.pad(items))

    def _forward(self, model_inputs: dict) -> dict:
        outputs = self.model(**model_inputs, return_dict=True)
        return {
            "probs": outputs.probs,
            "confidence": outputs.confidence,
            "trusted": outputs.trusted,
            "modality_probs": outputs.modality_alpha / outputs.modality_alpha.sum(-1, keepdim=True),
            "modality_confidence": outputs.modality_confidence,
            "modality_mask": outputs.modality_mask,
            "conflict": outputs.conflict,
        }

    def postprocess(self, model_outputs: dict) -> dict[str, Any]:
        id2label = self.model.config.id2label
        probs = model_outputs["probs"][0].tolist()
        order = sorted(range(len(probs)), key=lambda k: -probs[k])
        scores = [{"label": id2label[k], "score": probs[k]} for k in order]
        names = list(self.model.config.modalities)
        present = model_outputs["modality_mask"][0].tolist()
        confidence = model_outputs["modality_confidence"][0].tolist()
        own_label = model_outputs["modality_probs"][0].argmax(-1).tolist()
        modalities = {
            name: {
                "present": present[m],
                "confidence": confidence[m] if present[m] else None,
                "label": id2label[own_label[m]] if present[m] else None,
            }
            for m, name in enumerate(names)
        }
        conflict = model_outputs["conflict"][0].tolist()
        indices = range(len(names))
        matrix = [[conflict[i][j] if present[i] and present[j] else None for j in indices] for i in indices]
        pairs = [matrix[i][j] for i in indices for j in indices if i < j and matrix[i][j] is not None]
        trusted: Optional[bool] = None if model_outputs["trusted"] is None else bool(model_outputs["trusted"][0])
        return {
            "label": scores[0]["label"],
            "score": scores[0]["score"],
            "confidence": float(model_outputs["confidence"][0]),
            "trusted": trusted,
            "scores": scores,
            "modalities": modalities,
            "conflict": {"max": max(pairs) if pairs else None, "matrix": matrix},
        }

    def save_pretrained(self, save_directory, **kwargs: Any) -> None:
        """Saves the model (with `custom_pipelines` in its config) and the processor, so that
        `pipeline("trusted-emotion-recognition", model=save_directory)` rebuilds this pipeline."""
        super().save_pretrained(save_directory, **kwargs)
        self.processor.save_pretrained(save_directory)


PIPELINE_REGISTRY.register_pipeline(
    "trusted-emotion-recognition",
    pipeline_class=TrustedEmotionRecognitionPipeline,
    pt_model=AutoModel,
    type="multimodal",
)

__all__ = ["TrustedEmotionRecognitionPipeline"]
