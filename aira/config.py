"""Dataclass configs from YAML plus `key=value` overrides (OmegaConf), and their run-directory copy.

One config tree per command: the dataclass gives the schema and defaults, a YAML file overrides
some of them, the command line overrides the rest (`search.n_agents=4 proxy.tokens=1e5`). Unknown
keys and wrongly typed values are errors that name the key, before any work starts; so is a file that
is not YAML (the line and column) or not text. This module and aira/errors.py are the two leaves of
aira/ that stages import: it depends on omegaconf and yaml only, and every stage loads its config
through it, so there is one way to read a config.
"""

from __future__ import annotations

import os
from dataclasses import is_dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from aira.errors import UserError, yaml_problem

T = TypeVar("T")


class ConfigError(UserError):
    """A config file or override that does not fit the schema; the message names the key."""


def load_config(schema: type[T], path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> T:
    """schema defaults <- YAML file at `path` <- `key=value` overrides, as a `schema` instance."""
    if not is_dataclass(schema):
        raise TypeError(f"{schema!r} is not a dataclass")
    try:
        cfg = OmegaConf.structured(schema)
        if path is not None:
            path = Path(path)
            cfg = OmegaConf.merge(cfg, read_yaml(path))
        bad = [o for o in overrides if "=" not in o]
        if bad:
            raise ConfigError(f"overrides must look like key=value, got {', '.join(map(repr, bad))}")
        if overrides:
            cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(overrides)))
        return OmegaConf.to_object(cfg)
    except OmegaConfBaseException as e:
        raise ConfigError(_explain(e, path)) from None


def with_overrides(cfg: T, overrides: list[str] | tuple[str, ...]) -> T:
    """A copy of the config dataclass `cfg` with `key=value` overrides applied, checked as load_config checks."""
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise ConfigError(f"overrides must look like key=value, got {', '.join(map(repr, bad))}")
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(cfg), OmegaConf.from_dotlist(list(overrides))))
    except OmegaConfBaseException as e:
        raise ConfigError(_explain(e, None)) from None


def read_yaml(path: str | Path) -> Any:
    """A YAML file's content; ConfigError naming the file (and the line) if it is missing, binary or not YAML."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not a text file (not UTF-8)") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a directory; pass a YAML file") from None
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    if not text.strip():
        return {}
    try:
        data = OmegaConf.create(text)  # OmegaConf's YAML loader (it reads 1e-3 as a float, PyYAML does not)
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML{yaml_problem(e)}") from None
    except OmegaConfBaseException as e:  # e.g. a bare string or number: not a mapping of keys
        raise ConfigError(f"config file {path} must hold a mapping of keys to values ({str(e).splitlines()[0]})") \
            from None
    if not OmegaConf.is_dict(data):
        raise ConfigError(f"config file {path} must hold a mapping of keys to values, got a list")
    return data


def to_dict(cfg: Any) -> dict[str, Any]:
    """A config dataclass as plain JSON/YAML-able data."""
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)


def to_yaml(cfg: Any) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def make_run_dir(path: str | Path) -> Path:
    """Create a run directory and prove it writable now, so a bad path fails before any compute."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise ConfigError(f"cannot use {path} as the run directory: {e.strerror or e} ({e.filename or path}); "
                          "choose another with run_dir=...") from None
    return path


def save_config(cfg: Any, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(to_yaml(cfg))
    tmp.replace(path)
    return path


def _explain(e: OmegaConfBaseException, path: str | Path | None) -> str:
    where = f" in {path}" if path is not None else ""
    key = getattr(e, "full_key", None)
    msg = str(e).splitlines()[0]
    if "Key '" in msg and "not in" in msg:  # an unknown key: say which keys exist
        return f"unknown config key {key!r}{where}: {msg}"
    return f"bad config value for {key!r}{where}: {msg}" if key else f"bad config{where}: {msg}"
