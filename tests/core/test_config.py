"""Experiment validation: every bad value names the field, the value and what is allowed."""

import pytest

from core.config import FIELDS, ConfigError, Experiment


def test_defaults_are_valid_and_round_trip():
    exp = Experiment()
    assert Experiment.from_dict(exp.to_dict()) == exp


@pytest.mark.parametrize("field,value,allowed", [
    ("hidden_size", 0, "from 1 to 4096"),
    ("hidden_size", 1.5, "an integer"),
    ("lr", -1, "from 1e-06 to 10"),
    ("lr", "fast", "a number"),
    ("lr", float("nan"), "a number"),
    ("cell", "transformer", "one of rnn, lstm, gru"),
    ("seq_len", 0, "from 1 to 2000"),
    ("spectral_radius", 11, "from 0 to 10"),
    ("clip", True, "a number"),
    ("masking", "maybe", "one of on, off"),
])
def test_bad_values_raise_config_error_naming_field_value_and_range(field, value, allowed):
    with pytest.raises(ConfigError) as info:
        Experiment().replace(**{field: value})
    assert info.value.field == field
    message = str(info.value)
    assert field in message and allowed in message and repr(value) in message


def test_unknown_field_is_refused():
    with pytest.raises(ConfigError, match="unknown experiment field 'hiden_size'"):
        Experiment().replace(hiden_size=3)


def test_text_from_widgets_is_coerced():
    exp = Experiment().replace(hidden_size="64", lr="0.01", cell="GRU", masking=False)
    assert (exp.hidden_size, exp.lr, exp.cell, exp.masking) == (64, 0.01, "gru", "off")


def test_every_field_has_a_spec():
    assert set(FIELDS) == set(Experiment().to_dict())
