"""The generated model card: YAML parses, model-index and table hold the evaluation JSON's numbers."""

import json
import math
import random

import pytest
from huggingface_hub import ModelCard, ModelCardData
from huggingface_hub.repocard import metadata_load

from modeling_ter.hub.model_card import METRICS, build_model_card, format_value, iter_results


def _metrics(rng: random.Random) -> dict:
    return {"n": rng.randint(20, 400), **{key: rng.random() for key in METRICS}}


@pytest.fixture
def eval_results() -> dict:
    """An evaluation JSON in scripts/evaluate.py's layout, with arbitrary (seeded) values."""
    rng = random.Random(7)
    overall = _metrics(rng)
    overall["thresholds"] = {name: _metrics(rng) for name in ("max_f1", "break_even", "target_precision")}
    return {
        "overall": overall,
        "corpora": {
            "emodb": {"fused": _metrics(rng), "audio": _metrics(rng), "text": _metrics(rng)},
            "crema_d": {"fused": _metrics(rng), "audio": _metrics(rng), "video": _metrics(rng)},
            "meld": {"fused": _metrics(rng), "text": _metrics(rng)},
        },
    }


@pytest.fixture
def config() -> dict:
    labels = ["anger", "boredom", "disgust", "fear", "happiness", "neutral", "sadness", "surprise"]
    return {
        "model_type": "ter",
        "id2label": {str(i): label for i, label in enumerate(labels)},
        "modality_configs": {"audio": {"embed_dim": 384}, "text": {"embed_dim": 384}},
        "fusion": "dempster_shafer",
        "trusted_threshold": 0.5,
    }


def _model_index_values(metadata: dict) -> dict[tuple[str, str, str], float]:
    """{(dataset type, metric config, metric type): value} from a card's model-index."""
    values = {}
    for result in metadata["model-index"][0]["results"]:
        for metric in result["metrics"]:
            values[(result["dataset"]["type"], metric["config"], metric["type"])] = metric["value"]
    return values


def test_card_yaml_holds_every_number(tmp_path, eval_results, config):
    path = tmp_path / "README.md"
    build_model_card(json.loads(json.dumps(eval_results)), config, output_path=path, repo_id="org/ter-test")
    metadata = metadata_load(path)
    assert metadata["library_name"] == "transformers"
    assert {"emotion-recognition", "trusted-ai", "evidential-deep-learning", "multimodal"} <= set(metadata["tags"])
    assert metadata["language"] == ["de", "en"]
    assert metadata["datasets"] == ["emodb", "crema_d", "meld"]

    values = _model_index_values(metadata)
    checked = 0
    for corpus, head, metrics in iter_results(eval_results):
        dataset = "+".join(eval_results["corpora"]) if corpus == "all" else corpus
        for key, value in metrics.items():
            if key in ("n", "thresholds"):
                continue
            assert values[(dataset, head, METRICS[key][0])] == value, (corpus, head, key)
            checked += 1
    assert checked == len(values) == 9 * len(METRICS)  # nothing else in the model-index


def test_card_table_and_sections(tmp_path, eval_results, config):
    plots = tmp_path / "plots"
    plots.mkdir()
    (plots / "reliability_fused.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    card = build_model_card(eval_results, config, output_path=tmp_path / "README.md", repo_id="org/ter-test")
    text = card.text
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    for corpus, head, metrics in iter_results(eval_results):
        row = next(r for r in rows if f"| {head} | {metrics['n']} |" in r and format_value(metrics["accuracy"]) in r)
        for key in METRICS:
            assert f"| {format_value(metrics[key])} " in row + " ", (corpus, head, key)
        for strategy_metrics in metrics.get("thresholds", {}).values():
            assert format_value(strategy_metrics["trusted_f1"]) in text
    for section in (
        "## Model Details",
        "## Uses",
        "## Bias, Risks, and Limitations",
        "## How to Get Started with the Model",
        "## Training Details",
        "## Evaluation",
        "## Citation",
    ):
        assert section in text
    for fact in (
        "anger, boredom, disgust, fear, happiness, neutral, sadness, surprise",
        "ODbL",
        "GPL-3.0",
        "research use",
        "Whisper tiny.en",
        "all-MiniLM-L6-v2",
        "Apache-2.0",
        "arXiv:2508.07625",
        "Trusted Multi-View Classification",
        "Evidential Deep Learning",
        "![reliability fused](plots/reliability_fused.png)",
        'from_pretrained("org/ter-test"',
    ):
        assert fact in text, fact
    assert "FER2013" not in text  # the config has no video modality: its encoder is not listed


def test_card_data_round_trip(tmp_path, eval_results, config):
    path = tmp_path / "README.md"
    card = build_model_card(eval_results, config, output_path=path)
    loaded = ModelCard.load(path)
    assert loaded.data.to_dict() == card.data.to_dict()
    data = ModelCardData(**loaded.data.to_dict())  # validates the model-index again
    assert len(data.eval_results) == 9 * len(METRICS)
    assert data.model_name == "TER"
    first = data.eval_results[0]
    assert (first.metric_type, first.metric_value) == ("accuracy", eval_results["overall"]["accuracy"])


def test_missing_values_are_left_out(eval_results, config):
    eval_results["corpora"]["meld"]["text"]["trusted_precision"] = float("nan")
    eval_results["corpora"]["meld"]["text"]["ece"] = None
    card = build_model_card(eval_results, config)
    values = _model_index_values(card.data.to_dict())
    assert ("meld", "text", "trusted_precision") not in values and ("meld", "text", "ece") not in values
    assert len(values) == 9 * len(METRICS) - 2
    assert not any(isinstance(v, float) and math.isnan(v) for v in values.values())


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"corpora": {"emodb": {"fused": {"accuracy": "high"}}}}, r"\['corpora'\]\['emodb'\]\['fused'\]\['accuracy'\]"),
        ({"results": {}}, "evaluation JSON"),
        ({"overall": [0.5]}, r"eval_results\['overall'\] must be a dict"),
    ],
)
def test_bad_eval_results_name_the_entry(bad, message):
    with pytest.raises(ValueError, match=message):
        build_model_card(bad)


def test_missing_template_and_plot(tmp_path, eval_results):
    with pytest.raises(FileNotFoundError, match="template"):
        build_model_card(eval_results, template_path=tmp_path / "nope.md")
    with pytest.raises(FileNotFoundError, match="plot"):
        build_model_card(eval_results, output_path=tmp_path / "README.md", plots=["plots/missing.png"])
