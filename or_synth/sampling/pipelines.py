"""A job's pipeline and graphs: resolving ``pipeline=`` (a folder or a shipped name) and checking it, loading it
for sampling (sampler, device, progress bars), resolving ``graphs=``, and the graphs in the pipeline's own
vocabulary."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch
from diffusers.utils import logging as diffusers_logging
from torch_geometric.data import Data

from or_synth.data import DatasetFormatError, UserError, record_to_data, relationships_file
from or_synth.data.scene_graph import SceneGraphRecord
from or_synth.data.vocabulary import SPLIT_ALIASES, SPLIT_TAKES, Vocabulary
from or_synth.generator import ORScenePipeline, check_pipeline_folder, make_scheduler
from or_synth.generator.shipped import ShippedPipelineError, resolve_pipeline
from or_synth.render import render_embedded_on_first_use


class ShippedPipelineRefused(ShippedPipelineError):
    """A shipped pipeline that does not match its ``shipped.json``, refused by a sampling command (one line, exit
    2; :class:`ShippedPipelineError` is a user error itself)."""


class ModelFolderDamaged(UserError, ValueError):
    """A pipeline (or layout predictor) folder with a file that cannot be read; the message names the file."""


def pipeline_folder(spec: str | Path) -> Path:
    """The checked folder of ``pipeline=``: a pipeline folder, or a shipped pipeline's name (hashes verified).

    Raises:
        FileNotFoundError: no such folder or name, or the folder is incomplete.
        ShippedPipelineRefused: a shipped pipeline's file is missing or altered.
        ModelFolderDamaged: a config that is not JSON, a weights file cut off or not safetensors.
    """
    try:
        folder = resolve_pipeline(spec)
    except ShippedPipelineError as error:
        raise ShippedPipelineRefused(str(error)) from error
    check_pipeline_folder(folder)
    check_model_files(folder, "pipeline")
    return folder


def check_model_files(folder: Path, what: str) -> None:
    """Every JSON file of a model ``folder`` parses and every safetensors file is whole (its header read, which
    safetensors checks against the file's length: cheap, no weights loaded), so a damaged file is named before
    loading fails somewhere inside diffusers.

    Raises:
        ModelFolderDamaged: the first damaged file.
    """
    from safetensors import safe_open

    def damaged(path: Path, reason) -> ModelFolderDamaged:
        return ModelFolderDamaged(
            f"{what} {folder}: {path} cannot be read ({reason}); restore it from the run that trained it "
            f"(or `git checkout -- {path}` for a shipped one), or train it again"
        )

    for path in sorted(folder.rglob("*.json")):
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as error:
            raise damaged(path, error) from None
        if not isinstance(document, dict):  # every config diffusers and or_synth save is an object
            raise damaged(path, "not a JSON object")
    for path in sorted(folder.rglob("*.safetensors")):
        try:
            with safe_open(str(path), "pt"):
                pass
        except Exception as error:  # noqa: BLE001 - safetensors' own SafetensorError derives from Exception only
            raise damaged(path, error) from None


def load_pipeline(path: str | Path, *, progress: bool = True) -> ORScenePipeline:
    """``ORScenePipeline.from_pretrained`` (its loading bar shown only with ``progress``)."""
    shown = diffusers_logging.is_progress_bar_enabled()
    if not progress:
        diffusers_logging.disable_progress_bar()  # a global switch in diffusers: restored below
    try:
        return ORScenePipeline.from_pretrained(path)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as error:
        # The files are whole (check_model_files), so they do not fit together: a config of another version, a
        # weights file of another model. --debug shows where diffusers failed.
        raise ModelFolderDamaged(
            f"pipeline {path} cannot be loaded ({type(error).__name__}: {error}); point pipeline= at a folder "
            "saved by or_synth (<run>/pipeline), or train it again"
        ) from error
    finally:
        if shown:
            diffusers_logging.enable_progress_bar()


def prepare_pipeline(
    folder: Path, sampler: str, device: torch.device | str, *, progress: bool = False
) -> ORScenePipeline:
    """The pipeline of ``folder`` with ``sampler`` (built from its training scheduler's config) on ``device``."""
    pipe = load_pipeline(folder, progress=progress)
    pipe.set_progress_bar_config(disable=True)  # jobs show one bar over all images instead of one per call
    pipe.scheduler = make_scheduler(sampler, pipe.scheduler.config)
    return pipe.to(torch.device(str(device)))


def resolve_graphs(graphs: str, dataset_root: str | Path) -> tuple[Path, Path]:
    """The relationships file named by ``graphs`` (a path, or a split of ``dataset_root``) and its dataset
    root (where its vocabulary files and, for rendered datasets, its instance masks are)."""
    path = Path(str(graphs))
    if path.is_file():
        root = path.parent.parent if path.parent.name == "data" else path.parent
        return path, root
    if str(graphs) in SPLIT_TAKES or str(graphs) in SPLIT_ALIASES:
        found = relationships_file(dataset_root, str(graphs))
        if found is None and render_embedded_on_first_use(dataset_root):
            found = relationships_file(dataset_root, str(graphs))
        if found is None:
            raise DatasetFormatError(
                f"no relationships file for split {graphs!r} here (looked in it and its data/ folder); "
                "render the synthetic dataset with `python -m or_synth.render`, set dataset_root=, "
                "or pass graphs=FILE",
                file=dataset_root,
            )
        return found, Path(dataset_root)
    raise DatasetFormatError(
        "graphs= is neither a file nor a split name (train, validation, val, test)", file=path
    )


def encoder_vocabulary(pipe: ORScenePipeline) -> Vocabulary:
    """The label names the pipeline's graph encoder was built with: graphs are converted with these ids."""
    config = pipe.graph_encoder.encoder.config
    return Vocabulary(
        object_classes=tuple(config.object_classes),
        predicates=tuple(config.predicates),
        roles=tuple(config.roles),
    )


def graphs_for_pipeline(
    pipe: ORScenePipeline, records: Sequence[SceneGraphRecord], source: Path | str
) -> list[Data]:
    """Each record as PyG ``Data`` with the encoder's ids; a label the encoder does not know is an error
    naming the file, take and scan (checked here, before any sampling)."""
    vocabulary = encoder_vocabulary(pipe)
    encoder = pipe.graph_encoder.encoder
    graphs = []
    for record in records:
        where = {"file": source, "take": record.take, "scan": record.scan}
        try:
            data = record_to_data(record, vocabulary)
            encoder.node_labels_of(data)
        except KeyError as error:  # a class / role / predicate name missing from the encoder's vocabulary
            raise DatasetFormatError(
                f"{error.args[0]} (not known to the pipeline's graph encoder)", **where
            ) from None
        except ValueError as error:  # a (class, role) pair that is no node label of the encoder
            raise DatasetFormatError(f"{error} (pipeline's graph encoder)", **where) from None
        graphs.append(data)
    return graphs
