"""``python -m or_synth.evaluate``'s plain options are checked before any file is read: one ``error:`` line naming
the option, exit 2, nothing written."""

from __future__ import annotations

import pytest

from or_synth.evaluate import main
from tests.helpers import assert_refused, run_command


@pytest.mark.parametrize(
    "option",
    ["batch_size=0", "kid_subset_size=1", "kid_subsets=0", "fid_min_n=-1", "seed=-3", "threads=0",
     "reference_split=sideways", "memorisation.feature_threshold=1.5", "memorisation.ssim_threshold=nan",
     "memorisation.max_pairs=0", "reference_max_scans=0"],
)  # fmt: skip
def test_bad_values_are_refused_naming_the_option(option, tmp_path):
    result = run_command(main, f"out={tmp_path / 'eval'}", "samples=/nowhere", option)
    assert_refused(result, option.split("=")[0])
    assert not (tmp_path / "eval").exists()


def test_out_a_file_or_an_unwritable_place_is_refused_before_any_work(tmp_path):
    (tmp_path / "f").write_text("mine")
    assert_refused(run_command(main, f"out={tmp_path / 'f'}", "samples=/nowhere"), "out=", "is a file")
    assert (tmp_path / "f").read_text() == "mine"
    assert_refused(run_command(main, "out=/proc/or_synth_cannot_write", "samples=/nowhere"), "out=")


@pytest.mark.parametrize(
    "option",
    ["action_recognition.steps=0", "action_recognition.seeds=[]", "action_recognition.fractions=[0]"],
)
def test_downstream_settings_are_refused_before_training(option, tiny_render, classifier_dir, tmp_path):
    from tests.helpers import copy_as_samples

    samples = copy_as_samples(tiny_render, "train", tmp_path / "copies")
    result = run_command(
        main, f"samples={samples}", f"classifier={classifier_dir}", f"dataset_root={tiny_render}",
        f"out={tmp_path / 'eval'}", f"cache_dir={tmp_path / 'cache'}", "metrics=[action_recognition]",
        "progress=false", option,
    )  # fmt: skip
    assert_refused(result, option.split("=")[0])
    assert not (tmp_path / "eval").exists()


def test_a_dataset_root_of_any_split_is_a_dataset(tmp_path):
    """A render of one validation take (a sequence's real renders) is enough for graph consistency; a folder with
    no relationships file at all is refused, naming the file it lacks."""
    from or_synth.evaluation.context import ensure_dataset

    with pytest.raises(FileNotFoundError, match=r"relationships_\{split\}.json"):
        ensure_dataset(tmp_path)
    (tmp_path / "relationships_validation.json").write_text('{"scans": []}')
    ensure_dataset(tmp_path)
