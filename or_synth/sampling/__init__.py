"""The sampling layer: everything between a trained pipeline and the images it writes.

- :mod:`~or_synth.sampling.options`: the one check of the options the sampling commands share;
- :mod:`~or_synth.sampling.pipelines`: ``pipeline=`` and ``graphs=`` resolved, the pipeline loaded for sampling;
- :mod:`~or_synth.sampling.layouts` (+ :mod:`~or_synth.sampling.predictor`): the ``layout=`` sources;
- :mod:`~or_synth.sampling.seeds`: per-image seeds, items, batches and the drawing call;
- :mod:`~or_synth.sampling.plan` (+ :mod:`~or_synth.sampling.resume`): the sample job (``or_synth.sample``);
- :mod:`~or_synth.sampling.export` (+ ``export_scans``, ``export_card``): the training-set export
  (``or_synth.export``);
- :mod:`~or_synth.sampling.edits` (+ ``edit_folder``): graph edits drawn before and after (``or_synth.edit``);
- :mod:`~or_synth.sampling.sequence`: one take's scene graphs as coherent per-camera sequences
  (``or_synth.sequence``);
- :mod:`~or_synth.sampling.files`: JSON without NaN, and the cheap check that a finished image is whole.

Imports :mod:`or_synth.generator`, :mod:`or_synth.render` and :mod:`or_synth.data`; the manifest it writes is
the data layer's (:mod:`or_synth.data.manifest`), which the evaluation suite reads without importing this package.
"""

from or_synth.sampling.edit_folder import EditRefused
from or_synth.sampling.edits import apply_drawable_edit, edit
from or_synth.sampling.export import export
from or_synth.sampling.export_scans import ExportRefused, copies_per_graph
from or_synth.sampling.layouts import (
    AUTO,
    LAYOUT_OPTIONS,
    GivenMasks,
    PredictedLayouts,
    RenderedLayouts,
    check_layout_option,
    resolve_layout,
)
from or_synth.sampling.options import SAMPLERS, SamplingOptions, check_options
from or_synth.sampling.pipelines import (
    ShippedPipelineRefused,
    encoder_vocabulary,
    graphs_for_pipeline,
    load_pipeline,
    pipeline_folder,
    prepare_pipeline,
    resolve_graphs,
)
from or_synth.sampling.plan import SamplePlan, prepare, run_plan, sample
from or_synth.sampling.predictor import check_predictor_folder, load_layout_predictor, predict_layouts
from or_synth.sampling.resume import SampleRefused
from or_synth.sampling.seeds import SampleItem, Sampling, draw_images, item_seed

__all__ = [
    "AUTO",
    "EditRefused",
    "LAYOUT_OPTIONS",
    "SAMPLERS",
    "ExportRefused",
    "GivenMasks",
    "PredictedLayouts",
    "RenderedLayouts",
    "SampleItem",
    "SamplePlan",
    "SampleRefused",
    "Sampling",
    "SamplingOptions",
    "ShippedPipelineRefused",
    "apply_drawable_edit",
    "check_layout_option",
    "check_options",
    "check_predictor_folder",
    "copies_per_graph",
    "draw_images",
    "edit",
    "encoder_vocabulary",
    "export",
    "graphs_for_pipeline",
    "item_seed",
    "load_layout_predictor",
    "load_pipeline",
    "pipeline_folder",
    "predict_layouts",
    "prepare",
    "prepare_pipeline",
    "resolve_graphs",
    "resolve_layout",
    "run_plan",
    "sample",
]
