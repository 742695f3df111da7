"""4D-OR data layer: vocabulary, scene-graph records -> PyG ``Data``, phases, images, the dataset class.

Imports nothing else from ``or_synth``: every other subpackage builds on this one.
"""

from or_synth.data.dataset import DOWNLOAD_INSTRUCTIONS, FourDORDataset, relationships_file
from or_synth.data.errors import DatasetFormatError, DatasetMissing, StoppedOnRequest, UserError
from or_synth.data.images import FrameIndex, color_image_path, read_image, take_dir
from or_synth.data.phases import PhaseTable
from or_synth.data.scene_graph import (
    SceneGraphRecord,
    SceneGraphSet,
    dense_relation_labels,
    load_scene_graphs,
    parse_scan,
    record_to_data,
    records_to_data,
)
from or_synth.data.vocabulary import (
    CAMERAS,
    MAIN_ACTIONS,
    OBJECT_CLASSES,
    PHASES,
    PREDICATES,
    ROLES,
    SPLIT_TAKES,
    Vocabulary,
    main_action,
)

__all__ = [
    "CAMERAS",
    "DOWNLOAD_INSTRUCTIONS",
    "MAIN_ACTIONS",
    "OBJECT_CLASSES",
    "PHASES",
    "PREDICATES",
    "ROLES",
    "SPLIT_TAKES",
    "DatasetFormatError",
    "DatasetMissing",
    "FourDORDataset",
    "FrameIndex",
    "PhaseTable",
    "SceneGraphRecord",
    "SceneGraphSet",
    "StoppedOnRequest",
    "UserError",
    "Vocabulary",
    "color_image_path",
    "dense_relation_labels",
    "load_scene_graphs",
    "main_action",
    "parse_scan",
    "read_image",
    "record_to_data",
    "records_to_data",
    "relationships_file",
    "take_dir",
]
