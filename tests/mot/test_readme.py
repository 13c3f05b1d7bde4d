"""The README's backbone example runs as written, is at most 15 lines, and prints the right cache ages."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "README.md"


def _snippet() -> str:
    text = DOC.read_text()
    section = text.split("## Drive with the backbone", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "README.md: no python block under 'Drive with the backbone'"
    return match.group(1)


def test_readme_example_runs_and_is_short():
    code = _snippet()
    assert len(code.strip().splitlines()) <= 15
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(DOC), "exec"), {"__name__": "readme"})
    lines = out.getvalue().strip().splitlines()
    assert len(lines) == 4
    assert [ln.rsplit("cache age: ", 1)[1] for ln in lines] == ["0", "1", "0", "1"]
