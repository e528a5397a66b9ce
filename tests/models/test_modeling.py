"""TERConfig / TERForEmotionRecognition on tiny configs: outputs, masking, gradients, save/load, bad input."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_models import tiny_bert_config, tiny_whisper_config
from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification

from modeling_ter import TERConfig, TERForEmotionRecognition, TEROutput

NUM_LABELS = 4
TINY_BERT = tiny_bert_config(num_hidden_layers=2, max_position_embeddings=32).to_dict()


def tiny_config(modalities: dict | None = None, **overrides) -> TERConfig:
    """Audio, text and video embeds-only sub-configs; `modalities` replaces some (`None` drops one)."""
    modality_configs = {
        "audio": {"embed_dim": 12},
        "text": {"embed_dim": 8},
        "video": {"embed_dim": 6, "num_feature_layers": 3, "use_weighted_layer_sum": True},
        **(modalities or {}),
    }
    arguments = dict(
        modality_configs={m: c for m, c in modality_configs.items() if c is not None},
        id2label={0: "anger", 1: "happiness", 2: "neutral", 3: "sadness"},
        head_hidden_size=10,
        annealing_steps=10,
    )
    arguments.update(overrides)
    return TERConfig(**arguments)


def tiny_inputs(batch_size=5, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return {
        "audio_embeds": torch.randn(batch_size, 12, generator=generator),
        "text_embeds": torch.randn(batch_size, 8, generator=generator),
        "video_embeds": torch.randn(batch_size, 3, 6, generator=generator),
    }


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return TERForEmotionRecognition(tiny_config()).eval()


def test_output_fields_shapes_and_consistency(model):
    labels = torch.tensor([0, 1, 2, 3, 0])
    out = model(**tiny_inputs(), labels=labels, global_step=3)
    assert isinstance(out, TEROutput)
    assert out.logits.shape == out.alpha.shape == out.probs.shape == (5, NUM_LABELS)
    assert out.modality_alpha.shape == (5, 3, NUM_LABELS) and out.conflict.shape == (5, 3, 3)
    torch.testing.assert_close(out.logits.softmax(-1), out.probs)
    torch.testing.assert_close(out.probs, out.alpha / out.alpha.sum(-1, keepdim=True))
    torch.testing.assert_close(out.uncertainty, NUM_LABELS / out.alpha.sum(-1))
    belief_of_the_prediction = (out.alpha.max(-1).values - 1) / out.alpha.sum(-1)  # the default confidence_measure
    torch.testing.assert_close(out.confidence, belief_of_the_prediction)
    modality_belief = (out.modality_alpha.max(-1).values - 1) / out.modality_alpha.sum(-1)
    torch.testing.assert_close(out.modality_confidence, modality_belief)
    assert out.trusted is None and out.loss.ndim == 0 and torch.isfinite(out.loss)
    assert (out.alpha >= 1).all() and (out.modality_alpha >= 1).all()
    as_tuple = model(**tiny_inputs(), return_dict=False)
    torch.testing.assert_close(as_tuple[0], out.logits)


def test_trusted_flag_uses_the_configured_threshold():
    torch.manual_seed(0)
    model = TERForEmotionRecognition(tiny_config(confidence_measure="max_probability")).eval()
    out = model(**tiny_inputs())
    threshold = out.confidence.median().item()
    model.config.trusted_threshold = threshold
    trusted = model(**tiny_inputs()).trusted
    assert trusted.dtype == torch.bool
    assert torch.equal(trusted, out.confidence >= threshold)
    torch.testing.assert_close(out.confidence, out.probs.max(-1).values)


def test_masked_modality_equals_model_without_it(model):
    inputs = tiny_inputs()
    mask = torch.ones(5, 3, dtype=torch.bool)
    mask[1, 2] = False  # video missing for sample 1
    mask[3, 0] = False  # audio missing for sample 3
    masked = model(**inputs, modality_mask=mask, labels=torch.tensor([0, 1, 2, 3, 0]))

    audio_text = TERForEmotionRecognition(tiny_config({"video": None})).eval()
    text_video = TERForEmotionRecognition(tiny_config({"audio": None})).eval()
    for smaller in (audio_text, text_video):
        for modality in smaller.config.modalities:
            smaller.heads[modality].load_state_dict(model.heads[modality].state_dict())
        if "video" in smaller.config.modalities:
            smaller.layer_weighting["video"].load_state_dict(model.layer_weighting["video"].state_dict())
    without_video = audio_text(audio_embeds=inputs["audio_embeds"][1:2], text_embeds=inputs["text_embeds"][1:2])
    without_audio = text_video(text_embeds=inputs["text_embeds"][3:4], video_embeds=inputs["video_embeds"][3:4])
    torch.testing.assert_close(masked.alpha[1:2], without_video.alpha, rtol=0, atol=0)
    torch.testing.assert_close(masked.alpha[3:4], without_audio.alpha, rtol=0, atol=0)
    assert masked.modality_confidence[1, 2] == 0 and masked.conflict[1, 2].abs().sum() == 0
    # Not passing a modality at all is the same as masking it for every sample.
    no_video = model(audio_embeds=inputs["audio_embeds"], text_embeds=inputs["text_embeds"])
    all_masked = model(**inputs, modality_mask=torch.tensor([[True, True, False]]).expand(5, 3))
    torch.testing.assert_close(no_video.alpha, all_masked.alpha, rtol=0, atol=0)
    # The loss only counts present modalities: garbage in a masked modality's input changes nothing.
    garbage = dict(inputs, video_embeds=inputs["video_embeds"] * 1e3)
    masked_garbage = model(**garbage, modality_mask=mask, labels=torch.tensor([0, 1, 2, 3, 0]))
    torch.testing.assert_close(masked_garbage.alpha[1], masked.alpha[1], rtol=0, atol=0)


def test_gradients_reach_every_head_and_layer_weights():
    torch.manual_seed(0)
    model = TERForEmotionRecognition(tiny_config(head_dropout=0.0)).train()
    model(**tiny_inputs(), labels=torch.tensor([0, 1, 2, 3, 0]), global_step=5).loss.backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_loss_is_fused_plus_present_modalities(model):
    inputs, labels = tiny_inputs(), torch.tensor([0, 1, 2, 3, 0])
    mask = torch.ones(5, 3, dtype=torch.bool)
    mask[0, 1] = False
    out = model(**inputs, modality_mask=mask, labels=labels, global_step=4)
    per_sample = model.trusted_ce(out.alpha, labels, 4)
    for index in range(3):
        per_sample = per_sample + model.trusted_ce(out.modality_alpha[:, index], labels, 4) * mask[:, index]
    torch.testing.assert_close(out.loss, per_sample.mean())


def test_raw_text_backbone_and_weighted_layers():
    torch.manual_seed(0)
    config = tiny_config({"text": {"backbone": TINY_BERT, "use_weighted_layer_sum": True}})
    assert (
        config.modality_config("text")["embed_dim"] == 16 and config.modality_config("text")["num_feature_layers"] == 3
    )
    model = TERForEmotionRecognition(config).eval()
    input_ids = torch.randint(1, 50, (2, 7))
    attention_mask = torch.tensor([[1] * 7, [1] * 4 + [0] * 3])
    features = model.embed_modality("text", input_ids=input_ids, attention_mask=attention_mask)
    assert features.shape == (2, 3, 16)
    # Padding does not change the pooled features of the shorter sample.
    alone = model.embed_modality("text", input_ids=input_ids[1:, :4], attention_mask=attention_mask[1:, :4])
    torch.testing.assert_close(features[1:], alone, rtol=1e-5, atol=1e-6)
    raw = model(text_input_ids=input_ids, text_attention_mask=attention_mask)
    cached = model(text_embeds=features)
    torch.testing.assert_close(raw.alpha, cached.alpha)


def test_save_and_auto_reload_bit_for_bit(tmp_path, model):
    model.config.trusted_threshold = 0.25
    model.save_pretrained(tmp_path)
    model.config.trusted_threshold = None
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["auto_map"] == {
        "AutoConfig": "configuration_ter.TERConfig",
        "AutoModel": "modeling_ter.TERForEmotionRecognition",
    }
    assert {"configuration_ter.py", "modeling_ter.py", "model.safetensors"} <= {p.name for p in tmp_path.iterdir()}
    reloaded = AutoModel.from_pretrained(tmp_path).eval()
    assert isinstance(reloaded, TERForEmotionRecognition) and isinstance(
        AutoConfig.from_pretrained(tmp_path), TERConfig
    )
    assert reloaded.config.id2label == model.config.id2label and reloaded.config.label2id == model.config.label2id
    assert reloaded.config.trusted_threshold == 0.25
    expected, got = model(**tiny_inputs()), reloaded(**tiny_inputs())
    for field in ("alpha", "probs", "uncertainty", "modality_alpha", "conflict"):
        assert torch.equal(getattr(expected, field), getattr(got, field)), field
    assert isinstance(AutoModelForSequenceClassification.from_pretrained(tmp_path), TERForEmotionRecognition)


REMOTE_CODE_SCRIPT = textwrap.dedent(
    """
    import importlib.util, json, sys
    # Cut every route to the installed package: editable-install finders and the repository on sys.path.
    sys.meta_path = [f for f in sys.meta_path if "__editable__" not in getattr(f, "__module__", "")]
    sys.path_hooks = [h for h in sys.path_hooks if "__editable__" not in getattr(h, "__module__", "")]
    sys.path = [p for p in sys.path if p and not p.startswith(sys.argv[2])]
    sys.path_importer_cache.clear()
    assert importlib.util.find_spec("modeling_ter") is None, "the package is still importable"
    import torch
    from transformers import AutoModel
    model = AutoModel.from_pretrained(sys.argv[1], trust_remote_code=True).eval()
    assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
    inputs = torch.load(sys.argv[1] + "/inputs.pt")
    out = model(**inputs)
    torch.save({"alpha": out.alpha, "conflict": out.conflict, "labels": model.config.id2label}, sys.argv[1] + "/out.pt")
    """
)


def test_remote_code_loads_without_the_package(tmp_path, model):
    model.save_pretrained(tmp_path)
    inputs = tiny_inputs()
    torch.save(inputs, tmp_path / "inputs.pt")
    repo_root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"))
    result = subprocess.run(
        [sys.executable, "-c", REMOTE_CODE_SCRIPT, str(tmp_path), repo_root],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    remote = torch.load(tmp_path / "out.pt")
    expected = model(**inputs)
    assert torch.equal(remote["alpha"], expected.alpha) and torch.equal(remote["conflict"], expected.conflict)
    assert remote["labels"] == model.config.id2label


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: TERConfig(modality_configs={"speech": {"embed_dim": 4}}), r"Unknown modality .*\['speech'\]"),
        (lambda: TERConfig(), "needs at least one modality"),
        (lambda: TERConfig(modality_configs={"audio": {}}), "needs 'embed_dim'"),
        (lambda: TERConfig(modality_configs={"audio": {"embed_dim": 4}}, fusion="bayes"), "fusion must be one of"),
        (
            lambda: TERConfig(modality_configs={"audio": {"embed_dim": 4, "pooling": "max"}}),
            r"\['pooling'\] must be one of",
        ),
        (lambda: TERConfig(modality_configs={"audio": {"embed_dim": 4, "size": 3}}), r"unknown keys \['size'\]"),
        (
            lambda: TERForEmotionRecognition(
                TERConfig(modality_configs={"text": {"backbone": TINY_BERT, "embed_dim": 3}})
            ),
            r"\(embed_dim, num_feature_layers\) = \(3, 1\).*has \(16, 1\)",
        ),
        (
            lambda: TERConfig(modality_configs={"audio": {"embed_dim": 4}}, trusted_threshold=1.5),
            r"lie in \[0, 1\]",
        ),
    ],
)
def test_bad_config_is_rejected_with_the_fix(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_bad_forward_inputs_name_the_modality_and_the_fix(model):
    inputs = tiny_inputs()
    text_only = TERForEmotionRecognition(tiny_config({"audio": None, "video": None})).eval()
    cases = [
        (
            lambda: text_only(text_embeds=inputs["text_embeds"], audio_embeds=inputs["audio_embeds"]),
            "no audio modality",
        ),
        (
            lambda: model(**dict(inputs, audio_embeds=torch.randn(5, 13))),
            r"audio_embeds has shape \(5, 13\).*\(batch, 12\)",
        ),
        (lambda: model(**dict(inputs, text_embeds=torch.randn(4, 8))), "disagree on the batch size"),
        (
            lambda: model(**inputs, modality_mask=torch.tensor([[1, 1, 1]] * 4 + [[0, 0, 0]]).bool()),
            r"Samples \[4\] have no modality",
        ),
        (
            lambda: model(**inputs, modality_mask=torch.ones(5, 2, dtype=torch.bool)),
            r"modality_mask has shape \(5, 2\)",
        ),
        (
            lambda: model(
                **dict(inputs, video_embeds=inputs["video_embeds"].index_fill(0, torch.tensor([2]), float("nan")))
            ),
            r"video_embeds holds NaN or inf for samples \[2\]",
        ),
        (
            lambda: model(**inputs, labels=torch.tensor([0, 1, 2, 4, 0])),
            r"labels must be integer class ids in \[0, 3\]",
        ),
        (lambda: model(**inputs, labels=torch.tensor([0, 1, -1, 2, 0])), "labels must be integer class ids"),
        (lambda: model(**inputs, labels=torch.tensor([0, 1])), r"labels has shape \(2,\)"),
        (lambda: model(), "No input for any modality"),
        (lambda: model.embed_modality("audio", input_features=torch.randn(1, 80, 10)), "has no backbone"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()


def test_unknown_forward_keyword_is_a_type_error_naming_it(model):
    with pytest.raises(TypeError, match="speech_embeds"):
        model(speech_embeds=torch.randn(2, 4))


def test_checkpoint_saved_before_the_modality_configs_layout_still_loads():
    """A tiny checkpoint written by version 0.1 (sub-configs as `audio_config` / `text_config`), its outputs recorded
    by that version: the current code loads it into `modality_configs` and gives the same outputs."""
    folder = Path(__file__).resolve().parents[1] / "fixtures" / "legacy_v0_1_checkpoint"
    assert "audio_config" in json.loads((folder / "config.json").read_text())
    expected = json.loads((folder / "expected_outputs.json").read_text())
    model = TERForEmotionRecognition.from_pretrained(folder).eval()
    assert model.config.modalities == ("audio", "text")
    assert model.config.modality_config("audio")["num_feature_layers"] == 3
    assert "audio_config" not in model.config.to_dict()
    inputs = {name: torch.tensor(value) for name, value in expected["inputs"].items()}
    with torch.no_grad():
        outputs = model(**inputs)
    torch.testing.assert_close(outputs.alpha, torch.tensor(expected["alpha"]), rtol=0, atol=0)
    # 1 - u of v0.1 is now sigmoid(log-odds of 1 - u): the same number up to float32 rounding.
    torch.testing.assert_close(outputs.confidence, torch.tensor(expected["confidence"]), rtol=0, atol=1e-6)


def test_activation_checkpointing_reaches_the_backbones_and_keeps_the_gradients():
    """`activation_checkpointing_enable()` recomputes every Whisper and BERT layer in the backward pass (each
    layer's forward runs twice per step) and gives the same gradients as without it (same seed, dropout on)."""
    whisper = tiny_whisper_config(encoder_layers=2)
    torch.manual_seed(0)
    config = tiny_config(
        {"audio": {"backbone": whisper.to_dict(), "use_weighted_layer_sum": True}, "text": {"backbone": TINY_BERT}}
    )
    model = TERForEmotionRecognition(config).train()
    inputs = {
        "audio_input_features": torch.randn(2, 80, 60),
        "text_input_ids": torch.randint(1, 50, (2, 6)),
        "video_embeds": torch.randn(2, 3, 6),
        "labels": torch.tensor([0, 2]),
    }
    layers = [m for m in model.modules() if type(m).__name__ in ("WhisperEncoderLayer", "BertLayer")]
    calls = []
    for layer in layers:  # a module inside the layer: transformers keeps the layer's own hooks out of the recompute
        attention = layer.self_attn if hasattr(layer, "self_attn") else layer.attention
        attention.register_forward_hook(lambda module, args, output: calls.append(module))

    def gradients() -> dict[str, torch.Tensor]:
        torch.manual_seed(1)
        model.zero_grad()
        calls.clear()
        model(**inputs).loss.backward()
        return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}

    plain = gradients()
    assert len(calls) == len(layers) == 4
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    checkpointed = gradients()
    assert len(calls) == 2 * len(layers)  # every layer recomputed once in the backward pass
    assert plain.keys() == checkpointed.keys()
    for name, gradient in plain.items():
        torch.testing.assert_close(checkpointed[name], gradient, rtol=0, atol=1e-5, msg=name)


@pytest.mark.parametrize(
    "modalities, expected",
    [
        ({}, "audio_embeds"),  # audio without a backbone: its pooled features are its input
        ({"audio": None, "text": {"backbone": TINY_BERT}}, "text_input_ids"),
        ({"audio": None, "text": None, "video": {"backbone": {"model_type": "ter_face_cnn", "hidden_size": 6}}}, None),
    ],
    ids=["audio-embeds", "text-backbone", "video-face-cnn"],
)
def test_main_input_name_is_the_first_modality_input(modalities, expected):
    if expected is None:
        modalities["video"]["backbone"]["block_channels"] = [4, 6]
        expected = "video_pixel_values"
    model = TERForEmotionRecognition(tiny_config(modalities))
    assert model.main_input_name == expected


def test_main_input_name_of_a_whisper_audio_model():
    whisper = tiny_whisper_config()
    model = TERForEmotionRecognition(tiny_config({"audio": {"backbone": whisper.to_dict()}}))
    assert model.main_input_name == "audio_input_features"


def test_no_local_path_is_saved_as_a_backbone_name(tmp_path):
    from modeling_ter.encoders.defaults import FER_FACE_ENCODER_DIR

    model = TERForEmotionRecognition.from_encoders_pretrained(video=str(FER_FACE_ENCODER_DIR), head_hidden_size=4)
    assert model.config.modality_config("video")["backbone"]["_name_or_path"] == "fer2013_mini_xception"
    named = TERForEmotionRecognition.from_encoders_pretrained(
        video=str(FER_FACE_ENCODER_DIR), backbone_names={"video": "org/face-cnn"}, head_hidden_size=4
    )
    assert named.config.modality_config("video")["backbone"]["_name_or_path"] == "org/face-cnn"
    bert = {**TINY_BERT, "_name_or_path": str(tmp_path / "my-bert")}
    config = tiny_config({"text": {"backbone": bert}})
    assert config.modality_config("text")["backbone"]["_name_or_path"] == "my-bert"
    hub_id = tiny_config({"text": {"backbone": {**TINY_BERT, "_name_or_path": "google-bert/bert-base-uncased"}}})
    assert hub_id.modality_config("text")["backbone"]["_name_or_path"] == "google-bert/bert-base-uncased"


def test_class_weights_weigh_each_samples_loss_by_its_class():
    """With `class_weights`, the loss is the mean of each sample's Trusted CE times its class's weight; a class of
    weight 0 does not move the loss. `balanced_class_weights` gives scikit-learn's N / (K n_k)."""
    from modeling_ter.training.loop import balanced_class_weights

    assert balanced_class_weights(np.array([0, 0, 0, 1]), 3) == [4 / 9, 4 / 3, 0.0]
    config = TERConfig(modality_configs={"audio": {"embed_dim": 4}}, num_labels=3, head_dropout=0.0)
    model = TERForEmotionRecognition(config).eval()
    embeds, labels = torch.randn(6, 4), torch.tensor([0, 1, 2, 0, 1, 2])
    output = model(audio_embeds=embeds, labels=labels)
    per_sample = model.trusted_ce(output.alpha, labels) + model.trusted_ce(output.modality_alpha[:, 0], labels)
    torch.testing.assert_close(output.loss, per_sample.mean())
    model.config.class_weights = [2.0, 0.0, 1.0]
    weighted = model(audio_embeds=embeds, labels=labels).loss
    torch.testing.assert_close(weighted, (per_sample * torch.tensor([2.0, 0.0, 1.0, 2.0, 0.0, 1.0])).mean())
    with pytest.raises(ValueError, match="class_weights must hold 3"):
        TERConfig(modality_configs={"audio": {"embed_dim": 4}}, num_labels=3, class_weights=[1.0, 1.0])


def test_tempered_dempster_shafer_windows_rise_above_one_window_to_a_bound(model):
    """`n` identical windows of evidence `e`: tempered Dempster-Shafer gives `K ((1 + e / (n K))^n - 1)` (each
    window's evidence divided by `n`), above the one window's evidence and rising with `n` towards
    `K (exp(e / K) - 1)`, while plain Dempster-Shafer grows without bound and averaging stays at `e`. A window that
    does not count changes neither the result nor `n`; disagreeing windows keep the label of their mean evidence."""
    num_labels = model.config.num_labels
    window = torch.tensor([3.0, 1.0, 0.5, 0.0], dtype=torch.float64)
    pooled = {}
    for count in (1, 3, 30, 300):
        windows, counted = window.repeat(count + 1, 1), torch.ones(count + 1, dtype=torch.bool)
        windows[-1], counted[-1] = torch.tensor([0.0, 50.0, 0.0, 0.0]), False
        pooled[count] = model.combine_windows(windows, counted, "tempered_dempster_shafer")
        expected = num_labels * ((1 + window / (count * num_labels)) ** count - 1)
        torch.testing.assert_close(pooled[count], expected)
        torch.testing.assert_close(model.combine_windows(windows, counted, "evidence_average"), window)
    torch.testing.assert_close(pooled[1], window)
    bound = num_labels * torch.expm1(window / num_labels)
    assert (pooled[3][:3] > window[:3]).all() and (pooled[300][:3] > pooled[30][:3]).all()
    assert (pooled[300] <= bound).all() and torch.allclose(pooled[300], bound, rtol=0.01)
    many = window.repeat(300, 1)
    assert model.combine_windows(many, torch.ones(300, dtype=torch.bool), "dempster_shafer")[0] > 1e6 * bound[0]
    dissent = torch.tensor([[4.0, 0.0, 0.0, 0.0], [0.0, 3.0, 0.0, 0.0], [2.0, 0.0, 0.0, 1.0]])
    tempered = model.combine_windows(dissent, torch.ones(3, dtype=torch.bool), "tempered_dempster_shafer")
    assert tempered.argmax() == dissent.mean(0).argmax() == 0
    with pytest.raises(ValueError, match="tempered_dempster_shafer"):
        model.combine_windows(dissent, torch.ones(3, dtype=torch.bool), "max")


def test_quantize_encoders_is_an_int8_copy_close_to_float32_that_cannot_be_saved(tmp_path):
    torch.manual_seed(0)
    model = TERForEmotionRecognition(tiny_config({"text": {"backbone": TINY_BERT}})).eval()
    before = {name: value.clone() for name, value in model.state_dict().items()}
    assert model.quantize_encoders("none") is model
    quantized = model.quantize_encoders()
    assert quantized is not model and quantized.encoder_quantization == "dynamic_int8"
    assert model.encoder_quantization == "none"
    assert all(torch.equal(before[name], value) for name, value in model.state_dict().items())  # unchanged
    linear = [m for m in quantized.encoders.modules() if type(m) is torch.nn.Linear]
    int8 = [m for m in quantized.encoders.modules() if type(m).__module__.startswith("torch.ao.nn.quantized.dynamic")]
    assert not linear and len(int8) == len([m for m in model.encoders.modules() if isinstance(m, torch.nn.Linear)])
    assert all(type(head.dense) is torch.nn.Linear for head in quantized.heads.values())  # heads stay float32
    input_ids = torch.randint(1, 50, (3, 7))
    with torch.no_grad():
        exact, approximate = model(text_input_ids=input_ids), quantized(text_input_ids=input_ids)
    assert not torch.equal(exact.alpha, approximate.alpha)  # it does compute differently...
    torch.testing.assert_close(approximate.probs, exact.probs, atol=0.02, rtol=0)  # ...and close
    with pytest.raises(ValueError, match="quantized \\(dynamic_int8\\) for inference; save the float model"):
        quantized.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="already quantized"):
        quantized.quantize_encoders()
    with pytest.raises(ValueError, match="must be one of \\('none', 'dynamic_int8'\\), got 'int4'"):
        model.quantize_encoders("int4")


def test_label2id_follows_id2label_when_only_id2label_is_given():
    config = TERConfig(modality_configs={"audio": {"embed_dim": 4}}, id2label={0: "anger", 1: "joy"})
    assert config.label2id == {"anger": 0, "joy": 1} and config.num_labels == 2
    reloaded = TERConfig.from_dict(config.to_dict())
    assert reloaded.label2id == {"anger": 0, "joy": 1} and reloaded.id2label == {0: "anger", 1: "joy"}
