"""Importing models (and listing primitives) must not import transformers: it is slow and optional."""

from __future__ import annotations

import subprocess
import sys

import pytest

# Run in a fresh interpreter: this test process may already have transformers loaded by other tests.
PROBE = """
import contextlib, io, sys
import models, models.hf, models.cli
with contextlib.redirect_stdout(io.StringIO()):
    assert models.cli.main(["list"]) == 0
print(sorted(m for m in sys.modules if m.split(".")[0] == "transformers"))
"""


def test_import_models_and_list_do_not_import_transformers():
    out = subprocess.run([sys.executable, "-c", PROBE], check=False, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", f"transformers modules were imported: {out.stdout.strip()}"


def test_hf_converters_load_on_first_use():
    import models.hf
    from models.hf.llama import from_hf_llama
    assert models.hf.from_hf_llama is from_hf_llama
    assert {"from_hf_llama", "to_hf_llama", "from_hf_mamba", "from_hf_mamba2"} <= set(dir(models.hf))
    with pytest.raises(AttributeError, match="from_hf_llama"):
        models.hf.from_hf_gpt2  # noqa: B018
