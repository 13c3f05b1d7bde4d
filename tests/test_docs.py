"""The README's Python examples run as written and print what they claim."""

import contextlib
import io
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


@pytest.mark.parametrize("index", range(len(_python_blocks(ROOT / "README.md"))))
def test_readme_python_blocks_run(index):
    code = _python_blocks(ROOT / "README.md")[index]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, f"README.md[{index}]", "exec"), {})
    # Lines like "# expected output" right after a print must match what was printed.
    expected = [line[2:] for line in code.splitlines() if line.startswith("# ") and "torch.Size" in line]
    printed = out.getvalue().strip().splitlines()
    for line in expected:
        assert line in printed, f"README claims {line!r}, printed {printed}"
