"""The metrics of ``python -m or_synth.evaluate``, one module per family, and their registry :data:`METRICS`.

Each module holds ``score_<metric>(run)`` functions over the shared
:class:`~or_synth.evaluation.context.Evaluation` and one :class:`~or_synth.evaluation.registry.Metric` record
per metric (what it needs, which cards it writes). :data:`METRICS` lists them in the order they are scored; a
new metric is a record in a module here and one line below.
"""

from or_synth.evaluation.metrics.action_recognition import ACTION_RECOGNITION, score_action_recognition
from or_synth.evaluation.metrics.consistency import (
    GRAPH_CONSISTENCY,
    PAIR_CONSISTENCY,
    score_graph_consistency,
    score_pair_consistency,
)
from or_synth.evaluation.metrics.fidelity import (
    CLASSIFIER_FD,
    FID,
    KID,
    score_classifier_fd,
    score_fid,
    score_kid,
)
from or_synth.evaluation.metrics.memorisation import MEMORISATION, score_memorisation
from or_synth.evaluation.metrics.sensitivity import RELATION_SENSITIVITY, score_relation_sensitivity
from or_synth.evaluation.registry import Metric, registry

# Scored in this order; graph consistency's ceiling is computed before memorisation reuses it.
METRICS: dict[str, Metric] = registry(
    FID,
    KID,
    CLASSIFIER_FD,
    GRAPH_CONSISTENCY,
    PAIR_CONSISTENCY,
    MEMORISATION,
    RELATION_SENSITIVITY,
    ACTION_RECOGNITION,
)

__all__ = [
    "METRICS",
    "score_action_recognition",
    "score_classifier_fd",
    "score_fid",
    "score_graph_consistency",
    "score_kid",
    "score_memorisation",
    "score_pair_consistency",
    "score_relation_sensitivity",
]
