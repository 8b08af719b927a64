"""design.code: the normalised source and its hash, the import rules, the one-primitive structure."""

from __future__ import annotations

import pytest

from aira.errors import UserError
from design.code import (
    CandidateError,
    check_imports,
    check_source,
    check_structure,
    code_hash,
    normalize,
    primitive_classes,
)

GOOD = '''
"""A minimal mixer."""
from __future__ import annotations
import math
from dataclasses import dataclass
from typing import Literal
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from models.registry import Primitive, register


@dataclass
class MixConfig:
    kind: Literal["a", "b"] = "a"


@register
class Mix(Primitive):
    name = "test-code-mix"
    Config = MixConfig

    def forward(self, x, state=None, mask=None):
        return x.cumsum(1) / math.sqrt(x.shape[1])
'''


def test_formatting_and_comments_do_not_change_the_hash():
    reformatted = GOOD.replace("    name = \"test-code-mix\"", "    # the registry name\n    name   =   'test-code-mix'")
    reformatted = reformatted.replace("x.cumsum(1) / math.sqrt(x.shape[1])", "(x.cumsum(1)\n                / math.sqrt(x.shape[1]))")
    assert reformatted != GOOD
    assert normalize(reformatted) == normalize(GOOD)
    assert code_hash(reformatted) == code_hash(GOOD)
    assert len(code_hash(GOOD)) == 16 and int(code_hash(GOOD), 16) >= 0
    assert code_hash(GOOD.replace("cumsum(1)", "cumsum(2)")) != code_hash(GOOD)


def test_a_syntax_error_names_line_column_and_message():
    bad = "import torch\n\ndef f(x):\n    return x +\n"
    with pytest.raises(CandidateError, match=r"syntax error at line 4, column \d+: invalid syntax") as e:
        normalize(bad)
    assert isinstance(e.value, UserError) and e.value.line == 4
    with pytest.raises(CandidateError):
        code_hash(bad)
    with pytest.raises(CandidateError):
        check_imports(bad)


def test_allowed_imports_pass():
    assert check_imports(GOOD) == []
    assert check_source(GOOD) == []


@pytest.mark.parametrize("line, shown", [
    ("import os", "import os"),
    ("import subprocess as sp", "import subprocess"),
    ("from os import path", "from os import path"),
    ("import importlib", "import importlib"),
    ("from . import helpers", "from . import helpers"),
    ("import torchvision", "import torchvision"),  # a prefix of an allowed name is not that name
])
def test_a_forbidden_import_is_named_with_its_line(line, shown):
    source = GOOD.replace("import math\n", f"import math\n{line}\n")
    problems = check_imports(source)
    assert len(problems) == 1
    lineno = source.splitlines().index(line) + 1
    assert problems[0].startswith(f"line {lineno}: {shown} is not allowed")
    assert "a candidate may import torch, math, numpy, models (and dataclasses, typing, __future__)" in problems[0]


@pytest.mark.parametrize("call", ["__import__('os')", "exec('1')", "eval('1')", "compile('1', 'f', 'eval')",
                                  "open('/etc/passwd')"])
def test_escape_builtins_are_flagged(call):
    source = GOOD.replace("        return x.cumsum(1)", f"        {call}\n        return x.cumsum(1)")
    problems = check_imports(source)
    assert len(problems) == 1 and "is not allowed in a candidate" in problems[0]
    assert problems[0].startswith(f"line {source.splitlines().index('        ' + call) + 1}: {call.split('(')[0]}()")


def test_problems_come_in_line_order_once_each():
    source = "import sys\nimport os, json\nx = eval('1') + eval('2')\n"
    problems = check_imports(source)
    assert [p.split(":")[0] for p in problems] == ["line 1", "line 2", "line 2", "line 3"]


def test_primitive_classes_through_bases_and_attributes():
    source = '''
import torch
from models import registry
from models.registry import Primitive

class Base(registry.Primitive):
    """No name: a base for others."""

class Impl(Base):
    name = "x"

class Helper(torch.nn.Module):
    name = "not a primitive"
'''
    assert primitive_classes(source) == ["Impl"]
    assert check_structure(source) == []
    # A subclass of a built-in primitive (what it derives from shows only at load) with its own name.
    derived = """
from models.primitives.attention import Attention
import models.primitives.s4d as s4d
from models.norms import RMSNorm

class Better(Attention):
    name = "better-attn"

class Norm(RMSNorm):
    pass
"""
    assert primitive_classes(derived) == ["Better"]
    assert primitive_classes(derived.replace("(Attention)", "(s4d.S4D)")) == ["Better"]


def test_names_that_only_look_like_builtins_are_fine():
    source = GOOD.replace('    kind: Literal["a", "b"] = "a"', '    kind: Literal["a", "b"] = "a"\n    compile: bool = False')
    source = source.replace("        return x.cumsum", "        self.eval()\n        torch.compile\n        return x.cumsum")
    assert check_imports(source) == []


@pytest.mark.parametrize("source, expected", [
    ("import torch\nclass M(torch.nn.Module):\n    pass\n", "defines no subclass of models.registry.Primitive"),
    ("from models.registry import Primitive\nclass A(Primitive):\n    pass\n", "none sets `name`"),
    ("from models.registry import Primitive\nclass A(Primitive):\n    name = 'a'\nclass B(Primitive):\n    name = 'b'\n",
     "defines 2 primitives (A, B); a candidate defines exactly one"),
    ("from models.registry import Primitive\nclass A(Primitive):\n    name = 'a'\n    role = 'channel'\n",
     "line 2: A declares role = 'channel'; a candidate is a token mixer"),
])
def test_structure_problems_say_what_to_change(source, expected):
    problems = check_structure(source)
    assert len(problems) == 1 and expected in problems[0]
    assert check_source(source) == problems
