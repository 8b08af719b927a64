"""ArchSpec: an architecture as plain data.

A spec is a list of layers (`pattern`), each one primitive with a pre-norm and a residual, between a
token embedding and a final norm + LM head. Pattern entries name either a registered primitive (used
with its default knobs) or an alias declared under `primitives`, which sets the type and knobs:

    d_model: 128
    vocab_size: 256
    primitives:
      attn: {type: attn, n_heads: 4}
      mlp_wide: {type: mlp, expansion: 4.0}
    pattern: [attn, mlp_wide, mamba2, mlp_wide]

Specs round-trip through YAML/JSON, hash stably (defaults filled in, `name` ignored) and validate with
messages that name the field and the allowed values.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from aira.errors import yaml_problem
from models.errors import SpecError
from models.norms import NORMS
from models.registry import Primitive, get_primitive, primitive_names


@dataclass
class ArchSpec:
    pattern: list[str]
    d_model: int = 128
    vocab_size: int = 256
    primitives: dict[str, dict[str, Any]] = field(default_factory=dict)
    norm: str = "rmsnorm"
    norm_eps: float = 1e-5
    tie_embeddings: bool = True
    max_seq_len: int = 2048  # context length used for FLOP and cache accounting
    init_std: float = 0.02
    name: str = ""

    # ---------------------------------------------------------------- layers

    def resolve(self, alias: str) -> tuple[type[Primitive], Any]:
        """(primitive class, config instance) for one pattern entry."""
        where = f"primitives.{alias}"
        entry = dict(self.primitives.get(alias, {}))
        if alias not in self.primitives:
            where = "pattern"
            if alias not in primitive_names():
                raise SpecError(
                    f"pattern: {alias!r} is neither a registered primitive ({', '.join(primitive_names())})"
                    f" nor an alias under `primitives` ({', '.join(sorted(self.primitives)) or 'none'})")
        type_name = entry.pop("type", alias)
        try:
            cls = get_primitive(type_name)
        except SpecError as e:
            raise SpecError(f"{where}.type: {e}") from None
        return cls, _make_config(cls, entry, where)

    def layers(self) -> list[tuple[str, type[Primitive], Any]]:
        """(alias, primitive class, config) for each layer, in order."""
        cache: dict[str, tuple[type[Primitive], Any]] = {}
        out = []
        for alias in self.pattern:
            if alias not in cache:
                cache[alias] = self.resolve(alias)
            out.append((alias, *cache[alias]))
        return out

    # ---------------------------------------------------------------- validation

    def validate(self) -> ArchSpec:
        """Raise SpecError listing every problem found; return self when valid."""
        problems: list[str] = []

        def need_positive_int(name: str) -> None:
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                problems.append(f"{name}: must be a positive integer, got {v!r}")

        for name in ("d_model", "vocab_size", "max_seq_len"):
            need_positive_int(name)
        if not isinstance(self.pattern, list) or not all(isinstance(p, str) for p in self.pattern):
            problems.append(f"pattern: must be a list of primitive names, got {self.pattern!r}")
        elif len(self.pattern) == 0:
            problems.append("pattern: needs at least one layer (got zero layers)")
        if self.norm not in NORMS:
            problems.append(f"norm: {self.norm!r} is not one of {', '.join(NORMS)}")
        if not isinstance(self.primitives, dict):
            problems.append("primitives: must be a mapping alias -> {type: ..., knobs}")
        shapes_ok = not problems
        if isinstance(self.pattern, list) and isinstance(self.primitives, dict):
            names = [p for p in self.pattern if isinstance(p, str)]
            for alias in dict.fromkeys(names + list(self.primitives)):
                try:
                    cls, cfg = self.resolve(alias)
                except SpecError as e:
                    problems.append(str(e))
                    continue
                if shapes_ok:
                    where = f"primitives.{alias}" if alias in self.primitives else f"pattern[{alias}]"
                    problems += [f"{where}.{f}: {msg}" for f, msg in cls.check(self.d_model, cfg)]
        if problems:
            label = f"spec {self.name!r}" if self.name else "spec"
            if len(problems) == 1:  # one mistake, one line; several are listed one per line
                raise SpecError(f"invalid {label}: {problems[0]}")
            raise SpecError(f"invalid {label}:\n  - " + "\n  - ".join(problems))
        return self

    # ---------------------------------------------------------------- serialisation

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ArchSpec:
        if not isinstance(d, dict):
            raise SpecError(f"a spec must be a mapping of fields, got {type(d).__name__}")
        allowed = [f.name for f in dataclasses.fields(cls)]
        unknown = [k for k in d if k not in allowed]
        if unknown:
            raise SpecError(f"unknown spec field(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(allowed)}")
        if "pattern" not in d:
            raise SpecError("pattern: missing; a spec needs a list of layers, e.g. pattern: [attn, mlp]")
        d = dict(d)
        d["pattern"] = list(d["pattern"]) if isinstance(d["pattern"], (list, tuple)) else d["pattern"]
        d["primitives"] = {k: dict(v) if isinstance(v, dict) else v for k, v in (d.get("primitives") or {}).items()}
        return cls(**d).validate()

    def to_yaml(self) -> str:
        return yaml.dump(self.to_dict(), Dumper=_FlowListDumper, sort_keys=False)

    @classmethod
    def from_yaml(cls, text: str, source: str = "spec") -> ArchSpec:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise SpecError(f"{source} is not valid YAML{yaml_problem(e)}") from None
        return cls.from_dict(data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str, source: str = "spec") -> ArchSpec:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise SpecError(f"{source} is not valid JSON at line {e.lineno}, column {e.colno}: {e.msg}") from None
        return cls.from_dict(data)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(self.to_json() if path.suffix == ".json" else self.to_yaml())
        return path

    @classmethod
    def load(cls, path: str | Path) -> ArchSpec:
        path = Path(path)
        if not path.is_file():
            raise SpecError(f"spec file {path} does not exist" if not path.exists() else f"{path} is not a spec file")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise SpecError(f"spec file {path} is not a text file (not UTF-8)") from None
        source = f"spec file {path}"
        return cls.from_json(text, source) if path.suffix == ".json" else cls.from_yaml(text, source)

    # ---------------------------------------------------------------- identity

    def canonical(self) -> dict[str, Any]:
        """The architecture with every default filled in; two specs that build the same model agree."""
        layers = []
        for alias, pcls, cfg in self.layers():
            layers.append({"type": pcls.name, **dataclasses.asdict(cfg)})
        return {
            "d_model": self.d_model, "vocab_size": self.vocab_size, "norm": self.norm,
            "norm_eps": float(self.norm_eps), "tie_embeddings": self.tie_embeddings,
            "init_std": float(self.init_std), "layers": layers,
        }

    def hash(self) -> str:
        """Stable 12-hex-digit content hash of the architecture (name and max_seq_len excluded)."""
        blob = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    def replace(self, **changes: Any) -> ArchSpec:
        return dataclasses.replace(self, **changes).validate()


class _FlowListDumper(yaml.SafeDumper):
    """Writes lists of scalars on one line, so a 32-layer pattern stays readable."""


def _represent_list(dumper: yaml.SafeDumper, data: list) -> yaml.Node:
    flow = all(not isinstance(x, (dict, list)) for x in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_FlowListDumper.add_representer(list, _represent_list)


def _make_config(cls: type[Primitive], knobs: dict[str, Any], where: str) -> Any:
    fields, hints = _config_schema(cls.Config)
    for k, v in knobs.items():
        if k not in fields:
            raise SpecError(f"{where}.{k}: unknown knob for primitive {cls.name!r}; allowed: {', '.join(fields)}")
        if not _type_ok(v, hints[k]):
            raise SpecError(f"{where}.{k}: expected {_type_name(hints[k])}, got {v!r}")
    return cls.Config(**knobs)


@functools.cache
def _config_schema(config: type) -> tuple[dict[str, dataclasses.Field], dict[str, Any]]:
    """A primitive Config's fields and resolved type hints, once per class: get_type_hints re-parses the
    annotations on every call, and a search validates thousands of specs (a third of a proposal's time)."""
    return {f.name: f for f in dataclasses.fields(config)}, typing.get_type_hints(config)


def _type_ok(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is Any:
        return True
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if origin is not None:
        return isinstance(value, origin)
    return isinstance(value, hint)


def _type_name(hint: Any) -> str:
    if typing.get_origin(hint) is typing.Literal:
        return "one of " + ", ".join(map(repr, typing.get_args(hint)))
    return getattr(hint, "__name__", str(hint))
