"""The README's snippets run as written, from the repository root and from another folder.

- Every ```python block runs in a fresh interpreter, once with the repository root as the working folder and once from
  an empty folder with the README's rule applied (repository paths such as `data/...` and `metrics/...` get the
  repository's folder in front). The checkpoint `out` is a tiny random one with every backbone and the real
  processor, saved with its remote code (the README's `out` comes from `scripts/train.py`, minutes of training).
- Every `python scripts/<name>.py ...` command (```bash blocks and inline) names a script that exists, and every
  `--flag` it uses is one that script accepts: `--help` of all of them, run from an empty folder.

Not run here: `pip install`, `python -m pytest` (this suite), and the commands themselves (training, benchmarks, the
demo server); tests/training/test_train.py runs train.py and evaluate.py end to end.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_models import tiny_ter_with_every_backbone

from modeling_ter.encoders.defaults import build_default_processor

REPO_ROOT = Path(__file__).resolve().parents[1]
README = (REPO_ROOT / "README.md").read_text()
# Repository paths the snippets name relative to the root (the README's rule: from elsewhere, put the repository's
# folder in front of them).
REPO_PATHS = ("data/", "metrics/", "scripts/")


def fenced_blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", README, flags=re.MULTILINE | re.DOTALL)


def script_commands() -> list[str]:
    """Every `python scripts/<name>.py ...` command of the README, one line each (comments and `&&` split off)."""
    commands = []
    for block in fenced_blocks("bash"):
        commands += [line.split("  #")[0].strip() for line in block.splitlines()]
    commands += [" ".join(span.split()) for span in re.findall(r"`(python scripts/[^`]*)`", README)]
    return [part.strip() for c in commands for part in c.split("&&") if part.strip().startswith("python scripts/")]


def from_elsewhere(snippet: str) -> str:
    """The snippet as run from another folder: repository paths in string literals get the repository in front."""
    return re.sub(rf"""(["'])({"|".join(REPO_PATHS)})""", lambda m: m[1] + str(REPO_ROOT / m[2]) + "/", snippet)


@pytest.fixture(scope="module")
def tiny_out(tmp_path_factory) -> Path:
    """A folder holding `out`: a tiny checkpoint with audio, text and video backbones and the real processor."""
    processor = build_default_processor()
    model = tiny_ter_with_every_backbone(text_vocab_size=processor.tokenizer.vocab_size)
    folder = tmp_path_factory.mktemp("elsewhere")
    model.save_pretrained(folder / "out")
    processor.save_pretrained(folder / "out")
    return folder


def run_python(snippet: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run([sys.executable, "-c", snippet], cwd=cwd, env=env, capture_output=True, text=True)


def test_the_readme_has_the_snippets_this_test_runs():
    assert len(fenced_blocks("python")) == 2
    assert any("scripts/evaluate.py" in command for command in script_commands())


@pytest.mark.parametrize("where", ["repo_root", "elsewhere"])
@pytest.mark.parametrize("index", range(len(fenced_blocks("python"))))
def test_python_snippet_runs(index, where, tiny_out):
    snippet = fenced_blocks("python")[index]
    if where == "repo_root":
        cwd, snippet = REPO_ROOT, snippet.replace('"out"', json.dumps(str(tiny_out / "out")))
    else:
        cwd, snippet = tiny_out, from_elsewhere(snippet)
    done = run_python(snippet, cwd)
    assert done.returncode == 0, f"README python block {index} from {cwd}:\n{snippet}\n{done.stderr[-3000:]}"


def test_every_script_command_uses_flags_the_script_accepts(tmp_path):
    commands = script_commands()
    scripts = sorted({command.split()[1] for command in commands})
    missing = [script for script in scripts if not (REPO_ROOT / script).is_file()]
    assert not missing, f"The README names scripts that do not exist: {missing}"
    # Every script's --help in one interpreter (imports shared), from an empty folder.
    helper = (
        "import contextlib, io, json, runpy, sys\n"
        "helps = {}\n"
        "for script in sys.argv[1:]:\n"
        "    sys.argv, text = [script, '--help'], io.StringIO()\n"
        "    with contextlib.redirect_stdout(text), contextlib.suppress(SystemExit):\n"
        "        runpy.run_path(script, run_name='__main__')\n"
        "    helps[script] = text.getvalue()\n"
        "print(json.dumps(helps))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", helper, *(str(REPO_ROOT / script) for script in scripts)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    helps = json.loads(done.stdout.strip().splitlines()[-1])
    unknown = []
    for command in commands:
        script = str(REPO_ROOT / command.split()[1])
        assert "usage:" in helps[script], f"{script} --help printed no usage: {helps[script][:500]}"
        unknown += [(command, flag) for flag in re.findall(r"\s(--[a-z_]+)", command) if flag not in helps[script]]
    assert not unknown, f"README commands with flags their script does not take: {unknown}"


def test_from_elsewhere_rewrites_repository_paths_only():
    snippet = 'f("data/x.flac", "out", "metrics/trusted_f1", "scripts/a.py")'
    assert from_elsewhere(snippet) == (
        f'f("{REPO_ROOT}/data/x.flac", "out", "{REPO_ROOT}/metrics/trusted_f1", "{REPO_ROOT}/scripts/a.py")'
    )
