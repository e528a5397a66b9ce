"""A Gradio demo of a TER checkpoint: audio, text and face video in; the trusted decision, and why, out.

The page shows the fused label, the confidence as a gauge against the checkpoint's calibrated threshold
(`config.trusted_threshold`), a "trusted" / "not trusted — why" badge, each modality's opinion (class probabilities and
confidence), the pairwise Dempster-Shafer conflict, and the trade-off between trusted precision and coverage over the
threshold with the checkpoint's operating point marked.

Run it on a checkpoint folder or a Hub ID (offline on CPU for a folder):

    python scripts/demo.py --model out

The decision logic (`trust_verdict`, `load_tradeoff_curve`, `collect_inputs`) is plain Python, tested without a
browser; `gradio` and `matplotlib` are imported only when a page or a figure is built, so `import modeling_ter` stays
light.

Examples:

```python
>>> from modeling_ter.demo import trust_verdict
>>> result = {"confidence": 0.41, "trusted": False, "conflict": {"max": None, "matrix": [[0.0]]},
...           "modalities": {"audio": {"present": True, "confidence": 0.41, "label": "anger"}}}
>>> trust_verdict(result, threshold=0.71).reasons
('low confidence: 0.410 is below the threshold 0.710',)

```
"""

from __future__ import annotations

import csv
import html
import json
import logging
import math
import os
import shutil
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import gradio as gr
    from matplotlib.figure import Figure

    from ..pipelines import TrustedEmotionRecognitionPipeline

logger = logging.getLogger(__name__)

DEFAULT_CONFLICT_LIMIT = 0.5
"""Conflict C at or above which two modalities "strongly" disagree: over half of their belief mass is contradictory
(C = Σ_{i≠j} b_i·b_j of the reduced Dempster-Shafer rule, in [0, 1))."""

REPO_DATA_DIR = Path(__file__).resolve().parents[2] / "data"
"""The demo corpus of a source checkout (data/manifest.csv and the clips); absent in an installed wheel or a Space."""

EXAMPLES_PER_CORPUS = 2
EXAMPLE_FIRST = "emodb/wav/03a01Wa.flac"  # an EmoDB anger clip, the first example on the page

ELEM_IDS = {
    "audio": "ter-audio",
    "text": "ter-text",
    "video": "ter-video",
    "submit": "ter-submit",
    "label": "ter-label",
    "gauge": "ter-gauge",
    "badge": "ter-badge",
    "message": "ter-message",
    "scores": "ter-scores",
    "modalities": "ter-modalities",
    "conflict": "ter-conflict",
    "tradeoff": "ter-tradeoff",
    "result": "ter-result",
}
"""`elem_id` of each component, for browser tests and custom CSS."""

VIDEO_EXTENSIONS = (".mp4", ".flv", ".avi", ".mov", ".mkv", ".webm")

SPACE_REQUIREMENTS = (
    "torch",
    "transformers",
    "huggingface-hub",
    "safetensors",
    "numpy",
    "scipy",
    "soundfile",
    "av",
    "opencv-python-headless",
    "pillow",
    "matplotlib",
)
"""What a Space needs besides gradio (which the Space's `sdk_version` installs); versions come from the `ter`
package's own requirements, so the Space and the library pin the same stack."""

_COLOURS = {True: ("#166534", "#dcfce7"), False: ("#991b1b", "#fee2e2"), None: ("#92400e", "#fef3c7")}


class DemoInputError(ValueError):
    """An input the demo cannot use (no input at all, a file that is no audio or video); the message is for the page."""


# ----------------------------------------------------------------------------------------------------------------------
# The decision and why: pure functions of the pipeline output
# ----------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrustVerdict:
    """The badge of one prediction.

    Attributes:
        trusted: `True` / `False`, or `None` when the checkpoint has no calibrated threshold and nothing else
            (an out-of-domain modality, a strong conflict) rules the prediction out.
        reasons: why the prediction is not trusted (empty when trusted), most decisive first.
        notes: context shown either way (a missing modality of a trusted prediction, no threshold, ...).
    """

    trusted: bool | None
    reasons: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


def _most_conflicting_pair(matrix: Sequence[Sequence[float | None]] | None, names: Sequence[str]) -> tuple:
    """`(name_i, name_j, conflict)` of the largest off-diagonal entry of the conflict matrix, or `None`."""
    best = None
    for i, row in enumerate(matrix or ()):
        for j, value in enumerate(row):
            if i < j and value is not None and (best is None or value > best[2]) and j < len(names):
                best = (names[i], names[j], float(value))
    return best


def trust_verdict(
    result: Mapping[str, Any],
    threshold: float | None,
    conflict_limit: float = DEFAULT_CONFLICT_LIMIT,
    given: Collection[str] = (),
) -> TrustVerdict:
    """Whether to trust one output of the trusted-emotion-recognition pipeline, and why not.

    A prediction is not trusted when its fused confidence is below the threshold (the pipeline's `trusted`),
    when a modality is out of domain (a per-modality `"out_of_domain": True`, with an optional `"reason"`), or
    when two present modalities conflict strongly (`conflict["max"] >= conflict_limit`). A missing modality is
    not a reason by itself (a missing modality is the vacuous opinion: it adds no evidence), but it is named among
    the reasons of an untrusted prediction, and as a note of a trusted one.

    Args:
        result: one pipeline output (`confidence`, `trusted`, `modalities`, `conflict`).
        threshold: the checkpoint's `config.trusted_threshold`, or `None` when it has none.
        conflict_limit: the conflict from which two modalities disagree strongly.
        given: the modalities the user gave an input for; one of them reported missing was unusable (a video
            without a detectable face, say), which the reason says.

    Returns:
        `TrustVerdict`.
    """
    confidence = float(result["confidence"])
    modalities: Mapping[str, Mapping[str, Any]] = result.get("modalities") or {}
    reasons: list[str] = []
    notes: list[str] = []

    if result.get("trusted") is not None:
        confident: bool | None = bool(result["trusted"])
    elif threshold is not None:
        confident = confidence >= threshold
    else:
        confident = None
        notes.append("this checkpoint has no calibrated trusted threshold, so confidence alone decides nothing")
    if confident is False:
        bound = f" is below the threshold {threshold:.3f}" if threshold is not None else " is below the threshold"
        reasons.append(f"low confidence: {confidence:.3f}{bound}")

    out_of_domain = []
    for name, entry in modalities.items():
        why = entry.get("reason")
        if entry.get("out_of_domain"):
            out_of_domain.append(name)
            reasons.append(f"{name} is out of domain" + (f": {why}" if why else ""))
        elif why and entry.get("present"):
            notes.append(f"{name}: {why}")

    conflict = result.get("conflict") or {}
    strong_conflict = conflict.get("max") is not None and float(conflict["max"]) >= conflict_limit
    if strong_conflict:
        pair = _most_conflicting_pair(conflict.get("matrix"), list(modalities))
        between = f" between {pair[0]} and {pair[1]}" if pair else ""
        reasons.append(f"strong conflict{between}: {float(conflict['max']):.2f} (limit {conflict_limit:.2f})")

    missing = []
    for name, entry in modalities.items():
        if not entry.get("present") and name not in out_of_domain:
            detail = entry.get("reason") or ("given but not usable" if name in given else None)
            missing.append(name + (f" ({detail})" if detail else ""))

    if out_of_domain or strong_conflict:
        trusted: bool | None = False
    else:
        trusted = confident
    if missing:
        text = f"missing modality: {', '.join(missing)} (no evidence from it)"
        (reasons if trusted is False else notes).append(text)
    return TrustVerdict(trusted=trusted, reasons=tuple(reasons), notes=tuple(notes))


def modality_opinions(
    result: Mapping[str, Any], modality_probs: Sequence[Sequence[float]] | None, labels: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """Each modality's opinion: the pipeline's `modalities` entry plus `"scores"` (`{label: probability}`).

    `modality_probs` is `(num_modalities, num_labels)` in the order of `result["modalities"]` (the expected
    probabilities `alpha / S` of each modality's Dirichlet). A `"scores"` entry the pipeline already gives (as
    `{label: score}`, or `[{"label", "score"}]` like its fused `scores`) is used instead. A missing modality gets
    `"scores": None` (its all-ones Dirichlet is uniform by construction, not an opinion).
    """
    opinions = {}
    for index, (name, entry) in enumerate((result.get("modalities") or {}).items()):
        opinion = dict(entry)
        stored = opinion.get("scores")
        if isinstance(stored, Sequence) and not isinstance(stored, str):
            opinion["scores"] = {item["label"]: float(item["score"]) for item in stored}
        elif stored is None:
            given = entry.get("present") and modality_probs is not None and index < len(modality_probs)
            opinion["scores"] = dict(zip(labels, map(float, modality_probs[index]))) if given else None
        opinions[name] = opinion
    return opinions


# ----------------------------------------------------------------------------------------------------------------------
# The trade-off curve: trusted precision and coverage over the threshold
# ----------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TradeoffCurve:
    """Trusted precision and coverage at increasing thresholds.

    Attributes:
        thresholds, trusted_precision, coverage: one value per candidate threshold, ascending thresholds.
        source: where the points come from (`"curve"`, `"samples"` or `"operating points"`).
        complete: `True` for a full sweep (every distinct confidence); `False` for the few stored operating points.
    """

    thresholds: tuple[float, ...]
    trusted_precision: tuple[float, ...]
    coverage: tuple[float, ...]
    source: str
    complete: bool = True

    def at(self, threshold: float) -> tuple[float, float]:
        """`(trusted precision, coverage)` at `threshold`: T(τ) = T(first candidate >= τ), as in `trusted_scores`;
        past the largest candidate nothing is trusted (precision NaN, coverage 0)."""
        for index, candidate in enumerate(self.thresholds):
            if candidate >= threshold - 1e-9:
                return self.trusted_precision[index], self.coverage[index]
        return math.nan, 0.0


def _numbers(values: Any) -> tuple[float, ...] | None:
    if not isinstance(values, Sequence) or isinstance(values, str) or not values:
        return None
    try:
        return tuple(float(v) for v in values)
    except (TypeError, ValueError):
        return None


def load_tradeoff_curve(eval_results: Mapping[str, Any] | None) -> TradeoffCurve | None:
    """The trade-off curve stored with a checkpoint (its `eval_results.json`), or `None` when it stores none.

    In order of preference:

    1. `overall["curve"]`, the sweep of `trusted_scores(..., return_curve=True)` (keys `thresholds`,
       `trusted_precision`, `coverage`, ...): drawn as stored.
    2. `overall["samples"]` = `{"correct": [...], "confidences": [...]}`: swept here with
       `trusted_f1.trusted_metrics.threshold_sweep`.
    3. The operating points the report has anyway: `overall` itself and each `overall["thresholds"][strategy]`
       (what `scripts/train.py` writes today): a few points, `complete=False`.
    """
    overall = eval_results.get("overall") if isinstance(eval_results, Mapping) else None
    if not isinstance(overall, Mapping):
        return None
    curve = overall.get("curve")
    if isinstance(curve, Mapping):
        columns = [_numbers(curve.get(key)) for key in ("thresholds", "trusted_precision", "coverage")]
        if all(columns) and len({len(column) for column in columns}) == 1:
            return TradeoffCurve(*columns, source="curve")
    samples = overall.get("samples")
    if isinstance(samples, Mapping) and samples.get("correct") is not None and samples.get("confidences") is not None:
        from trusted_f1.trusted_metrics import threshold_sweep

        sweep = threshold_sweep(samples["correct"], samples["confidences"])
        return TradeoffCurve(
            tuple(sweep["thresholds"].tolist()),
            tuple(sweep["trusted_precision"].tolist()),
            tuple(sweep["coverage"].tolist()),
            source="samples",
        )
    points = {}
    strategies = overall.get("thresholds") if isinstance(overall.get("thresholds"), Mapping) else {}
    for entry in (overall, *strategies.values()):
        if isinstance(entry, Mapping):
            values = _numbers([entry.get(key) for key in ("threshold", "trusted_precision", "coverage")])
            if values is not None:
                points[values[0]] = values
    if not points:
        return None
    ordered = [points[key] for key in sorted(points)]
    return TradeoffCurve(*(tuple(p[i] for p in ordered) for i in range(3)), source="operating points", complete=False)


def read_eval_results(model: str, revision: str | None = None) -> dict | None:
    """The `eval_results.json` of a checkpoint folder or Hub repo, or `None` when there is none (or it is unreadable,
    or the Hub cannot be reached)."""
    if Path(model).is_dir():
        path: Path | None = Path(model) / "eval_results.json"
    else:
        try:
            from huggingface_hub import hf_hub_download

            path = Path(hf_hub_download(model, "eval_results.json", revision=revision))
        except Exception as error:  # noqa: BLE001  (not in the repo, offline, no such repo: the page says so)
            logger.info("No eval_results.json for %s: %s", model, error)
            path = None
    if path is None or not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        logger.warning("Cannot read %s: %s", path, error)
        return None


# ----------------------------------------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------------------------------------


def _decode_audio_with_av(path: str, sampling_rate: int = 16000) -> dict:
    """Mono float32 samples of any container PyAV reads (a browser recording is WebM / Ogg Opus)."""
    import av
    import numpy as np

    with av.open(path) as container:
        streams = [stream for stream in container.streams if stream.type == "audio"]
        if not streams:
            raise ValueError("it has no audio stream")
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sampling_rate)
        chunks = []
        for frame in container.decode(streams[0]):
            chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(frame))
        chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(None))
    if not chunks:
        raise ValueError("it holds no samples")
    return {"array": np.concatenate(chunks).astype(np.float32), "sampling_rate": sampling_rate}


def read_audio_input(path: str) -> str | dict:
    """What the pipeline gets for an uploaded or recorded audio file.

    WAV, FLAC, MP3 and OGG files go to the pipeline as paths (it decodes them itself, so the page and the pipeline
    see the same samples); other containers, such as a microphone recording in WebM, are decoded here with PyAV.
    Raises `DemoInputError` for a file that is no audio.
    """
    import av

    from ..processing.audio import AUDIO_EXTENSIONS

    if Path(path).suffix.lower() in AUDIO_EXTENSIONS:
        return str(path)
    try:
        return _decode_audio_with_av(str(path))
    except (av.FFmpegError, ValueError, OSError) as error:
        raise DemoInputError(
            f"'{Path(path).name}' is not an audio file the demo can read ({error}). Upload WAV, FLAC, MP3 or OGG, "
            "or record with the microphone."
        ) from None


def check_video_input(path: str) -> str:
    """`path` if it is a video with a video stream; `DemoInputError` otherwise."""
    import av

    try:
        with av.open(str(path)) as container:
            if not any(stream.type == "video" for stream in container.streams):
                raise ValueError("it has no video stream")
    except (av.FFmpegError, ValueError, OSError) as error:
        raise DemoInputError(
            f"'{Path(path).name}' is not a video file the demo can read ({error}). Upload a face video, e.g. MP4 or FLV."
        ) from None
    return str(path)


def collect_inputs(
    modalities: Sequence[str], audio: str | None = None, text: str | None = None, video: str | None = None
) -> dict[str, Any]:
    """The pipeline input of one submission, with only the model's modalities; `DemoInputError` when it is empty."""
    inputs: dict[str, Any] = {}
    if "audio" in modalities and audio:
        inputs["audio"] = read_audio_input(audio)
    if "text" in modalities and text and text.strip():
        inputs["text"] = text
    if "video" in modalities and video:
        inputs["video"] = check_video_input(video)
    if not inputs:
        wanted = {"audio": "an audio clip (upload or record)", "text": "a text", "video": "a face video"}
        raise DemoInputError("Nothing to recognise: give " + " or ".join(wanted[m] for m in modalities) + ".")
    return inputs


def demo_examples(data_dir: Path | None, modalities: Sequence[str], per_corpus: int = EXAMPLES_PER_CORPUS) -> list:
    """Example rows `[audio, text, video]` (only the model's modalities) from the demo corpus `data_dir/manifest.csv`.

    One clip per label, `per_corpus` per corpus, keeping only rows that give the model something; `[]` without a
    manifest.
    """
    manifest = Path(data_dir) / "manifest.csv" if data_dir is not None else None
    if manifest is None or not manifest.is_file():
        return []
    with open(manifest, newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    rows.sort(key=lambda row: row["path"] != EXAMPLE_FIRST)
    examples, taken = [], {}
    for row in rows:
        seen = taken.setdefault(row["corpus"], set())
        if len(seen) >= per_corpus or row["label"] in seen:
            continue
        files = [manifest.parent / f for f in row["modality_files"].split(";") if f != "text"]
        found = {
            "audio": next((str(f) for f in files if f.suffix.lower() in (".wav", ".flac", ".mp3", ".ogg")), None),
            "text": row.get("transcript") or "",
            "video": next((str(f) for f in files if f.suffix.lower() in VIDEO_EXTENSIONS), None),
        }
        if any(found[m] is not None and not Path(found[m]).is_file() for m in ("audio", "video")):
            continue
        if not any(found[m] for m in modalities):
            continue
        seen.add(row["label"])
        examples.append([found[m] for m in modalities])
    return examples


# ----------------------------------------------------------------------------------------------------------------------
# Running the pipeline
# ----------------------------------------------------------------------------------------------------------------------


def load_recognizer(model: str, revision: str | None = None) -> TrustedEmotionRecognitionPipeline:
    """The trusted-emotion-recognition pipeline of a checkpoint folder or Hub ID, on CPU."""
    from transformers import pipeline

    from .. import pipelines  # noqa: F401  (registers the task)

    return pipeline("trusted-emotion-recognition", model=model, revision=revision, device="cpu")


def run_recognizer(recognizer: TrustedEmotionRecognitionPipeline, inputs: Mapping[str, Any]) -> tuple[dict, list]:
    """`(output, None)`: the pipeline's own output for `inputs`; each modality's class probabilities come with it
    (`output["modalities"][m]["scores"]`), so no separate `(num_modalities, num_labels)` array is needed."""
    return recognizer(dict(inputs)), None


# ----------------------------------------------------------------------------------------------------------------------
# What the page shows: HTML fragments and figures
# ----------------------------------------------------------------------------------------------------------------------


def label_html(result: Mapping[str, Any] | None) -> str:
    """The fused label and its probability; `data-label` holds the label for tests."""
    if result is None:
        return '<div data-label="" style="font-size:1.1em;color:#6b7280">No prediction yet.</div>'
    label = html.escape(str(result["label"]))
    return (
        f'<div data-label="{label}" data-score="{float(result["score"]):.6f}">'
        f'<div style="font-size:0.9em;color:#6b7280">Fused emotion</div>'
        f'<div style="font-size:2em;font-weight:700;line-height:1.2">{label}</div>'
        f'<div style="color:#6b7280">expected probability {float(result["score"]):.3f}</div></div>'
    )


def gauge_html(confidence: float | None, threshold: float | None) -> str:
    """The confidence as a bar on [0, 1], red below the threshold and green from it, with the threshold marked."""
    if confidence is None:
        return '<div data-confidence=""></div>'
    percent = 100.0 * min(max(confidence, 0.0), 1.0)
    trusted = None if threshold is None else confidence >= threshold
    fill = {True: "#16a34a", False: "#dc2626", None: "#6b7280"}[trusted]
    if threshold is None:
        track, marker, caption = "#e5e7eb", "", "no calibrated threshold"
    else:
        edge = 100.0 * threshold
        track = f"linear-gradient(to right,#fee2e2 0 {edge:.2f}%,#dcfce7 {edge:.2f}% 100%)"
        marker = (
            f'<div title="threshold" style="position:absolute;left:{edge:.2f}%;top:-6px;bottom:-6px;'
            'border-left:3px solid #111827"></div>'
            f'<div style="position:absolute;left:{edge:.2f}%;top:26px;transform:translateX(-50%);font-size:0.8em">'
            f"τ = {threshold:.3f}</div>"
        )
        caption = f"threshold τ = {threshold:.3f}"
    data_threshold = "" if threshold is None else f"{threshold:.6f}"
    return (
        f'<div data-confidence="{confidence:.6f}" data-threshold="{data_threshold}" style="padding:4px 0 22px">'
        f'<div style="margin-bottom:6px">Confidence <b>{confidence:.3f}</b> '
        f'<span style="color:#6b7280">({caption})</span></div>'
        f'<div style="position:relative;height:18px;border-radius:9px;background:{track}">'
        f'<div style="width:{percent:.2f}%;height:100%;border-radius:9px;background:{fill};opacity:0.85"></div>'
        f"{marker}</div></div>"
    )


def badge_html(verdict: TrustVerdict | None) -> str:
    """The trust badge; `data-trusted` is `true`, `false` or `unknown` for tests."""
    if verdict is None:
        return '<div data-trusted=""></div>'
    colour, background = _COLOURS[verdict.trusted]
    title = {True: "✔ trusted", False: "✘ not trusted", None: "? trust undecided"}[verdict.trusted]
    state = {True: "true", False: "false", None: "unknown"}[verdict.trusted]
    items = "".join(f"<li>{html.escape(reason)}</li>" for reason in verdict.reasons)
    notes = "".join(f"<li>{html.escape(note)}</li>" for note in verdict.notes)
    return (
        f'<div data-trusted="{state}" style="border:2px solid {colour};background:{background};color:{colour};'
        f'border-radius:10px;padding:8px 12px">'
        f'<div style="font-size:1.4em;font-weight:700">{title}</div>'
        + (
            f'<div style="margin-top:4px">why:</div><ul class="ter-reasons" style="margin:2px 0">{items}</ul>'
            if items
            else ""
        )
        + (f'<ul class="ter-notes" style="margin:2px 0;color:#374151;font-size:0.9em">{notes}</ul>' if notes else "")
        + "</div>"
    )


def _without_paths(message: str, given: Mapping[str, Any]) -> str:
    """`message` with each uploaded file's server path replaced by its name (no server paths on the page)."""
    for key in ("audio", "video"):
        if isinstance(given.get(key), str) and given[key]:
            message = message.replace(given[key], Path(given[key]).name)
    return message


def _figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def plot_opinions(opinions: Mapping[str, Mapping[str, Any]], fused: Mapping[str, Any], labels: Sequence[str]) -> Figure:
    """One panel of class probabilities per modality (title: confidence and label), and the fused opinion."""
    panels = [
        (
            "fused",
            {
                "present": True,
                "confidence": fused["confidence"],
                "label": fused["label"],
                "scores": {entry["label"]: entry["score"] for entry in fused["scores"]},
            },
        )
    ]
    panels += list(opinions.items())
    figure = _figure(2.6 * len(panels) + 0.8, 3.2)
    axes = figure.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    positions = list(range(len(labels)))
    for ax, (name, opinion) in zip(axes, panels):
        if not opinion.get("present") or opinion.get("scores") is None:
            why = opinion.get("reason") or "no input"
            ax.text(0.5, len(labels) / 2, f"missing\n({why})", ha="center", va="center", color="#6b7280")
            ax.set_title(f"{name}: missing", fontsize=10)
        else:
            values = [opinion["scores"].get(label, 0.0) for label in labels]
            colours = ["#2563eb" if label == opinion["label"] else "#93c5fd" for label in labels]
            ax.barh(positions, values, color=colours)
            flag = ", out of domain" if opinion.get("out_of_domain") else ""
            ax.set_title(f"{name}: {opinion['label']}\nconfidence {opinion['confidence']:.2f}{flag}", fontsize=10)
        ax.set_xlim(0, 1)
        ax.set_xlabel("probability")
    axes[0].set_yticks(positions, labels)
    axes[0].invert_yaxis()
    figure.suptitle("Each modality's opinion (expected class probabilities) and the fused one", fontsize=11)
    return figure


def plot_conflict(matrix: Sequence[Sequence[float | None]], names: Sequence[str]) -> Figure:
    """The pairwise Dempster-Shafer conflict as a heat map; grey cells involve a missing modality."""
    import numpy as np

    values = np.array([[np.nan if v is None else float(v) for v in row] for row in matrix], dtype=float)
    figure = _figure(3.6, 3.2)
    ax = figure.add_subplot()
    image = ax.imshow(np.ma.masked_invalid(values), vmin=0.0, vmax=1.0, cmap="Reds")
    ax.set_facecolor("#e5e7eb")
    for i in range(len(names)):
        for j in range(len(names)):
            text = "—" if math.isnan(values[i, j]) else f"{values[i, j]:.2f}"
            ax.text(j, i, text, ha="center", va="center", color="black" if not values[i, j] > 0.6 else "white")
    ax.set_xticks(range(len(names)), names)
    ax.set_yticks(range(len(names)), names)
    ax.set_title("Pairwise Dempster-Shafer conflict", fontsize=10)
    figure.colorbar(image, ax=ax, shrink=0.8)
    return figure


def plot_tradeoff(curve: TradeoffCurve, threshold: float | None) -> Figure:
    """Trusted precision and coverage against the threshold, with the checkpoint's operating point marked."""
    figure = _figure(6.4, 3.6)
    ax = figure.add_subplot()
    # A full sweep is a step function (T(τ) is constant between two distinct confidences); a few stored operating
    # points are drawn as points, since nothing is known between them.
    style = {"drawstyle": "steps-pre"} if curve.complete else {"marker": "o", "linestyle": "none"}
    ax.plot(curve.thresholds, curve.trusted_precision, label="trusted precision", color="#2563eb", **style)
    ax.plot(curve.thresholds, curve.coverage, label="coverage", color="#f59e0b", **style)
    if threshold is not None:
        precision, coverage = curve.at(threshold)
        ax.axvline(threshold, color="black", linestyle="--", linewidth=1, label=f"operating point τ = {threshold:.3f}")
        ax.plot(
            [threshold, threshold],
            [precision, coverage],
            "o",
            markersize=12,
            markerfacecolor="none",
            markeredgecolor="black",
            markeredgewidth=2,
        )
        ax.annotate(f"P={precision:.2f}", (threshold, precision), textcoords="offset points", xytext=(6, 4))
        ax.annotate(f"cov={coverage:.2f}", (threshold, coverage), textcoords="offset points", xytext=(6, -12))
    source = {"curve": "stored sweep", "samples": "sweep of stored samples", "operating points": "stored points"}
    ax.set(xlim=(0, 1), ylim=(0, 1.05), xlabel="trusted threshold τ", ylabel="value")
    ax.set_title(f"Trusted precision and coverage vs. τ ({source.get(curve.source, curve.source)})", fontsize=10)
    ax.legend(loc="best", fontsize="small")
    return figure


def model_summary(model: str, config: Any, conflict_limit: float) -> str:
    """One Markdown line on the checkpoint: modalities, fusion, threshold."""
    threshold = config.trusted_threshold
    tau = "none (not calibrated)" if threshold is None else f"{threshold:.3f}"
    strategy = (
        f" ({config.trusted_threshold_strategy})" if threshold is not None and config.trusted_threshold_strategy else ""
    )
    return (
        f"**Model** `{model}` · modalities {', '.join(config.modalities)} · fusion `{config.fusion}` · "
        f"confidence `{config.confidence_measure}` · trusted threshold τ = {tau}{strategy} · "
        f"strong conflict from {conflict_limit:.2f}"
    )


# ----------------------------------------------------------------------------------------------------------------------
# The page
# ----------------------------------------------------------------------------------------------------------------------


def build_demo(
    model: str | TrustedEmotionRecognitionPipeline,
    *,
    revision: str | None = None,
    conflict_limit: float = DEFAULT_CONFLICT_LIMIT,
    examples_dir: str | os.PathLike | None = REPO_DATA_DIR,
    eval_results: Mapping[str, Any] | None = None,
    title: str = "TER: trusted emotion recognition",
) -> gr.Blocks:
    """The Gradio page of a TER checkpoint.

    Args:
        model: a checkpoint folder or Hub ID (loaded on CPU), or a ready trusted-emotion-recognition pipeline.
        revision: the Hub revision to load (a commit hash pins it).
        conflict_limit: the pairwise conflict from which the badge calls two modalities in strong conflict.
        examples_dir: a folder with the demo corpus (`manifest.csv` and the clips it names) to take examples from;
            `None` for no examples.
        eval_results: the evaluation report to draw the trade-off curve from; default the checkpoint's
            `eval_results.json` (none for a pipeline object).

    Returns:
        `gr.Blocks`; start it with `.launch()`.
    """
    import gradio as gr

    if not 0.0 <= conflict_limit <= 1.0:
        raise ValueError(f"conflict_limit must lie in [0, 1], got {conflict_limit}.")
    if isinstance(model, str):
        name, recognizer = model, load_recognizer(model, revision)
        if eval_results is None:
            eval_results = read_eval_results(model, revision)
    else:
        name, recognizer = getattr(model.model, "name_or_path", "") or type(model.model).__name__, model
    config = recognizer.model.config
    modalities = tuple(config.modalities)
    labels = [config.id2label[k] for k in sorted(config.id2label)]
    threshold = config.trusted_threshold
    curve = load_tradeoff_curve(eval_results)

    def analyse(*values: Any) -> tuple:
        given = dict(zip(modalities, values))
        try:
            inputs = collect_inputs(modalities, **given)
            result, modality_probs = run_recognizer(recognizer, inputs)
        except DemoInputError as error:
            return _failure(str(error))
        except ValueError as error:  # the processor's and pipeline's input checks: their messages are for people
            logger.info("TER demo: unusable input: %s", error)
            return _failure(f"The model could not use this input: {_without_paths(str(error), given)}")
        except Exception as error:
            logger.exception("TER demo: the model failed on an input")
            return _failure(
                f"The model failed on this input ({type(error).__name__}: {_without_paths(str(error), given)})."
            )
        verdict = trust_verdict(result, threshold, conflict_limit, given=set(inputs))
        opinions = modality_opinions(result, modality_probs, labels)
        return (
            label_html(result),
            gauge_html(result["confidence"], threshold),
            badge_html(verdict),
            {entry["label"]: entry["score"] for entry in result["scores"]},
            plot_opinions(opinions, result, labels),
            plot_conflict(result["conflict"]["matrix"], list(result["modalities"])),
            "",
            result,
        )

    def _failure(message: str) -> tuple:
        return (label_html(None), gauge_html(None, None), badge_html(None), None, None, None, f"⚠️ **{message}**", None)

    with gr.Blocks(title=title, analytics_enabled=False) as demo:
        gr.Markdown(
            f"# {title}\n"
            "Give any of the inputs; each modality forms its own evidential opinion, the opinions are fused by "
            "Dempster-Shafer, and the prediction is trusted when the fused confidence reaches the calibrated "
            "threshold.\n\n" + model_summary(name, config, conflict_limit)
        )
        with gr.Row():
            with gr.Column(scale=1):
                components = {}
                if "audio" in modalities:
                    components["audio"] = gr.Audio(
                        sources=["upload", "microphone"], type="filepath", label="Audio", elem_id=ELEM_IDS["audio"]
                    )
                if "text" in modalities:
                    components["text"] = gr.Textbox(label="Text (transcript)", lines=2, elem_id=ELEM_IDS["text"])
                if "video" in modalities:
                    components["video"] = gr.Video(sources=["upload"], label="Face video", elem_id=ELEM_IDS["video"])
                with gr.Row():
                    clear = gr.ClearButton(value="Clear")
                    submit = gr.Button("Recognise", variant="primary", elem_id=ELEM_IDS["submit"])
                inputs = [components[m] for m in modalities]
                examples = demo_examples(Path(examples_dir), modalities) if examples_dir is not None else []
                if examples:
                    gr.Examples(examples, inputs=inputs, label="Examples from the demo corpus (click one)")
            with gr.Column(scale=1):
                message = gr.Markdown(elem_id=ELEM_IDS["message"])
                label = gr.HTML(label_html(None), elem_id=ELEM_IDS["label"])
                gauge = gr.HTML(gauge_html(None, None), elem_id=ELEM_IDS["gauge"])
                badge = gr.HTML(badge_html(None), elem_id=ELEM_IDS["badge"])
                scores = gr.Label(label="Fused class probabilities", num_top_classes=3, elem_id=ELEM_IDS["scores"])
        with gr.Row():
            opinions_plot = gr.Plot(show_label=False, elem_id=ELEM_IDS["modalities"], scale=3)
            conflict_plot = gr.Plot(show_label=False, elem_id=ELEM_IDS["conflict"], scale=1)
        with gr.Accordion("Trade-off: trusted precision and coverage vs. threshold", open=True):
            if curve is None:
                gr.Markdown(
                    "This checkpoint stores no evaluation results (no `eval_results.json`), so the trade-off "
                    "curve cannot be drawn.",
                    elem_id=ELEM_IDS["tradeoff"],
                )
            else:
                if not curve.complete:
                    gr.Markdown(
                        f"`eval_results.json` stores no threshold sweep, only {len(curve.thresholds)} operating "
                        "points (one per threshold strategy); they are drawn as points."
                    )
                gr.Plot(plot_tradeoff(curve, threshold), show_label=False, elem_id=ELEM_IDS["tradeoff"])
        with gr.Accordion("Pipeline output (JSON)", open=False):
            raw = gr.JSON(elem_id=ELEM_IDS["result"])
        outputs = [label, gauge, badge, scores, opinions_plot, conflict_plot, message, raw]
        submit.click(analyse, inputs=inputs, outputs=outputs)
        clear.add([*inputs, *outputs])
    return demo


# ----------------------------------------------------------------------------------------------------------------------
# A Space that serves the demo
# ----------------------------------------------------------------------------------------------------------------------


def _space_requirements() -> list[str]:
    """`SPACE_REQUIREMENTS` with the version specifiers of the installed `ter` package's requirements."""
    import re

    try:
        declared = metadata.requires("ter") or []
    except metadata.PackageNotFoundError:
        declared = []
    pinned = {}
    for requirement in declared:
        if ";" in requirement:  # an extra's requirement
            continue
        match = re.match(r"\s*([A-Za-z0-9_.\-]+)", requirement)
        if match:
            pinned[re.sub(r"[-_.]+", "-", match.group(1)).lower()] = requirement.strip()
    return [pinned.get(name, name) for name in SPACE_REQUIREMENTS]


def write_demo_space(
    folder: str | os.PathLike,
    model_id: str,
    *,
    revision: str | None = None,
    title: str | None = None,
    emoji: str = "🛡️",
    color_from: str = "indigo",
    color_to: str = "green",
    conflict_limit: float = DEFAULT_CONFLICT_LIMIT,
) -> Path:
    """Writes a Gradio Space folder serving the demo of the Hub checkpoint `model_id`.

    The folder holds `app.py` (loads `model_id` at `revision` and launches `build_demo`), `requirements.txt`, a
    `README.md` with the Space YAML header (`sdk: gradio`, `sdk_version` = the installed gradio), and a copy of the
    `modeling_ter` package and of `trusted_f1/trusted_metrics.py`, which the app imports (a Space installs no
    project of its own). Push it with `HfApi().upload_folder(repo_id=..., repo_type="space", folder_path=folder)`.

    Returns:
        The folder.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    package = Path(__file__).resolve().parents[1]
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(package, folder / "modeling_ter", ignore=ignore, dirs_exist_ok=True)
    from trusted_f1 import trusted_metrics

    (folder / "trusted_f1").mkdir(exist_ok=True)
    shutil.copy2(trusted_metrics.__file__, folder / "trusted_f1" / "trusted_metrics.py")
    (folder / "trusted_f1" / "__init__.py").write_text('"""The trusted metrics of TER (copied for the Space)."""\n')

    (folder / "app.py").write_text(
        f'"""The TER demo of {model_id} (written by `modeling_ter.demo.write_demo_space`)."""\n\n'
        "from modeling_ter.demo import build_demo\n\n"
        f"demo = build_demo({model_id!r}, revision={revision!r}, conflict_limit={conflict_limit!r}, examples_dir=None)\n"
        "demo.launch()\n",
        encoding="utf-8",
    )
    (folder / "requirements.txt").write_text("\n".join(_space_requirements()) + "\n", encoding="utf-8")
    title = title or f"TER demo: {model_id.split('/')[-1]}"
    header = {
        "title": title,
        "emoji": emoji,
        "colorFrom": color_from,
        "colorTo": color_to,
        "sdk": "gradio",
        "sdk_version": metadata.version("gradio"),
        "app_file": "app.py",
        "pinned": "false",
        "models": f"[{model_id}]",
    }
    yaml = "\n".join(f"{key}: {json.dumps(value) if key == 'title' else value}" for key, value in header.items())
    (folder / "README.md").write_text(
        f"---\n{yaml}\n---\n\n# {title}\n\n"
        f"Trusted multimodal emotion recognition with [{model_id}](https://huggingface.co/{model_id}): give audio "
        "(upload or microphone), a text and/or a face video; the page shows the fused emotion, its confidence against "
        "the calibrated trusted threshold, whether the prediction is trusted and why not, each modality's opinion, "
        "their pairwise conflict, and the trade-off between trusted precision and coverage.\n",
        encoding="utf-8",
    )
    return folder


__all__ = [
    "DEFAULT_CONFLICT_LIMIT",
    "ELEM_IDS",
    "DemoInputError",
    "TradeoffCurve",
    "TrustVerdict",
    "build_demo",
    "collect_inputs",
    "demo_examples",
    "load_tradeoff_curve",
    "modality_opinions",
    "read_eval_results",
    "run_recognizer",
    "trust_verdict",
    "write_demo_space",
]
