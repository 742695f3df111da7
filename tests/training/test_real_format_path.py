"""The real 4D-OR path end to end, on the stand-in in the real download's format (``real_format=true``): every
stage of ``dataset=4dor`` with tiny models, the layout-conditioned generator on the panoptic layouts, then
``sample`` with the dataset's own layouts, ``evaluate`` with the pair head on panoptic boxes, ``report`` and
``export``."""

from __future__ import annotations

import json

import pytest

from or_synth import evaluate, export, report, sample
from or_synth.train import train
from tests.helpers import compose_smoke_cfg, render_small, run_command

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def fresh_accelerate_state():
    """Accelerate keeps one precision per process: the tests around this one train in fp32, it in bf16."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


@pytest.mark.usefixtures("fresh_accelerate_state")
def test_dataset_4dor_trains_samples_evaluates_and_reports_on_the_stand_in(tmp_path):
    root = tmp_path / "4D-OR"
    render_small(root, "real_format=true")
    # The GPU recipe under debug=smoke: its bf16 and layout paths on CPU with tiny models.
    four_dor = ["dataset=4dor", "experiment=4dor", "dataset.cameras=[1,3]", "dataset.image_size=[32,32]"]
    result = train(compose_smoke_cfg(root, tmp_path, four_dor))
    assert set(result) == {"vae", "align", "ldm"}
    log = (tmp_path / "runs/ldm/smoke/config.yaml").read_text()
    assert "4dor" in log
    for stage in ("layout", "classifier"):
        train(compose_smoke_cfg(root, tmp_path, [*four_dor, f"stage={stage}"]))
    quality = json.loads((tmp_path / "runs/classifier/smoke/classifier/quality.json").read_text())
    # The pair head trained and scored on panoptic (and pose) boxes.
    assert quality["test"]["pairs"]["n_pairs"] > 0

    samples, scores = tmp_path / "samples", tmp_path / "eval"
    code, _, err = run_command(
        sample.main, f"pipeline={tmp_path / 'runs/ldm/smoke/pipeline'}", "graphs=test", f"dataset_root={root}",
        "layout=masks", "cameras=[1,3]", "limit=3", "steps=2", f"out={samples}", "progress=false",
    )  # fmt: skip
    assert code == 0, err[-2000:]
    code, _, err = run_command(
        evaluate.main, f"samples={samples}", f"classifier={tmp_path / 'runs/classifier/smoke/classifier'}",
        f"dataset_root={root}", "metrics=[graph_consistency]", f"out={scores}", "progress=false",
    )  # fmt: skip
    assert code == 0, err[-2000:]
    details = json.loads((scores / "metrics.json").read_text())["details"]
    assert "model" in details["pair_consistency"]  # pairs scored where the panoptic maps give boxes
    code, _, err = run_command(report.main, f"run={scores}", f"out={tmp_path / 'reports'}")
    assert code == 0 and list((tmp_path / "reports").glob("*/index.html")), err[-2000:]
    code, _, err = run_command(
        export.main, f"pipeline={tmp_path / 'runs/ldm/smoke/pipeline'}", f"dataset_root={root}", "layout=render",
        "limit=2", "cameras=[1,3]", "steps=2", f"out={tmp_path / 'export'}", "progress=false",
    )  # fmt: skip
    assert code == 0 and (tmp_path / "export" / "relationships_train.json").is_file(), err[-2000:]
