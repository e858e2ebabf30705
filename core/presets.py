"""Presets: TOML files in resources/presets that tell one story each.

Format (schema 1)::

    schema = 1
    name = "adding-lstm"
    title = "Adding problem: LSTM"
    group = "gates"            # gradients | gates | sequences | decoding | attention
    description = "What to look at and why."
    [experiment]               # fields of core.config.Experiment; the rest default
    task = "adding"
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from core.config import ConfigError, Experiment
from core.errors import PresetError

PRESET_DIR = Path(__file__).resolve().parent.parent / "resources" / "presets"
SCHEMA = 1
GROUPS = ("gradients", "gates", "sequences", "decoding", "attention")  # the teaching order
DEFAULT_PRESET = "adding-lstm"  # what the app opens with


@dataclass(frozen=True)
class Preset:
    name: str
    title: str
    group: str
    description: str
    experiment: Experiment


def parse_preset(data: bytes | str, source: str = "<preset>") -> Preset:
    """Parse and validate preset text; any problem raises PresetError naming ``source``."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        table = tomllib.loads(text)
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError) as err:
        raise PresetError(f"{source}: not a valid TOML preset ({err})") from None
    schema = table.get("schema")
    if type(schema) is not int or schema != SCHEMA:
        raise PresetError(f"{source}: schema must be {SCHEMA}; got {schema!r}")
    fields = {}
    for key in ("name", "title", "group", "description"):
        value = table.get(key)
        if not isinstance(value, str) or not value.strip():
            raise PresetError(f"{source}: '{key}' must be a non-empty string; got {value!r}")
        fields[key] = value.strip()
    if fields["group"] not in GROUPS:
        raise PresetError(f"{source}: group must be one of {', '.join(GROUPS)}; got {fields['group']!r}")
    try:
        experiment = Experiment.from_dict(table.get("experiment", {}))
    except ConfigError as err:
        raise PresetError(f"{source}: {err}") from None
    return Preset(experiment=experiment, **fields)


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.toml"))


def load_preset(name: str) -> Preset:
    """The preset called ``name`` (PresetError lists the known names when unknown)."""
    path = PRESET_DIR / f"{name}.toml"
    if not isinstance(name, str) or "/" in name or not path.is_file():
        raise PresetError(f"unknown preset {name!r}; known presets: {', '.join(preset_names())}")
    preset = parse_preset(path.read_bytes(), str(path.name))
    if preset.name != name:
        raise PresetError(f"{path.name}: name {preset.name!r} does not match the file name")
    return preset


def list_presets() -> list[Preset]:
    """Every preset, grouped in GROUPS order, then by name."""
    presets = [load_preset(n) for n in preset_names()]
    return sorted(presets, key=lambda p: (GROUPS.index(p.group), p.name))


def grouped(presets: list[Preset]) -> list[tuple[str, list[Preset]]]:
    """(group, its presets) in GROUPS order."""
    groups: dict[str, list[Preset]] = {}
    for preset in sorted(presets, key=lambda p: (GROUPS.index(p.group), p.name)):
        groups.setdefault(preset.group, []).append(preset)
    return list(groups.items())


def translation_presets() -> list[str]:
    """The presets whose task is a translation (the ones the Decoding panel and ``decode`` use)."""
    return [p.name for p in list_presets() if p.experiment.is_seq2seq]
