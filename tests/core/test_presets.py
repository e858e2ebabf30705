"""Presets: every shipped preset loads; bad files fail with PresetError naming the problem."""

import pytest

from core.errors import PresetError
from core.presets import GROUPS, list_presets, load_preset, parse_preset

REQUIRED = ["adding-rnn", "adding-lstm", "adding-gru", "copy-lstm", "charlm-lstm", "sine-gru", "padding-gru"]


def test_required_presets_exist_and_load():
    names = {p.name for p in list_presets()}
    assert set(REQUIRED) <= names
    for p in list_presets():
        assert p.group in GROUPS and len(p.description) > 40


def test_adding_presets_differ_only_in_cell():
    exps = {n: load_preset(f"adding-{n}").experiment for n in ("rnn", "lstm", "gru")}
    assert {e.cell for e in exps.values()} == {"rnn", "lstm", "gru"}
    assert len({e.replace(cell="lstm") for e in exps.values()}) == 1


def test_unknown_preset_lists_known_ones():
    with pytest.raises(PresetError, match="unknown preset 'nope'; known presets: .*adding-lstm"):
        load_preset("nope")


@pytest.mark.parametrize("text,match", [
    ("schema = 2\n", "schema must be 1; got 2"),
    ("not toml [", "not a valid TOML preset"),
    ('schema = 1\nname = "x"\ntitle = "t"\ngroup = "g"\ndescription = "d"\n', "group must be one of"),
    ('schema = 1\nname = "x"\ntitle = "t"\ngroup = "gates"\ndescription = "d"\n[experiment]\nhidden_size = 0\n',
     "hidden_size must be an integer from 1 to 4096; got 0"),
    ('schema = 1\ntitle = "t"\n', "'name' must be a non-empty string"),
])
def test_bad_preset_text_raises_preset_error(text, match):
    with pytest.raises(PresetError, match=match):
        parse_preset(text, "bad.toml")
