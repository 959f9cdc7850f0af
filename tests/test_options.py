"""Each backend's typed options equal its schema definition: same names, same defaults."""

from dataclasses import MISSING, fields
from pathlib import Path

import pytest
import yaml

from stargate.backends.options import OPTIONS, HFOptions, parse_options
from stargate.errors import StargateError

SCHEMA = yaml.safe_load((Path(__file__).parents[1] / "config" / "schema.yaml").read_text())


def _default(f):
    if f.default is not MISSING:
        return f.default
    return f.default_factory()  # type: ignore[misc]


@pytest.mark.parametrize("backend", sorted(OPTIONS))
def test_options_match_schema(backend):
    props = SCHEMA["$defs"][f"{backend}_options"]["properties"]
    dc = {f.name: _default(f) for f in fields(OPTIONS[backend])}
    assert set(dc) == set(props), f"{backend}: dataclass and schema disagree on option names"
    for name, spec in props.items():
        assert "default" in spec, f"schema {backend}_options.{name} has no default"
        assert dc[name] == spec["default"], (
            f"{backend}.{name}: dataclass default {dc[name]!r} != schema {spec['default']!r}"
        )


def test_unknown_option_is_an_error():
    with pytest.raises(StargateError, match="unknown option.*bogus.*hf backend"):
        parse_options(HFOptions, {"batch_size": 2, "bogus": 1}, "hf")
    assert parse_options(HFOptions, {"batch_size": 2}, "hf").batch_size == 2
