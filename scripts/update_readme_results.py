"""Regenerate the README's Results table from a checkpoint's `eval_results.json` (no number is typed by hand).

    python scripts/train.py --output_dir out
    python scripts/update_readme_results.py --eval out/eval_results.json [--readme README.md]

Replaces what stands between `<!-- results:start -->` and `<!-- results:end -->` in the README with the per-corpus,
per-opinion table of the evaluation JSON (`modeling_ter.evaluation.report` layout) and the threshold strategies.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
START, END = "<!-- results:start -->", "<!-- results:end -->"
COLUMNS = ("n", "accuracy", "uar", "trusted_precision", "trusted_recall", "trusted_f1", "coverage", "threshold")
COLUMNS += ("aurc", "ece")
HEADER = ("corpus", "opinion", "n", "accuracy", "UAR", "trusted P", "trusted R", "trusted F1", "coverage", "τ")
HEADER += ("AURC", "ECE")


def _row(corpus: str, opinion: str, metrics: dict) -> str:
    cells = [corpus, opinion] + [str(metrics[k]) if k == "n" else f"{metrics[k]:.3f}" for k in COLUMNS]
    return "| " + " | ".join(cells) + " |"


def results_block(report: dict) -> str:
    """The Markdown table of `report` and one line per threshold strategy."""
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for corpus, entry in report["corpora"].items():
        for opinion, metrics in entry.items():
            lines.append(_row(corpus, opinion, metrics))
    lines.append(_row("all", "fused", report["overall"]))
    strategies = report["overall"].get("thresholds", {})
    if strategies:
        lines.append("")
        lines.append("Threshold strategies on the same data (the checkpoint stores the one whose τ is in the table):")
        lines.append("")
        for name, metrics in strategies.items():
            lines.append(
                f"- {name}: τ = {metrics['threshold']:.3f}, trusted P {metrics['trusted_precision']:.3f}, "
                f"R {metrics['trusted_recall']:.3f}, F1 {metrics['trusted_f1']:.3f}, coverage {metrics['coverage']:.3f}"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--eval", required=True, help="a checkpoint's eval_results.json")
    parser.add_argument("--readme", default=str(REPO / "README.md"))
    args = parser.parse_args()
    readme = Path(args.readme)
    text = readme.read_text(encoding="utf-8")
    if START not in text or END not in text:
        parser.error(f"{readme} has no {START} ... {END} block to replace.")
    block = results_block(json.loads(Path(args.eval).read_text(encoding="utf-8")))
    pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), flags=re.S)
    readme.write_text(pattern.sub(lambda _: f"{START}\n{block}\n{END}", text), encoding="utf-8")
    print(f"updated {readme} from {args.eval}")


if __name__ == "__main__":
    main()
