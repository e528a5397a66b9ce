"""The generated model card: YAML parses, model-index and table hold the evaluation JSON's numbers."""

import json
import math
import random
from pathlib import Path

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


DATA = Path(__file__).resolve().parents[2] / "data"
CORPUS_NAMES = {"emodb": "EmoDB", "crema_d": "CREMA-D", "meld": "MELD"}
CORPORA_LICENCE = {"emodb": "research use", "crema_d": "ODbL 1.0", "meld": "GPL-3.0"}


def _eval_results_for(corpora: list[str]) -> dict:
    rng = random.Random(3)
    return {"overall": _metrics(rng), "corpora": {c: {"fused": _metrics(rng)} for c in corpora}}


def test_card_of_the_demo_run_names_what_it_trained_on(tmp_path, config):
    """The main job's split of data/manifest.csv: every corpus with its licence and the manifest's counts."""
    from modeling_ter.data.manifest import load_manifest_dataset, summarize_splits

    splits = load_manifest_dataset(DATA / "manifest.csv", validation_fraction=0.2, seed=42)
    training_data = summarize_splits(splits, DATA / "manifest.csv")
    assert training_data["manifest"] == "manifest.csv"  # a name, not a local path
    emodb = training_data["corpora"]["emodb"]
    speakers = {s: len(set(splits[s].filter(lambda r: r["corpus"] == "emodb")["speaker_id"])) for s in splits}
    assert {s: emodb["splits"][s]["speakers"] for s in splits} == speakers
    assert sum(n["items"] for c in training_data["corpora"].values() for n in c["splits"].values()) == sum(
        len(splits[s]) for s in splits
    )
    (tmp_path / "training_data.json").write_text(json.dumps(training_data))
    # The card reads training_data.json beside it; evaluation covered only two of the three corpora.
    text = build_model_card(_eval_results_for(["emodb", "meld"]), config, output_path=tmp_path / "README.md").text
    training = text[text.index("### Training Data") : text.index("### Training Procedure")]
    for key, name in CORPUS_NAMES.items():
        row = next(line for line in training.splitlines() if line.startswith(f"| {name}"))
        assert key in training_data["corpora"] and f"(`{key}`)" in row
        assert CORPORA_LICENCE[key] in row, (key, row)
        counts = training_data["corpora"][key]["splits"]
        for key in ("items", "speakers"):
            assert f"| {' / '.join(f'{s} {counts[s][key]}' for s in counts)} |" in row, (key, row)
    assert "Open Database License (ODbL) 1.0" in training  # CREMA-D's attribution
    assert "10 speakers" not in text and "91 actors" not in text  # the full corpora's counts, not the demo's


def test_card_of_a_custom_two_corpus_manifest_names_only_those(tmp_path, config):
    """A user's own corpora (files borrowed from the demo): both named, with the licence marked as not recorded;
    no demo corpus, licence or attribution appears anywhere in the card."""
    from modeling_ter.data.manifest import load_manifest_dataset, summarize_splits

    rows = ["corpus,path,label,speaker_id,modality_files,transcript,language"]
    for i, clip in enumerate(sorted((DATA / "emodb" / "wav").glob("*.flac"))[:12]):
        corpus = "callcenter" if i % 2 else "podcasts"
        rows.append(f"{corpus},{clip},{['anger', 'neutral'][i % 4 // 2]},spk{i % 6},{clip},,de")
    manifest = tmp_path / "mine.csv"
    manifest.write_text("\n".join(rows) + "\n")
    splits = load_manifest_dataset(manifest, validation_fraction=0.3, seed=0)
    training_data = summarize_splits(splits, manifest)
    assert list(training_data["corpora"]) == ["podcasts", "callcenter"]
    card = build_model_card(_eval_results_for(["podcasts", "callcenter"]), config, training_data=training_data)
    text = card.text
    for corpus in ("podcasts", "callcenter"):
        row = next(line for line in text.splitlines() if line.startswith(f"| {corpus} (`{corpus}`)"))
        assert "licence" in row and "not recorded" in row
    for absent in (*CORPUS_NAMES.values(), "Friends", "ODbL", "GPL-3.0", "Burkhardt", "Poria", "Cao et al"):
        assert absent not in text, absent
    assert card.data.datasets == ["podcasts", "callcenter"] and card.data.language == ["de"]


def test_card_links_the_demo_space_when_given(eval_results, config):
    linked = str(build_model_card(eval_results, config, repo_id="org/ter", demo_space="org/ter-demo"))
    assert "(https://huggingface.co/spaces/org/ter-demo)" in linked
    unlinked = str(build_model_card(eval_results, config, repo_id="org/ter"))
    assert "huggingface.co/spaces/" not in unlinked and "--demo_space ORG/NAME --model org/ter" in unlinked


def test_card_states_what_one_new_speaker_may_see(tmp_path, eval_results, config):
    eval_results["promise"] = {
        "emodb": {
            "n": 167,
            "trusted": 114,
            "trusted_precision": 0.833,
            "trusted_precision_ci95": [0.754, 0.891],
            "coverage": 0.683,
            "coverage_ci95": [0.609, 0.748],
            "new_speaker": {
                "speakers": 4,
                "trusted_per_speaker": 28,
                "trusted_precision_pi95": [0.607, 0.964],
                "items_per_speaker": 41,
                "coverage_pi95": [0.512, 0.829],
            },
        }
    }
    card = build_model_card(eval_results, config, output_path=tmp_path / "README.md")
    line = next(line for line in card.text.splitlines() if line.startswith("- ") and "0.833 are right" in line)
    assert "95 % CI 0.754-0.891" in line
    assert "One new speaker (of 4 held out) with about 28 trusted predictions: trusted precision 0.61-0.96" in line
    assert "coverage 0.51-0.83 (95 % prediction intervals)" in line
    # Speakers with a handful of trusted items each (MELD's characters) bound nothing: the card says so.
    eval_results["promise"]["emodb"]["new_speaker"].update(trusted_per_speaker=2, trusted_precision_pi95=[0.0, 1.0])
    card = build_model_card(eval_results, config, output_path=tmp_path / "README.md")
    line = next(line for line in card.text.splitlines() if line.startswith("- ") and "0.833 are right" in line)
    assert "with about 2 trusted predictions: too few to bound its trusted precision." in line
    assert "prediction intervals" not in line
