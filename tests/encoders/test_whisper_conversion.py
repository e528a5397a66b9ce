"""The CTranslate2 -> transformers Whisper tiny.en converter and the unpadded encoder path."""

import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from modeling_ter.encoders import whisper_conversion
from modeling_ter.encoders.whisper_conversion import (
    bundled_whisper_tiny_en_dir,
    convert_ctranslate2_whisper,
    read_ctranslate2_model,
    whisper_tiny_en_path,
)
from modeling_ter.models.whisper_unpadded import whisper_encoder_unpadded

# The project's own copy of the real CREMA-D clips (16 kHz, lossless FLAC of set A's WAV files).
CREMA_D = Path(__file__).resolve().parents[2] / "data" / "crema_d" / "AudioWAV_16k"
CLIP = CREMA_D / "1001_DFA_ANG_XX.flac"
needs_clip = pytest.mark.skipif(not CLIP.is_file(), reason=f"the real CREMA-D clip {CLIP} is not on this machine")


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> Path:
    return whisper_tiny_en_path(cache_dir=tmp_path_factory.mktemp("ter_cache"))


@pytest.fixture(scope="module")
def model(converted):
    from transformers import WhisperForConditionalGeneration

    return WhisperForConditionalGeneration.from_pretrained(converted).eval()


@pytest.fixture(scope="module")
def feature_extractor(converted):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(converted).feature_extractor


def _features(feature_extractor, files: list[Path]) -> tuple[torch.Tensor, torch.Tensor]:
    """30 s log-mel features (batch, 80, 3000) of real 16 kHz clips and their mel-frame mask (batch, 3000)."""
    import soundfile as sf

    waves = [sf.read(file, dtype="float32")[0] for file in files]
    batch = feature_extractor(waves, sampling_rate=16000, return_tensors="pt", return_attention_mask=True)
    return batch.input_features, batch.attention_mask


def _write_ct2(path: Path, variables: list[tuple[str, int, np.ndarray]], aliases=()) -> None:
    """Write a CTranslate2 model.bin (binary version 6) from (name, dtype code, array) triples."""

    def string(text: str) -> bytes:
        raw = text.encode() + b"\0"
        return struct.pack("<H", len(raw)) + raw

    out = struct.pack("<I", 6) + string("TestSpec") + struct.pack("<II", 1, len(variables))
    for name, code, array in variables:
        raw = array.tobytes()
        out += string(name) + struct.pack("<B", array.ndim) + struct.pack(f"<{array.ndim}I", *array.shape)
        out += struct.pack("<BI", code, len(raw)) + raw
    out += struct.pack("<I", len(aliases)) + b"".join(string(a) + string(t) for a, t in aliases)
    path.write_bytes(out)


# --- (d) the reader ---------------------------------------------------------------------------------------------


def test_reader_reads_every_dtype_scalars_and_aliases(tmp_path):
    values = np.array([[1.5, -2.0, 0.25], [3.0, 0.0, -0.5]])
    bfloat16 = (values.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)  # exact for these values
    variables = [
        ("f32", 0, values.astype("<f4")),
        ("i8", 1, np.array([-3, 7], dtype="i1")),
        ("i16", 2, np.array([-300, 7], dtype="<i2")),
        ("i32", 3, np.array([[-70000], [5]], dtype="<i4")),
        ("f16", 4, values.astype("<f2")),
        ("bf16", 5, bfloat16),
        ("num_heads", 2, np.array(6, dtype="<i2")),
    ]
    _write_ct2(tmp_path / "model.bin", variables, aliases=[("tied", "f16")])

    checkpoint = read_ctranslate2_model(tmp_path)
    read = checkpoint.variables
    assert (checkpoint.spec_name, checkpoint.spec_revision, checkpoint.binary_version) == ("TestSpec", 1, 6)
    for name, _, array in variables[:5]:
        assert read[name].dtype == array.dtype and np.array_equal(read[name], array)
    assert read["bf16"].dtype == np.float32 and np.array_equal(read["bf16"], values.astype(np.float32))
    assert read["num_heads"].shape == () and int(read["num_heads"]) == 6
    assert read["tied"] is read["f16"]


def test_reader_on_the_bundled_whisper():
    checkpoint = read_ctranslate2_model(bundled_whisper_tiny_en_dir() / "model.bin")
    variables = checkpoint.variables
    assert (checkpoint.spec_name, checkpoint.spec_revision) == ("WhisperSpec", 3)
    assert variables["encoder/conv1/weight"].shape == (384, 80, 3)
    assert variables["encoder/conv1/weight"].dtype == np.float16
    assert variables["encoder/layer_0/self_attention/linear_0/weight"].shape == (3 * 384, 384)
    assert int(variables["encoder/num_heads"]) == 6 and int(variables["decoder/num_heads"]) == 6
    # The fused q, k, v bias holds zeros for the bias-free k projection.
    assert not variables["encoder/layer_0/self_attention/linear_0/bias"][384:768].any()
    assert variables["decoder/projection/weight"] is variables["decoder/embeddings/weight"]


def test_reader_rejects_truncated_and_corrupt_files(tmp_path):
    head = (bundled_whisper_tiny_en_dir() / "model.bin").read_bytes()[:100_000]
    truncated = tmp_path / "truncated.bin"
    truncated.write_bytes(head)
    with pytest.raises(ValueError, match=r"truncated\.bin is truncated or corrupt.*Reinstall"):
        read_ctranslate2_model(truncated)

    (tmp_path / "empty.bin").write_bytes(b"")
    with pytest.raises(ValueError, match="truncated or corrupt"):
        read_ctranslate2_model(tmp_path / "empty.bin")

    good = tmp_path / "model.bin"
    _write_ct2(good, [("x", 4, np.ones(3, dtype="<f2"))])
    raw = good.read_bytes()
    (tmp_path / "trailing.bin").write_bytes(raw + b"\x00\x01")
    with pytest.raises(ValueError, match="unexpected bytes"):
        read_ctranslate2_model(tmp_path / "trailing.bin")
    dtype_at = raw.index(b"x\0") + 2 + 1 + 4  # name, rank, one dim
    (tmp_path / "dtype.bin").write_bytes(raw[:dtype_at] + b"\x09" + raw[dtype_at + 1 :])
    with pytest.raises(ValueError, match="unknown dtype code 9"):
        read_ctranslate2_model(tmp_path / "dtype.bin")
    (tmp_path / "version.bin").write_bytes(struct.pack("<I", 99) + raw[4:])
    with pytest.raises(ValueError, match="binary version 99"):
        read_ctranslate2_model(tmp_path / "version.bin")
    with pytest.raises(FileNotFoundError, match="No CTranslate2 model file"):
        read_ctranslate2_model(tmp_path / "missing")


# --- the converted folder ---------------------------------------------------------------------------------------


def test_converted_folder_is_a_standard_whisper_tiny_en(converted, model):
    from transformers import AutoModel, AutoProcessor, AutoTokenizer, WhisperModel, WhisperProcessor

    config = model.config
    assert (config.d_model, config.encoder_layers, config.decoder_layers) == (384, 4, 4)
    assert (config.encoder_attention_heads, config.decoder_attention_heads, config.num_mel_bins) == (6, 6, 80)
    assert (config.vocab_size, config.max_source_positions, config.max_target_positions) == (51864, 1500, 448)
    assert (config.encoder_ffn_dim, config.activation_function) == (1536, "gelu")
    assert model.proj_out.weight.data_ptr() == model.model.decoder.embed_tokens.weight.data_ptr()
    assert sum(p.numel() for p in model.model.encoder.parameters()) == 8_208_384
    assert model.model.encoder.conv1.weight.dtype == torch.float32
    assert model.generation_config.no_timestamps_token_id == 50362

    _, info = WhisperModel.from_pretrained(converted, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert type(AutoModel.from_pretrained(converted)).__name__ == "WhisperModel"

    tokenizer = AutoTokenizer.from_pretrained(converted)
    ids = tokenizer("Don't forget a jacket.").input_ids
    assert ids == [50257, 50362, 3987, 470, 6044, 257, 15224, 13, 50256]
    assert tokenizer.decode(ids, skip_special_tokens=True) == "Don't forget a jacket."
    assert len(tokenizer) == 51864 and tokenizer.convert_tokens_to_ids("<|30.00|>") == 51863
    processor = AutoProcessor.from_pretrained(converted)
    assert isinstance(processor, WhisperProcessor)
    assert (processor.feature_extractor.feature_size, processor.feature_extractor.sampling_rate) == (80, 16000)
    assert (converted / "preprocessor_config.json").is_file()


# --- (a) converted encoder vs CTranslate2 -------------------------------------------------------------------------


@needs_clip
def test_encoder_matches_ctranslate2(model, feature_extractor):
    ctranslate2 = pytest.importorskip("ctranslate2")
    features, _ = _features(feature_extractor, [CLIP])
    original = ctranslate2.models.Whisper(str(bundled_whisper_tiny_en_dir()), device="cpu", compute_type="float32")
    expected = torch.from_numpy(np.array(original.encode(ctranslate2.StorageView.from_array(features.numpy()))))
    with torch.no_grad():
        actual = model.model.encoder(features).last_hidden_state
    difference = (actual - expected).abs().max().item()
    print(f"converted encoder vs CTranslate2 on {CLIP.name}: max abs difference {difference:.2e}")
    assert actual.shape == expected.shape == (1, 1500, 384)
    assert difference < 2e-4  # measured 2.4e-5 (float16 weights, float32 compute in both)


@needs_clip
def test_greedy_transcription_matches_ctranslate2(model, feature_extractor, converted):
    from transformers import AutoTokenizer

    ctranslate2 = pytest.importorskip("ctranslate2")
    features, _ = _features(feature_extractor, [CLIP])
    original = ctranslate2.models.Whisper(str(bundled_whisper_tiny_en_dir()), device="cpu", compute_type="float32")
    prompt = [[model.generation_config.decoder_start_token_id, model.generation_config.no_timestamps_token_id]]
    expected = original.generate(ctranslate2.StorageView.from_array(features.numpy()), prompt, beam_size=1)
    with torch.no_grad():
        generated = model.generate(features, num_beams=1, do_sample=False)
    assert generated[0].tolist() == expected[0].sequences_ids[0]
    text = AutoTokenizer.from_pretrained(converted).decode(generated[0], skip_special_tokens=True)
    assert text.strip() == "Don't forget a jacket."


# --- (b) the unpadded encoder path --------------------------------------------------------------------------------


@needs_clip
def test_unpadded_path_at_full_length_equals_transformers(model, feature_extractor):
    encoder = model.model.encoder
    features, _ = _features(feature_extractor, [CLIP])
    with torch.no_grad():
        reference = encoder(features, output_hidden_states=True)
        last, hidden_states, frame_mask = whisper_encoder_unpadded(encoder, features, output_hidden_states=True)
    assert len(hidden_states) == len(reference.hidden_states) == 5
    for ours, theirs in zip(hidden_states, reference.hidden_states):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)
    torch.testing.assert_close(last, reference.last_hidden_state, rtol=0, atol=1e-6)
    assert frame_mask.shape == (1, 1500) and bool(frame_mask.all())


@needs_clip
@pytest.mark.parametrize("attn_implementation", ["eager", "sdpa"])
def test_batch_of_unequal_lengths_equals_each_clip_alone(converted, feature_extractor, attn_implementation):
    from transformers import WhisperModel

    encoder = WhisperModel.from_pretrained(converted, attn_implementation=attn_implementation).encoder.eval()
    # 228 and 191 real mel frames: the odd one checks the ceil(T / 2) frame count.
    features, mask = _features(feature_extractor, [CLIP, CREMA_D / "1001_DFA_HAP_XX.flac"])
    lengths = mask.sum(-1)
    assert lengths.tolist() == [228, 191]
    num_frames = int(lengths.max())
    with torch.no_grad():
        last, hidden_states, frame_mask = whisper_encoder_unpadded(
            encoder, features[:, :, :num_frames], mask[:, :num_frames], output_hidden_states=True
        )
        assert frame_mask.sum(-1).tolist() == [114, 96] and last.shape == (2, 114, 384)
        for i, length in enumerate(lengths.tolist()):
            alone, alone_states, _ = whisper_encoder_unpadded(
                encoder, features[i : i + 1, :, :length], output_hidden_states=True
            )
            frames = alone.shape[1]
            torch.testing.assert_close(last[i, :frames], alone[0], rtol=1e-4, atol=1e-4)  # measured 1.7e-4 abs
            for batched, single in zip(hidden_states, alone_states):
                torch.testing.assert_close(batched[i, :frames], single[0], rtol=1e-4, atol=1e-4)


@pytest.mark.skipif(not CREMA_D.is_dir(), reason=f"the real CREMA-D clips {CREMA_D} are not on this machine")
def test_unpadded_pooled_embedding_is_close_to_the_padded_one(model, feature_extractor):
    """Masked-mean pooled last hidden state, real frames only, on the 6 real CREMA-D clips (2.0-2.4 s).

    Not exact: in the 30 s path every layer also attends to ~1390 padding frames. Measured: cosine similarity
    0.950-0.969, relative L2 difference 0.26-0.33 (EmoDB 2 s clips: cosine 0.937-0.967). Each unpadded embedding
    is still nearest to its own padded embedding among the clips.
    """
    encoder = model.model.encoder
    files = sorted(CREMA_D.glob("*.flac"))
    features, mask = _features(feature_extractor, files)
    num_frames = int(mask.sum(-1).max())
    with torch.no_grad():
        padded = torch.cat([encoder(clip[None]).last_hidden_state for clip in features])  # batch 1 is faster
        unpadded, _, frame_mask = whisper_encoder_unpadded(encoder, features[:, :, :num_frames], mask[:, :num_frames])
    weights = frame_mask[..., None].float()
    pooled_unpadded = (unpadded * weights).sum(1) / weights.sum(1)
    pooled_padded = (padded[:, : unpadded.shape[1]] * weights).sum(1) / weights.sum(1)

    cosine = torch.nn.functional.cosine_similarity(pooled_unpadded, pooled_padded, dim=-1)
    relative = (pooled_unpadded - pooled_padded).norm(dim=-1) / pooled_padded.norm(dim=-1)
    print(f"pooled unpadded vs padded: cosine {cosine.numpy().round(4)}, relative diff {relative.numpy().round(3)}")
    assert len(files) == 6
    assert bool((cosine > 0.93).all()) and bool((relative < 0.40).all())
    centred = torch.nn.functional.cosine_similarity(
        (pooled_unpadded - pooled_unpadded.mean(0))[:, None], (pooled_padded - pooled_padded.mean(0))[None], dim=-1
    )
    assert centred.argmax(1).tolist() == list(range(len(files)))


def test_unpadded_path_rejects_bad_input(model):
    encoder = model.model.encoder
    with pytest.raises(ValueError, match=r"shape \(batch_size, 80, num_frames <= 3000\), but got \(1, 40, 100\)"):
        whisper_encoder_unpadded(encoder, torch.zeros(1, 40, 100))
    with pytest.raises(ValueError, match="num_frames <= 3000"):
        whisper_encoder_unpadded(encoder, torch.zeros(1, 80, 3002))
    with pytest.raises(ValueError, match="attention mask has shape"):
        whisper_encoder_unpadded(encoder, torch.zeros(2, 80, 10), torch.ones(2, 9))
    with pytest.raises(ValueError, match="non-empty prefix"):
        whisper_encoder_unpadded(encoder, torch.zeros(1, 80, 4), torch.tensor([[1, 0, 1, 1]]))
    with pytest.raises(ValueError, match="non-empty prefix"):
        whisper_encoder_unpadded(encoder, torch.zeros(1, 80, 4), torch.zeros(1, 4))


# --- (c) caching: idempotent and atomic ---------------------------------------------------------------------------


def test_whisper_tiny_en_path_is_idempotent(converted, monkeypatch):
    mtimes = {file.name: file.stat().st_mtime_ns for file in converted.iterdir()}

    def fail(*args, **kwargs):
        raise AssertionError("a second call converted again")

    monkeypatch.setattr(whisper_conversion, "convert_ctranslate2_whisper", fail)
    monkeypatch.setenv("TER_CACHE", str(converted.parent))
    assert whisper_tiny_en_path() == converted == whisper_tiny_en_path(converted.parent)
    assert {file.name: file.stat().st_mtime_ns for file in converted.iterdir()} == mtimes
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "tokenizer.json"} <= set(mtimes)


def test_failed_conversion_leaves_no_target_folder(tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise RuntimeError("interrupted while writing the tokenizer")

    monkeypatch.setattr(whisper_conversion, "_save_processor", interrupted)
    with pytest.raises(RuntimeError, match="interrupted"):
        whisper_tiny_en_path(cache_dir=tmp_path)
    assert os.listdir(tmp_path) == []

    # An existing folder survives a failed re-conversion untouched.
    existing = tmp_path / "whisper-tiny.en"
    existing.mkdir()
    (existing / "config.json").write_text("{}")
    with pytest.raises(RuntimeError, match="interrupted"):
        convert_ctranslate2_whisper(bundled_whisper_tiny_en_dir(), existing)
    assert os.listdir(tmp_path) == ["whisper-tiny.en"] and os.listdir(existing) == ["config.json"]
