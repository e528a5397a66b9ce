"""TER traces whole: `torch.export` on raw audio + text (dynamic batch and lengths) and `torch.compile(fullgraph=True)`
on precomputed embeds both match eager. Input validation is data-dependent and is skipped while tracing."""

import pytest
import torch
from tiny_models import tiny_ter_with_every_backbone  # tests/ is on sys.path (conftest)
from torch.export import Dim

FIELDS = ("alpha", "probs", "uncertainty", "confidence", "modality_alpha", "modality_confidence", "conflict")


def audio_text_inputs(lengths: list[int], tokens: list[int], seed: int) -> dict[str, torch.Tensor]:
    """Random raw inputs for the tiny model: mel features `(batch, 80, max(lengths))` and token ids
    `(batch, max(tokens))`, each with its right-padded attention mask."""
    generator = torch.Generator().manual_seed(seed)
    batch_size, num_frames, num_tokens = len(lengths), max(lengths), max(tokens)
    return {
        "audio_input_features": torch.randn(batch_size, 80, num_frames, generator=generator),
        "audio_attention_mask": (torch.arange(num_frames) < torch.tensor(lengths)[:, None]).long(),
        "text_input_ids": torch.randint(1, 40, (batch_size, num_tokens), generator=generator),
        "text_attention_mask": (torch.arange(num_tokens) < torch.tensor(tokens)[:, None]).long(),
    }


def assert_outputs_match(actual, expected, atol: float = 1e-5) -> None:
    for field in FIELDS:
        difference = (actual[field] - getattr(expected, field)).abs().max().item()
        assert difference <= atol, f"{field}: max abs difference {difference:.2e} > {atol}"
    assert torch.equal(actual["trusted"], expected.trusted)
    assert torch.equal(actual["modality_mask"], expected.modality_mask)


@pytest.fixture(scope="module")
def model():
    return tiny_ter_with_every_backbone()


@torch.no_grad()
def test_torch_export_with_dynamic_batch_and_lengths_matches_eager(model):
    example = audio_text_inputs(lengths=[60, 40, 10], tokens=[6, 3, 6], seed=1)
    batch, frames, tokens = Dim.DYNAMIC, Dim.DYNAMIC, Dim.DYNAMIC
    dynamic_shapes = {
        "audio_input_features": {0: batch, 2: frames},
        "audio_attention_mask": {0: batch, 1: frames},
        "text_input_ids": {0: batch, 1: tokens},
        "text_attention_mask": {0: batch, 1: tokens},
    }
    program = torch.export.export(model, (), kwargs=example, dynamic_shapes=dynamic_shapes)
    shapes = {
        node.name: node.meta["val"].shape
        for node in program.graph.nodes
        if node.op == "placeholder" and node.name in program.graph_signature.user_inputs
    }
    for name, axes in dynamic_shapes.items():
        assert all(isinstance(shapes[name][axis], torch.SymInt) for axis in axes), (name, shapes[name])
    exported = program.module()
    # Other batch sizes and lengths than the example, padded and unpadded, the shortest clip the graph takes (3 mel
    # frames) and 100 frames (the tiny Whisper takes up to 2 * max_source_positions).
    for lengths, tokens in (([90, 30, 5, 60, 90], [11, 3, 7, 2, 5]), ([100], [4]), ([3, 100], [2, 9])):
        inputs = audio_text_inputs(lengths, tokens, seed=len(lengths))
        assert_outputs_match(exported(**inputs), model(**inputs))


@torch.no_grad()
def test_torch_compile_fullgraph_on_embeds_matches_eager(model):
    # aot_eager traces through dynamo and AOTAutograd like inductor does (fullgraph=True fails on any graph break)
    # without compiling C++, which keeps the test fast on CPU.
    compiled = torch.compile(model, fullgraph=True, dynamic=True, backend="aot_eager")
    for batch_size in (4, 7):
        generator = torch.Generator().manual_seed(batch_size)
        inputs = {
            "audio_embeds": torch.randn(batch_size, 2, 16, generator=generator),  # 1 Whisper layer + embeddings
            "text_embeds": torch.randn(batch_size, 16, generator=generator),
            "video_embeds": torch.randn(batch_size, 16, generator=generator),
            "modality_mask": torch.rand(batch_size, 3, generator=generator) < 0.7,
        }
        inputs["modality_mask"][:, 1] = True  # every sample keeps at least one modality
        assert_outputs_match(compiled(**inputs), model(**inputs))


def test_validation_still_runs_in_eager(model):
    inputs = audio_text_inputs(lengths=[20, 10], tokens=[4, 4], seed=0)
    inputs["audio_input_features"][1, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"audio_input_features holds NaN or inf for samples \[1\]"):
        model(**inputs)
    inputs = audio_text_inputs(lengths=[20, 10], tokens=[4, 4], seed=0)
    with pytest.raises(ValueError, match=r"Samples \[0\] have no modality present"):
        model(**inputs, modality_mask=torch.tensor([[False, False, True], [True, True, True]]))
    inputs["audio_attention_mask"][0, 5] = 0
    with pytest.raises(ValueError, match="non-empty prefix of 1s"):
        model(**inputs)
