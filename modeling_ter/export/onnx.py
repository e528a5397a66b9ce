"""ONNX export of a TER checkpoint, and an onnxruntime model that the trusted-emotion-recognition pipeline runs.

The export splits the model where its own API does (the feature cache of training uses the same split):

- `<modality>_encoder.onnx` for each modality with a backbone: `model.embed_modality` — the modality's raw inputs
  (named as the model's, e.g. `audio_input_features` `(batch, 80, frames)` + `audio_attention_mask`
  `(batch, frames)`) -> pooled features `embeds` `(batch, num_feature_layers, embed_dim)`;
- `heads_and_fusion.onnx`: `model(<modality>_embeds=..., modality_mask=...)` — every modality's pooled features
  and `modality_mask` `(batch, num_modalities)` -> layer weighting, evidential heads, Dempster-Shafer fusion,
  confidence, trust decision and conflicts (the fields of `TEROutput` the pipeline reads).

Batch and length axes are dynamic (Whisper: 3 to 3000 mel frames, i.e. 30 ms to 30 s). A deployment runs the
encoders of the modalities it has and the small fusion graph; a modality it lacks gets zero features and `False` in
`modality_mask`, which is the vacuous opinion the PyTorch model gives a missing modality.

The graphs come from `torch.onnx.export(..., dynamo=True)`: it traces with `torch.export`, under which the model skips
its data-dependent input checks (`torch.compiler.is_compiling()`), and it is the exporter torch 2.13 maintains. The
TorchScript exporter (`dynamo=False`) traces with `torch.jit`, where those checks and the unpadded-Whisper branch
(`bool(...)` on tensors) would be frozen into the graph for the example batch. optimum has no export config for the
custom `ter` model type.

The export folder also holds the checkpoint's `config.json` and processor files and `onnx_export.json` (graph files,
input and output names, the versions used), so `onnx_pipeline(folder)` needs nothing else.

Examples:

```python
>>> from modeling_ter.export import export_onnx, onnx_pipeline
>>> export_onnx("out", "out/onnx")  # doctest: +SKIP
>>> recognizer = onnx_pipeline("out/onnx", num_threads=2)  # doctest: +SKIP
>>> recognizer({"audio": "clip.flac", "text": "Don't forget a jacket"})["label"]  # doctest: +SKIP
'anger'
```
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch
from torch import nn
from torch.export import Dim
from transformers import AutoProcessor

from ..models import TERConfig, TERForEmotionRecognition, TEROutput
from ..pipelines import TrustedEmotionRecognitionPipeline

logger = logging.getLogger(__name__)

MANIFEST_NAME = "onnx_export.json"
FUSION_GRAPH = "heads_and_fusion.onnx"
# The TEROutput fields the fusion graph gives (`trusted` only when the checkpoint has a calibrated threshold);
# `modality_mask` is its input (it receives every modality's features).
FUSION_OUTPUTS = (
    "probs",
    "confidence",
    "trusted",
    "modality_alpha",
    "modality_confidence",
    "conflict",
    "modality_domain_distance",
    "modality_domain_scale",
)
# The length axis of each raw input besides the batch axis 0 (mel features are (batch, mel bins, frames)).
LENGTH_AXIS = {"audio_input_features": 2}


class _EncoderGraph(nn.Module):
    """One modality's encoder for export: its raw inputs, positionally in `input_names` order -> `(batch, L, dim)`."""

    def __init__(self, model: TERForEmotionRecognition, modality: str, input_names: Sequence[str]):
        super().__init__()
        self.model, self.modality = model, modality
        self.keywords = [name.removeprefix(f"{modality}_") for name in input_names]

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.model.embed_modality(self.modality, **dict(zip(self.keywords, inputs)))


class _FusionGraph(nn.Module):
    """Heads and fusion for export: `modality_mask` `(batch, M)` and each modality's pooled features
    `(batch, L_m, dim_m)` (in `config.modalities` order) -> the tensors of `output_names`."""

    def __init__(self, model: TERForEmotionRecognition, output_names: Sequence[str]):
        super().__init__()
        self.model, self.output_names = model, tuple(output_names)

    def forward(self, modality_mask: torch.Tensor, *embeds: torch.Tensor) -> tuple[torch.Tensor, ...]:
        named = {f"{m}_embeds": e for m, e in zip(self.model.config.modalities, embeds)}
        outputs = self.model(**named, modality_mask=modality_mask, return_dict=True)
        return tuple(getattr(outputs, name) for name in self.output_names)


def example_inputs(processor, config: TERConfig) -> dict[str, torch.Tensor]:
    """A batch of two samples of unequal lengths for tracing, with every raw input of the checkpoint's encoders.

    Audio and text go through the processor (so names and dtypes are the processor's); video is built directly in
    the processor's layout (`(2, num_frames, 1, image_size, image_size)`), as random frames hold no face to detect.
    """
    generator = np.random.default_rng(0)
    given = {}
    if "audio" in config.modalities:
        rate = processor.feature_extractor.sampling_rate
        given["audio"] = [generator.standard_normal(n).astype(np.float32) * 0.1 for n in (rate, rate * 5 // 2)]
        given["sampling_rate"] = rate
    if "text" in config.modalities:
        given["text"] = ["An example.", "A somewhat longer example sentence for tracing the text encoder."]
    inputs = dict(processor(**given)) if set(given) - {"sampling_rate"} else {}
    if "video" in config.modalities:
        frames, size = processor.num_frames, processor.image_size
        inputs["video_pixel_values"] = torch.from_numpy(generator.uniform(-1, 1, (2, frames, 1, size, size))).float()
        inputs["video_frame_mask"] = torch.arange(frames) < torch.tensor([frames, frames // 2])[:, None]
    inputs.pop("modality_mask", None)
    return inputs


def _export_graph(module: nn.Module, args: tuple, path: Path, input_names, output_names, dynamic_shapes) -> None:
    program = torch.onnx.export(
        module.eval(),
        args,
        input_names=list(input_names),
        output_names=list(output_names),
        dynamic_shapes=dynamic_shapes,
        dynamo=True,
        external_data=False,  # a few tens of MB per graph: one self-contained file each
        verbose=False,
    )
    program.save(str(path))


def output_differences(actual: TEROutput, expected: TEROutput) -> dict[str, float]:
    """How far two outputs for the same batch are apart, in what the pipeline reports.

    Returns:
        The largest absolute difference of `probs` `(batch, K)`, `confidence` `(batch,)`, `modality_probs`
        (`modality_alpha / S`, `(batch, M, K)`), `modality_confidence` `(batch, M)` and `conflict` `(batch, M, M)`;
        for `trusted` `(batch,)` and `modality_mask` `(batch, M)`, the number of entries that differ (`trusted` is 0
        when both are `None`).
    """

    def modality_probs(output: TEROutput) -> torch.Tensor:
        return output.modality_alpha / output.modality_alpha.sum(-1, keepdim=True)

    pairs = {
        name: (getattr(actual, name), getattr(expected, name))
        for name in ("probs", "confidence", "modality_confidence", "conflict")
    }
    pairs["modality_probs"] = (modality_probs(actual), modality_probs(expected))
    differences = {name: float((a.double() - b.double()).abs().max()) for name, (a, b) in pairs.items()}
    for name in ("trusted", "modality_mask"):
        a, b = getattr(actual, name), getattr(expected, name)
        if (a is None) != (b is None):
            raise ValueError(f"One output has {name} and the other has not.")
        differences[name] = 0 if a is None else int((a != b).sum())
    return differences


def export_onnx(
    model_path: Union[str, os.PathLike], output_dir: Union[str, os.PathLike], atol: float = 1e-4
) -> dict[str, Any]:
    """Exports a TER checkpoint's encoders and its heads + fusion to ONNX, then checks them against PyTorch.

    Args:
        model_path: a checkpoint folder (or Hub ID) with the model and its processor.
        output_dir: the folder to write (created; existing graph files in it are replaced).
        atol: the largest absolute difference allowed between onnxruntime and PyTorch on the example batch.

    Returns:
        The manifest written to `onnx_export.json`, with `difference_to_pytorch` on the example batch
        (`output_differences`).
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    model = TERForEmotionRecognition.from_pretrained(model_path).eval()
    processor = AutoProcessor.from_pretrained(model_path)
    config = model.config
    inputs = example_inputs(processor, config)
    manifest: dict[str, Any] = {
        "encoders": {},
        "fusion": {},
        "versions": {"torch": torch.__version__, "onnx_exporter": "torch.onnx.export(dynamo=True)"},
    }
    embeds = {}
    with torch.no_grad():
        for modality in model.encoders:
            names = [name for name in inputs if name.startswith(f"{modality}_")]
            graph = _EncoderGraph(model, modality, names)
            batch = Dim.DYNAMIC
            dynamic = tuple({0: batch, LENGTH_AXIS.get(name, 1): Dim.DYNAMIC} for name in names)
            file_name = f"{modality}_encoder.onnx"
            _export_graph(graph, tuple(inputs[n] for n in names), output_dir / file_name, names, ["embeds"], (dynamic,))
            embeds[modality] = graph(*(inputs[n] for n in names))
            manifest["encoders"][modality] = {
                "file": file_name,
                "inputs": names,
                "embeds_shape": list(embeds[modality].shape[1:]),
            }
        # Modalities without a backbone (precomputed features only) enter the fusion graph as zeros.
        for modality in config.modalities:
            if modality not in embeds:
                modality_config = config.modality_config(modality)
                embeds[modality] = torch.zeros(2, modality_config["num_feature_layers"], modality_config["embed_dim"])
        output_names = [name for name in FUSION_OUTPUTS if name != "trusted" or config.trusted_threshold is not None]
        fusion_inputs = ["modality_mask", *(f"{m}_embeds" for m in config.modalities)]
        modality_mask = torch.tensor([[True] * len(config.modalities), [True] + [False] * (len(config.modalities) - 1)])
        fusion_args = (modality_mask, *(embeds[m] for m in config.modalities))
        batch = Dim.DYNAMIC
        _export_graph(
            _FusionGraph(model, output_names),
            fusion_args,
            output_dir / FUSION_GRAPH,
            fusion_inputs,
            output_names,
            ({0: batch}, tuple({0: batch} for _ in config.modalities)),
        )
    manifest["fusion"] = {"file": FUSION_GRAPH, "inputs": fusion_inputs, "outputs": output_names}
    config.save_pretrained(output_dir)
    processor.save_pretrained(output_dir)
    (output_dir / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")

    onnx_model = ONNXTERModel(output_dir)
    with torch.no_grad():
        expected = model(**inputs, return_dict=True)
    actual = onnx_model(**inputs)
    differences = output_differences(actual, expected)
    manifest["difference_to_pytorch"] = differences
    worst = max(
        differences[name] for name in ("probs", "confidence", "modality_probs", "modality_confidence", "conflict")
    )
    if worst > atol or differences["trusted"] or differences["modality_mask"]:
        raise RuntimeError(
            f"onnxruntime differs from PyTorch by up to {worst:.2e} (> {atol}) on the example batch: "
            f"{differences}; the graphs in {output_dir} are not usable."
        )
    (output_dir / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    logger.info(
        "Exported %s to %s (largest difference to PyTorch on the example batch: %.2e)", model_path, output_dir, worst
    )
    return manifest


class ONNXTERModel:
    """The exported graphs of a TER checkpoint run by onnxruntime, in place of `TERForEmotionRecognition`.

    Called with the model's inputs (the processor's output: raw inputs of any subset of the modalities, or
    `<modality>_embeds`, and `modality_mask`), it returns a `TEROutput` with `probs`, `confidence`, `trusted`,
    `modality_alpha`, `modality_confidence`, `modality_mask` and `conflict` (the other fields are `None`). It has
    what `TrustedEmotionRecognitionPipeline` reads of a model (`config`, `device`), so the pipeline runs it unchanged
    (see `onnx_pipeline`). Input checks are the processor's and the pipeline's: the graphs hold none.

    Args:
        folder: an export folder written by `export_onnx`.
        num_threads: onnxruntime's intra-op threads per graph (`None`: its default, one per core).
        providers: onnxruntime execution providers.
    """

    device = torch.device("cpu")
    dtype = torch.float32

    def __init__(
        self,
        folder: Union[str, os.PathLike],
        num_threads: Optional[int] = None,
        providers: Sequence[str] = ("CPUExecutionProvider",),
    ):
        try:
            import onnxruntime
        except ImportError as error:
            raise ImportError("ONNXTERModel needs onnxruntime: pip install onnxruntime") from error
        folder = Path(folder)
        manifest_path = folder / MANIFEST_NAME
        if not manifest_path.is_file():
            raise FileNotFoundError(
                f"{folder} has no {MANIFEST_NAME}; write the folder with "
                "`python scripts/export_onnx.py --model <checkpoint> --output <folder>`."
            )
        self.manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        self.config = TERConfig.from_pretrained(folder)
        options = onnxruntime.SessionOptions()
        if num_threads is not None:
            options.intra_op_num_threads = num_threads
            options.inter_op_num_threads = 1
        self.num_threads = num_threads

        def session(file_name: str):
            return onnxruntime.InferenceSession(str(folder / file_name), options, providers=list(providers))

        self.encoders = {m: session(entry["file"]) for m, entry in self.manifest["encoders"].items()}
        self.fusion = session(self.manifest["fusion"]["file"])

    def fuse(self, *args: Any, **kwargs: Any) -> TEROutput:
        """`TERForEmotionRecognition.fuse`: opinions fused from given evidence, tensor math on `self.config` alone (no
        weights), as the pipeline pools the windows of long audio."""
        return TERForEmotionRecognition.fuse(self, *args, **kwargs)

    def combine_windows(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        """`TERForEmotionRecognition.combine_windows` (tensor math, no weights)."""
        return TERForEmotionRecognition.combine_windows(self, *args, **kwargs)

    def eval(self) -> "ONNXTERModel":
        """No-op (the graphs are exported in eval mode); as `nn.Module.eval`, so callers need not tell them apart."""
        return self

    def to(self, device: Union[str, torch.device]) -> "ONNXTERModel":
        if torch.device(device).type != "cpu":
            raise ValueError(f"ONNXTERModel returns CPU tensors; got device {device}.")
        return self

    def __call__(
        self, modality_mask: Optional[torch.Tensor] = None, return_dict: bool = True, **inputs: torch.Tensor
    ) -> Union[TEROutput, tuple]:
        """Runs the encoder graphs of the modalities given raw, then the heads and fusion graph.

        Args:
            modality_mask (`torch.BoolTensor` of shape `(batch_size, num_modalities)`, *optional*): as in the model;
                a modality without input is absent whatever the mask says.
            return_dict: a `TEROutput` (default) or its tuple, as the model.
            inputs: raw inputs named as the model's (`audio_input_features` `(batch_size, 80, frames)`,
                `text_input_ids` `(batch_size, tokens)`, ...) or `<modality>_embeds` `(batch_size, embed_dim)` /
                `(batch_size, num_feature_layers, embed_dim)`; tensors or arrays.
        """
        modalities = self.config.modalities
        known = {f"{m}_embeds" for m in modalities}
        known.update(name for entry in self.manifest["encoders"].values() for name in entry["inputs"])
        unknown = sorted(name for name, value in inputs.items() if value is not None and name not in known)
        if unknown:
            raise TypeError(f"ONNXTERModel got unexpected inputs {unknown}; it takes {sorted(known)}.")
        arrays = {name: np.asarray(value) for name, value in inputs.items() if value is not None}
        batch_size = next(iter(arrays.values())).shape[0] if arrays else 0
        embeds, has_input = {}, []
        for modality in modalities:
            entry = self.manifest["encoders"].get(modality)
            raw = entry is not None and any(name in arrays for name in entry["inputs"])
            if raw:
                feed = {name: arrays[name] for name in entry["inputs"]}
                embeds[modality] = self.encoders[modality].run(None, feed)[0]
            elif f"{modality}_embeds" in arrays:
                given = arrays[f"{modality}_embeds"].astype(np.float32)
                embeds[modality] = given[:, None] if given.ndim == 2 else given
            else:
                modality_config = self.config.modality_config(modality)
                shape = (batch_size, modality_config["num_feature_layers"], modality_config["embed_dim"])
                embeds[modality] = np.zeros(shape, dtype=np.float32)
            has_input.append(raw or f"{modality}_embeds" in arrays)
        present = np.broadcast_to(np.array(has_input), (batch_size, len(modalities)))
        if modality_mask is not None:
            present = present & np.asarray(modality_mask, dtype=bool)
        feed = {"modality_mask": np.ascontiguousarray(present), **{f"{m}_embeds": embeds[m] for m in modalities}}
        outputs = self.fusion.run(None, feed)
        fields = {name: torch.from_numpy(value) for name, value in zip(self.manifest["fusion"]["outputs"], outputs)}
        output = TEROutput(**fields, modality_mask=torch.from_numpy(feed["modality_mask"]))
        return output if return_dict else output.to_tuple()


def onnx_pipeline(
    folder: Union[str, os.PathLike], num_threads: Optional[int] = None, **kwargs: Any
) -> TrustedEmotionRecognitionPipeline:
    """The trusted-emotion-recognition pipeline on an export folder: same inputs, outputs and errors, onnxruntime inside.

    Args:
        folder: an export folder written by `export_onnx` (graphs, config and processor).
        num_threads: onnxruntime's intra-op threads per graph (`None`: its default).
        kwargs: further `TrustedEmotionRecognitionPipeline` arguments (`batch_size`, ...).
    """
    processor = AutoProcessor.from_pretrained(folder)
    model = ONNXTERModel(folder, num_threads=num_threads)
    return TrustedEmotionRecognitionPipeline(model=model, processor=processor, device=-1, **kwargs)


__all__ = ["ONNXTERModel", "example_inputs", "export_onnx", "onnx_pipeline", "output_differences"]
