"""pytest setup: the tests import aiges_embed from this checkout (python/), no install needed."""
import os
import sys
import textwrap

import pytest

PYTHON_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO = os.path.dirname(PYTHON_DIR)
if PYTHON_DIR not in sys.path:
    sys.path.insert(0, PYTHON_DIR)


@pytest.fixture
def write_wrapper(tmp_path):
    """Writes a wrapper.py with the given source (dedented) into a fresh folder; returns its path."""
    count = [0]

    def write(source, name="wrapper.py"):
        count[0] += 1
        folder = tmp_path / f"w{count[0]}"
        folder.mkdir()
        path = folder / name
        path.write_text(textwrap.dedent(source))
        return str(path)

    return write
