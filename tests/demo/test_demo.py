"""The Gradio demo (modeling_ter/demo): the badge logic and the trade-off curve on known values, the Space folder, and
the page itself driven by headless Chromium against the pipeline's own output.

The browser tests need Debian's `chromium` and `chromium-driver` (`/usr/bin/chromedriver`; Selenium downloads nothing
here) and skip without them. They run on a tiny checkpoint built from the default encoders (untrained heads); set
`TER_DEMO_MODEL=out` to drive a trained checkpoint instead. The page's screenshot goes to `$TER_TEST_ARTIFACTS` (else
the test's tmp_path); with `TER_DEMO_MODEL` set, a copy goes to `model_cards/demo_screenshot.png` for the README.
"""

from __future__ import annotations

import doctest
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

from modeling_ter.demo import app as demo_app
from modeling_ter.demo.app import (
    DemoInputError,
    TrustVerdict,
    badge_html,
    collect_inputs,
    demo_examples,
    gauge_html,
    load_tradeoff_curve,
    modality_opinions,
    trust_verdict,
    write_demo_space,
)
from trusted_f1.trusted_metrics import threshold_sweep, trusted_scores

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "data"
CLIP = DATA / "emodb" / "wav" / "03a01Wa.flac"
TRANSCRIPT = "Der Lappen liegt auf dem Eisschrank."
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
INSTALL = "apt-get update && apt-get install -y chromium chromium-driver"
README_SCREENSHOT = REPO / "model_cards" / "demo_screenshot.png"
PAGE_TIMEOUT_S = 60


def _result(confidence=0.8, trusted=True, conflict=0.1, present=(True, True, False), **extra_modality_fields):
    """A pipeline output of an audio/text/video model, as documented in modeling_ter/pipelines/trusted_emotion_recognition.py."""
    names = ("audio", "text", "video")
    modalities = {
        name: {"present": p, "confidence": 0.7 if p else None, "label": "anger" if p else None}
        for name, p in zip(names, present)
    }
    for name, fields in extra_modality_fields.items():
        modalities[name].update(fields)
    matrix = [
        [
            conflict if (present[i] and present[j] and i != j) else (0.0 if present[i] and i == j else None)
            for j in range(3)
        ]
        for i in range(3)
    ]
    pairs = [matrix[i][j] for i in range(3) for j in range(i + 1, 3) if matrix[i][j] is not None]
    return {
        "label": "anger",
        "score": 0.6,
        "confidence": confidence,
        "trusted": trusted,
        "scores": [{"label": "anger", "score": 0.6}, {"label": "sadness", "score": 0.4}],
        "modalities": modalities,
        "conflict": {"max": max(pairs) if pairs else None, "matrix": matrix},
    }


# ----------------------------------------------------------------------------------------------------------------------
# The badge: trusted or not, and why
# ----------------------------------------------------------------------------------------------------------------------


def test_confident_complete_agreeing_prediction_is_trusted_without_reasons():
    verdict = trust_verdict(_result(present=(True, True, True)), threshold=0.7)
    assert verdict == TrustVerdict(trusted=True, reasons=(), notes=())


def test_low_confidence_is_the_first_reason_with_both_numbers():
    verdict = trust_verdict(_result(confidence=0.42, trusted=False, present=(True, True, True)), threshold=0.711)
    assert verdict.trusted is False
    assert verdict.reasons == ("low confidence: 0.420 is below the threshold 0.711",)


def test_without_the_pipeline_flag_the_threshold_decides():
    result = _result(confidence=0.69, trusted=None, present=(True, True, True))
    assert trust_verdict(result, threshold=0.7).trusted is False
    assert trust_verdict(result, threshold=0.69).trusted is True  # confidence >= threshold is trusted


def test_missing_modality_is_a_reason_only_when_not_trusted():
    trusted = trust_verdict(_result(), threshold=0.7)
    assert trusted.trusted is True and trusted.reasons == ()
    assert trusted.notes == ("missing modality: video (no evidence from it)",)
    untrusted = trust_verdict(_result(confidence=0.3, trusted=False), threshold=0.7)
    assert untrusted.reasons[1:] == ("missing modality: video (no evidence from it)",)
    assert untrusted.notes == ()


def test_strong_conflict_overrules_a_confident_prediction_and_names_the_pair():
    verdict = trust_verdict(_result(conflict=0.62), threshold=0.7, conflict_limit=0.5)
    assert verdict.trusted is False
    assert verdict.reasons[0] == "strong conflict between audio and text: 0.62 (limit 0.50)"
    assert trust_verdict(_result(conflict=0.49), threshold=0.7, conflict_limit=0.5).trusted is True


def test_out_of_domain_fields_are_read_when_the_pipeline_gives_them():
    # The pipeline may report per-modality "out_of_domain" / "reason" later; absent today (the other tests).
    result = _result(audio={"out_of_domain": True, "reason": "energy far outside the training range"})
    verdict = trust_verdict(result, threshold=0.7)
    assert verdict.trusted is False
    assert verdict.reasons[0] == "audio is out of domain: energy far outside the training range"
    video_rejected = _result(video={"out_of_domain": True})  # absent and out of domain: named once, as OOD
    assert trust_verdict(video_rejected, threshold=0.7).reasons == ("video is out of domain",)
    unusable = trust_verdict(_result(confidence=0.3, trusted=False), threshold=0.7, given={"audio", "video"})
    assert unusable.reasons[1] == "missing modality: video (given but not usable) (no evidence from it)"
    no_face = trust_verdict(_result(video={"reason": "no face found"}), threshold=0.7)
    assert no_face.trusted is True and no_face.notes == (
        "missing modality: video (no face found) (no evidence from it)",
    )


def test_without_a_threshold_trust_is_undecided_unless_something_else_rules_it_out():
    undecided = trust_verdict(_result(trusted=None), threshold=None)
    assert undecided.trusted is None and undecided.reasons == ()
    assert undecided.notes[0].startswith("this checkpoint has no calibrated trusted threshold")
    assert trust_verdict(_result(trusted=None, conflict=0.9), threshold=None).trusted is False


def test_badge_and_gauge_html_carry_the_values_and_escape_text():
    badge = badge_html(TrustVerdict(False, reasons=("text is out of domain: <b>html</b>",)))
    assert 'data-trusted="false"' in badge and "✘ not trusted" in badge and "why:" in badge
    assert "&lt;b&gt;html&lt;/b&gt;" in badge and "<b>html</b>" not in badge
    assert 'data-trusted="true"' in badge_html(TrustVerdict(True)) and "why:" not in badge_html(TrustVerdict(True))
    assert 'data-trusted="unknown"' in badge_html(TrustVerdict(None))
    gauge = gauge_html(0.25, 0.7)
    assert 'data-confidence="0.250000"' in gauge and 'data-threshold="0.700000"' in gauge
    assert "width:25.00%" in gauge and "left:70.00%" in gauge and "#dc2626" in gauge  # red: below τ
    assert "#16a34a" in gauge_html(0.7, 0.7) and "no calibrated threshold" in gauge_html(0.5, None)


def test_modality_opinions_add_class_probabilities_of_present_modalities_only():
    result = _result()
    probs = [[0.7, 0.3], [0.4, 0.6], [0.5, 0.5]]
    opinions = modality_opinions(result, probs, ["anger", "sadness"])
    assert opinions["audio"]["scores"] == {"anger": 0.7, "sadness": 0.3}
    assert opinions["text"]["scores"] == {"anger": 0.4, "sadness": 0.6}
    assert opinions["video"]["scores"] is None  # missing: the uniform all-ones Dirichlet is no opinion
    result["modalities"]["audio"]["scores"] = {"anger": 1.0, "sadness": 0.0}  # a future return_modality_scores
    assert modality_opinions(result, probs, ["anger", "sadness"])["audio"]["scores"] == {"anger": 1.0, "sadness": 0.0}
    result["modalities"]["text"]["scores"] = [{"label": "sadness", "score": 0.9}, {"label": "anger", "score": 0.1}]
    assert modality_opinions(result, probs, ["anger", "sadness"])["text"]["scores"] == {"anger": 0.1, "sadness": 0.9}


def test_module_docstring_example():
    failures, attempted = doctest.testmod(demo_app, verbose=False)
    assert attempted > 0 and failures == 0


# ----------------------------------------------------------------------------------------------------------------------
# The trade-off curve from what a checkpoint stores
# ----------------------------------------------------------------------------------------------------------------------

CORRECT, CONFIDENCES = [True, False, True], [0.9, 0.5, 0.5]


def test_curve_stored_by_trusted_scores_is_drawn_as_stored():
    scores = trusted_scores([0, 1, 2], [0, 0, 2], CONFIDENCES, threshold=0.7, return_curve=True)
    curve = load_tradeoff_curve({"overall": scores})
    assert (curve.source, curve.complete) == ("curve", True)
    assert curve.thresholds == (0.5, 0.9)
    assert curve.trusted_precision == pytest.approx((2 / 3, 1.0))
    assert curve.coverage == pytest.approx((1.0, 1 / 3))
    # The operating point is what trusted_scores reports at that τ.
    assert curve.at(0.7) == pytest.approx((scores["trusted_precision"], scores["coverage"]))
    precision, coverage = curve.at(0.95)  # past the largest confidence nothing is trusted
    assert math.isnan(precision) and coverage == 0.0


def test_stored_samples_are_swept_with_trusted_metrics():
    curve = load_tradeoff_curve({"overall": {"samples": {"correct": CORRECT, "confidences": CONFIDENCES}}})
    sweep = threshold_sweep(CORRECT, CONFIDENCES)
    assert curve.source == "samples" and curve.complete
    assert curve.thresholds == tuple(sweep["thresholds"]) and curve.coverage == tuple(sweep["coverage"])
    assert curve.trusted_precision == pytest.approx((2 / 3, 1.0))


def test_operating_points_of_a_train_report_are_sorted_and_deduplicated():
    # The layout scripts/train.py writes today: overall at the stored τ plus one entry per strategy.
    overall = {"threshold": 0.71, "trusted_precision": 0.48, "coverage": 0.5}
    overall["thresholds"] = {
        "max_f1": {"threshold": 0.21, "trusted_precision": 0.52, "coverage": 0.95},
        "break_even": dict(overall),
        "target_precision": {"threshold": 0.88, "trusted_precision": 1.0, "coverage": 0.01},
    }
    curve = load_tradeoff_curve({"overall": overall})
    assert (curve.source, curve.complete) == ("operating points", False)
    assert curve.thresholds == (0.21, 0.71, 0.88)
    assert curve.trusted_precision == (0.52, 0.48, 1.0) and curve.coverage == (0.95, 0.5, 0.01)
    assert curve.at(0.71) == (0.48, 0.5)


@pytest.mark.parametrize("stored", [None, {}, {"overall": "n/a"}, {"overall": {"accuracy": 0.5}}])
def test_nothing_stored_gives_no_curve(stored):
    assert load_tradeoff_curve(stored) is None


# ----------------------------------------------------------------------------------------------------------------------
# Inputs and examples
# ----------------------------------------------------------------------------------------------------------------------


def test_empty_or_unusable_inputs_raise_a_readable_error(tmp_path):
    with pytest.raises(DemoInputError, match="Nothing to recognise: give an audio clip .* or a text or a face video"):
        collect_inputs(("audio", "text", "video"), audio=None, text="   ", video=None)
    with pytest.raises(DemoInputError, match="Nothing to recognise: give a text\\.$"):
        collect_inputs(("text",), audio=str(CLIP))  # the model has no audio modality: audio is not used
    notes = tmp_path / "notes.txt"
    notes.write_text("not audio")
    with pytest.raises(DemoInputError, match="'notes.txt' is not an audio file the demo can read"):
        collect_inputs(("audio",), audio=str(notes))
    with pytest.raises(DemoInputError, match="'notes.txt' is not a video file"):
        collect_inputs(("video",), video=str(notes))


def test_inputs_keep_the_models_modalities_and_pass_audio_files_as_paths():
    inputs = collect_inputs(("audio", "text"), audio=str(CLIP), text=TRANSCRIPT, video="ignored.mp4")
    assert inputs == {"audio": str(CLIP), "text": TRANSCRIPT}


def test_browser_recordings_in_webm_are_decoded_with_pyav(tmp_path):
    av = pytest.importorskip("av")
    recording = tmp_path / "recording.webm"
    rate, seconds = 48000, 0.5
    with av.open(str(recording), "w") as container:
        stream = container.add_stream("libopus", rate=rate, layout="mono")
        tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(int(rate * seconds)) / rate)).astype(np.float32)
        frame = av.AudioFrame.from_ndarray(tone[None, :], format="flt", layout="mono")
        frame.sample_rate = rate
        for packet in (*stream.encode(frame), *stream.encode(None)):
            container.mux(packet)
    audio = collect_inputs(("audio",), audio=str(recording))["audio"]
    assert audio["sampling_rate"] == 16000
    assert len(audio["array"]) == pytest.approx(16000 * seconds, rel=0.05)
    assert 0.2 < np.abs(audio["array"]).max() < 0.4  # the tone survives the codec


@pytest.mark.skipif(not (DATA / "manifest.csv").is_file(), reason="the demo corpus data/ is absent")
def test_examples_come_from_the_demo_corpus():
    examples = demo_examples(DATA, ("audio", "text", "video"))
    assert examples[0] == [str(CLIP), TRANSCRIPT, None]
    assert all(len(row) == 3 for row in examples) and len(examples) == 6  # 2 per corpus: EmoDB, CREMA-D, MELD
    assert any(row[2] is not None and Path(row[2]).is_file() for row in examples)  # a CREMA-D video
    assert all(row[0] is None and row[1] for row in examples[-2:])  # MELD: text only
    text_only = demo_examples(DATA, ("text",))
    assert all(len(row) == 1 and row[0] for row in text_only)
    assert demo_examples(None, ("audio",)) == [] and demo_examples(DATA / "missing", ("audio",)) == []


# ----------------------------------------------------------------------------------------------------------------------
# The Space folder
# ----------------------------------------------------------------------------------------------------------------------


def test_space_folder_has_the_yaml_header_the_app_and_an_importable_package(tmp_path):
    folder = write_demo_space(tmp_path / "space", "my-org/ter-emodb", revision="abc123")
    readme = (folder / "README.md").read_text(encoding="utf-8")
    header = dict(line.split(": ", 1) for line in readme.split("---\n")[1].strip().splitlines())
    assert header == {
        "title": '"TER demo: ter-emodb"',
        "emoji": "🛡️",
        "colorFrom": "indigo",
        "colorTo": "green",
        "sdk": "gradio",
        "sdk_version": metadata.version("gradio"),
        "app_file": "app.py",
        "pinned": "false",
        "models": "[my-org/ter-emodb]",
    }
    app = (folder / "app.py").read_text(encoding="utf-8")
    assert "build_demo('my-org/ter-emodb', revision='abc123'" in app and "demo.launch()" in app
    requirements = (folder / "requirements.txt").read_text().split()
    assert "torch==2.13.0" in requirements and "transformers==5.23.0" in requirements
    assert "huggingface-hub==2.4.0" in requirements and not any(r.startswith("gradio") for r in requirements)
    # The app imports the copied package, not the one installed here.
    # (find_spec locates the packages without importing torch: a fast check of what `import` would load.)
    probe = (
        "import importlib.util as u; print(u.find_spec('modeling_ter').origin); print(u.find_spec('trusted_f1').origin)"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run(
        [sys.executable, "-c", probe], check=False, cwd=folder, capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert all(Path(line).resolve().is_relative_to(folder.resolve()) for line in out.stdout.split())
    package = Path(demo_app.__file__).resolve().parents[1]
    shipped = {p.relative_to(package) for p in package.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    copied = {p.relative_to(folder / "modeling_ter") for p in (folder / "modeling_ter").rglob("*") if p.is_file()}
    assert copied == shipped and Path("demo/app.py") in copied  # the package as it is, caches left out


def test_cli_rejects_bad_arguments(capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("ter_demo_script", REPO / "scripts" / "demo.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.parse_args(["--model", "out"]).share == "no"
    for argv, message in (
        (["--model", "out", "--conflict_limit", "1.5"], "--conflict_limit must lie in"),
        (["--model", "out", "--share", "maybe"], "invalid choice: 'maybe'"),
    ):
        with pytest.raises(SystemExit):
            script.parse_args(argv)
        assert message in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------------------------------
# The page in a browser
# ----------------------------------------------------------------------------------------------------------------------


def _missing_browser() -> str | None:
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not Path(path).exists()]
    return f"{' and '.join(missing)} absent; install with: {INSTALL}" if missing else None


browser = pytest.mark.skipif(_missing_browser() is not None, reason=_missing_browser() or "")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    """A tiny checkpoint (default encoders, untrained 8-wide heads) with a threshold and a stored curve."""
    if os.environ.get("TER_DEMO_MODEL"):
        return os.environ["TER_DEMO_MODEL"]
    import torch

    from modeling_ter.encoders.defaults import build_default_model, build_default_processor

    torch.manual_seed(0)
    model = build_default_model(head_hidden_size=8).eval()
    # A stored evaluation with a full curve, from synthetic validation predictions (confidence tracks accuracy).
    rng = np.random.default_rng(0)
    confidences = rng.uniform(0.2, 0.9, 200)
    references = rng.integers(0, 8, 200)
    predictions = np.where(rng.random(200) < confidences, references, (references + 1) % 8)
    scores = trusted_scores(predictions, references, confidences, threshold="break_even", return_curve=True)
    model.config.trusted_threshold, model.config.trusted_threshold_strategy = scores["threshold"], "break_even"
    folder = tmp_path_factory.mktemp("tiny_checkpoint")
    model.save_pretrained(folder)
    build_default_processor().save_pretrained(folder)
    (folder / "eval_results.json").write_text(json.dumps({"overall": scores}))
    return str(folder)


@pytest.fixture(scope="module")
def server(checkpoint):
    """The demo on 127.0.0.1 at a free port, for the whole module."""
    pytest.importorskip("gradio", reason="pip install gradio (the demo's dependency)")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    demo = demo_app.build_demo(checkpoint)
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, show_error=False)
    yield f"http://127.0.0.1:{port}/"
    demo.close()


@pytest.fixture(scope="module")
def driver():
    webdriver = pytest.importorskip("selenium.webdriver", reason="pip install selenium")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1400,1800",
        "--lang=en-US",
    ):
        options.add_argument(argument)
    chrome = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)  # the system driver: no download
    yield chrome
    chrome.quit()


def _open(driver, url: str):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    WebDriverWait(driver, PAGE_TIMEOUT_S).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#ter-submit"))
    return WebDriverWait(driver, PAGE_TIMEOUT_S)


def _upload_audio(driver, path: Path) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.CSS_SELECTOR, "#ter-audio input[type=file]").send_keys(str(path))


def _text(driver, css: str) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, css).text


def _uploaded(driver) -> bool:
    """The audio component shows a player (its upload area is gone) once the upload has landed."""
    from selenium.webdriver.common.by import By

    return not driver.find_elements(By.CSS_SELECTOR, "#ter-audio [data-testid='upload-text']")


def _submit_and_wait(driver, wait, ready) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.CSS_SELECTOR, "#ter-submit").click()
    wait.until(ready)


def _screenshot(driver, name: str, tmp_path: Path) -> Path:
    folder = Path(os.environ.get("TER_TEST_ARTIFACTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1400, min(int(height) + 40, 4000))  # the whole page in one picture
    time.sleep(0.5)
    path = folder / name
    driver.save_screenshot(str(path))
    return path


@browser
@pytest.mark.skipif(not CLIP.is_file(), reason=f"the demo clip {CLIP} is absent")
def test_page_shows_the_pipelines_decision(server, driver, checkpoint, tmp_path):
    from selenium.webdriver.common.by import By
    from transformers import pipeline

    wait = _open(driver, server)
    _upload_audio(driver, CLIP)
    driver.find_element(By.CSS_SELECTOR, "#ter-text textarea").send_keys(TRANSCRIPT)
    wait.until(_uploaded)
    decided = "#ter-badge [data-trusted='true'], #ter-badge [data-trusted='false'], #ter-badge [data-trusted='unknown']"
    _submit_and_wait(driver, wait, lambda d: d.find_elements(By.CSS_SELECTOR, decided))
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#ter-modalities img"))
    page = {
        "label": driver.find_element(By.CSS_SELECTOR, "#ter-label [data-label]").get_attribute("data-label"),
        "confidence": float(
            driver.find_element(By.CSS_SELECTOR, "#ter-gauge [data-confidence]").get_attribute("data-confidence")
        ),
        "threshold": driver.find_element(By.CSS_SELECTOR, "#ter-gauge [data-confidence]").get_attribute(
            "data-threshold"
        ),
        "trusted": driver.find_element(By.CSS_SELECTOR, "#ter-badge [data-trusted]").get_attribute("data-trusted"),
        "badge": driver.find_element(By.CSS_SELECTOR, "#ter-badge").text,
        "message": driver.find_element(By.CSS_SELECTOR, "#ter-message").text,
    }
    screenshot = _screenshot(driver, "demo_page.png", tmp_path)
    if os.environ.get("TER_DEMO_MODEL"):  # a trained checkpoint: the picture the README shows
        shutil.copyfile(screenshot, README_SCREENSHOT)

    recognizer = pipeline("trusted-emotion-recognition", model=checkpoint)
    expected = recognizer({"audio": str(CLIP), "text": TRANSCRIPT})
    config = recognizer.model.config
    verdict = trust_verdict(expected, config.trusted_threshold)
    assert page["label"] == expected["label"]
    assert page["confidence"] == pytest.approx(expected["confidence"], abs=1e-6)
    assert float(page["threshold"]) == pytest.approx(config.trusted_threshold, abs=1e-6)
    assert page["trusted"] == {True: "true", False: "false", None: "unknown"}[verdict.trusted]
    if expected["trusted"] is not None and expected["conflict"]["max"] < demo_app.DEFAULT_CONFLICT_LIMIT:
        assert page["trusted"] == str(expected["trusted"]).lower()  # the badge follows the pipeline's flag
    assert page["badge"].splitlines()[0] == ("✔ trusted" if verdict.trusted else "✘ not trusted")
    for reason in verdict.reasons + verdict.notes:
        assert reason in page["badge"]
    assert page["message"] == ""
    # The trade-off curve of the stored evaluation is drawn.
    assert driver.find_elements(By.CSS_SELECTOR, "#ter-tradeoff img")
    assert screenshot.stat().st_size > 50_000


@browser
def test_bad_files_give_a_readable_error_on_the_page(server, driver, tmp_path):
    from selenium.webdriver.common.by import By

    def message() -> str:
        return _text(driver, "#ter-message")

    # Not audio, though named .wav: the browser accepts it, the decoder does not.
    fake = tmp_path / "fake.wav"
    fake.write_text("this is not audio\n")
    wait = _open(driver, server)
    _upload_audio(driver, fake)
    wait.until(_uploaded)
    _submit_and_wait(driver, wait, lambda d: message())
    assert message().startswith("⚠️ The model could not use this input: Cannot decode audio file 'fake.wav'")
    assert "Traceback" not in driver.page_source and "/tmp/gradio" not in message()
    assert driver.find_element(By.CSS_SELECTOR, "#ter-label [data-label]").get_attribute("data-label") == ""
    _screenshot(driver, "demo_bad_audio.png", tmp_path)

    # A text file: Gradio's upload refuses the file type, and the submission is then empty.
    notes = tmp_path / "notes.txt"
    notes.write_text("this is not audio\n")
    wait = _open(driver, server)
    _upload_audio(driver, notes)
    wait.until(lambda d: "Invalid file type: notes.txt" in _text(d, "body"))
    _submit_and_wait(driver, wait, lambda d: message())
    assert message().startswith("⚠️ Nothing to recognise: give an audio clip")


def test_the_demo_module_imports_gradio_and_matplotlib_only_where_it_uses_them():
    # Module-level imports run with `import modeling_ter.demo`; gradio and matplotlib must wait for a page or figure.
    # (Read from the source: importing it in a fresh interpreter costs the torch import, seconds on a busy machine.)
    import ast

    tree = ast.parse(Path(demo_app.__file__).read_text(encoding="utf-8"))
    top_level = []
    for node in tree.body:
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            continue  # annotations only
        if isinstance(node, ast.Import):
            top_level += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            top_level.append("." * node.level + (node.module or ""))
    assert top_level and not [name for name in top_level if name.split(".")[0] in {"gradio", "matplotlib", "selenium"}]
    assert {"csv", "json", "__future__"} <= set(top_level) and not [n for n in top_level if n.startswith(".")]
