"""CI: build the wheel, install it into a fresh environment outside the repository, and use it as a user would.

    python .ci/check_wheel.py

The fresh venv reaches the already installed dependencies through a `.pth` file but not the repository's editable
install (`.pth` files inside those folders are not processed), so `modeling_ter` and `trusted_f1` come from the wheel
alone. In a folder outside the repository, the installed package then builds a model card from its shipped template,
runs the pipeline on a demo clip with the default encoders (the face weights ship in the wheel) and `evaluate.load`s
the installed metric.
"""

import site
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

USER_CODE = textwrap.dedent(
    """
    import json, os, sys
    from pathlib import Path
    import modeling_ter, trusted_f1
    for module in (modeling_ter, trusted_f1):
        assert "site-packages" in module.__file__ and not module.__file__.startswith(sys.argv[1]), module.__file__

    from modeling_ter.encoders.defaults import build_default_model, build_default_processor
    from modeling_ter.hub.model_card import build_model_card
    from transformers import pipeline

    metrics = {"n": 4, "accuracy": 0.5, "trusted_precision": 0.75, "coverage": 0.5, "threshold": 0.4}
    card = build_model_card({"overall": metrics, "corpora": {"emodb": {"fused": metrics}}}, None)
    assert "model-index" in str(card) and "EmoDB" in str(card), str(card)[:500]

    model = build_default_model(("audio", "text", "video"), id2label={0: "anger", 1: "sadness"}, trusted_threshold=0.5)
    processor = build_default_processor(("audio", "text", "video"))
    model.save_pretrained("checkpoint")
    processor.save_pretrained("checkpoint")
    classify = pipeline("trusted-emotion-recognition", model="checkpoint")
    clip = os.path.join(sys.argv[1], "data", "emodb", "wav", "03a01Wa.flac")
    result = classify({"audio": clip, "text": "Der Lappen liegt auf dem Eisschrank."})
    assert result["label"] in ("anger", "sadness") and result["modalities"]["audio"]["present"], result
    assert result["modalities"]["video"]["present"] is False, result

    import evaluate
    metric = evaluate.load(os.path.dirname(trusted_f1.__file__))
    scores = metric.compute(predictions=[0, 1, 1], references=[0, 1, 0], confidences=[0.9, 0.8, 0.3])
    assert abs(scores["trusted_precision"] - 1.0) < 1e-12, scores
    print(json.dumps({"pipeline": result["label"], "trusted_f1": scores["trusted_f1"]}))
    """
)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="ter-wheel-") as tmp:
        tmp = Path(tmp)
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "--no-build-isolation", "-w", tmp / "dist"],
            check=True,
        )
        (wheel,) = (tmp / "dist").glob("ter-*.whl")
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", tmp / "venv"], check=True)
        (site_packages,) = (tmp / "venv").glob("lib/python*/site-packages")
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--target", site_packages, wheel],
            check=True,
        )
        (site_packages / "dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
        work = tmp / "user"
        work.mkdir()
        result = subprocess.run(
            [tmp / "venv" / "bin" / "python", "-c", USER_CODE, str(REPO)], cwd=work, capture_output=True, text=True
        )
        print(result.stdout[-2000:])
        if result.returncode != 0:
            sys.exit(f"The installed wheel failed:\n{result.stderr[-5000:]}")
        print(f"wheel check passed: {wheel.name}")


if __name__ == "__main__":
    main()
