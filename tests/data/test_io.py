"""The shared output-folder check: a file, or a place nothing can be written, is refused before any work."""

from __future__ import annotations

import pytest

from or_synth.data.io import check_output_folder


def test_output_folder_may_be_new_or_existing_and_nothing_is_created(tmp_path):
    assert check_output_folder(tmp_path / "a" / "b") == tmp_path / "a" / "b"
    assert check_output_folder(tmp_path) == tmp_path
    assert sorted(tmp_path.iterdir()) == []  # the probe left nothing behind


def test_a_file_or_a_read_only_place_is_refused_naming_the_option(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(NotADirectoryError, match="out=.*f is a file"):
        check_output_folder(tmp_path / "f")
    with pytest.raises(NotADirectoryError, match="runs_root=.*lies under"):
        check_output_folder(tmp_path / "f" / "sub", "runs_root")
    with pytest.raises(PermissionError, match="cannot write"):
        check_output_folder("/proc/or_synth_cannot_write_here")


def test_json_is_always_valid_undefined_numbers_are_null(tmp_path):
    import json

    from or_synth.data.io import atomic_write_json

    atomic_write_json(tmp_path / "m.json", {"f1": float("nan"), "rows": [1.5, float("inf")], "n": 3})
    text = (tmp_path / "m.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"f1": None, "rows": [1.5, None], "n": 3}
