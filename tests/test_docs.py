"""The code blocks of the README and the docs run as printed (each file's blocks in one namespace)."""

import pathlib
import re

import pytest

from conftest import NOJIT

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = ["README.md", "docs/index.md", "docs/primer.md", "docs/preconditioning.md", "docs/neural.md",
        "docs/reproduction.md"]


@pytest.mark.skipif(NOJIT, reason="the examples run at full size (up to 100,000 points); the nojit "
                                  "env interprets every kernel in Python and is for small sizes")
@pytest.mark.parametrize("name", DOCS)
def test_python_blocks_run(name, tmp_path, monkeypatch):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)            # examples may write files (hs.save)
    text = (ROOT / name).read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert blocks, f"{name} has no python blocks"
    namespace = {}
    for block in blocks:
        exec(compile(block, f"{name}", "exec"), namespace)
