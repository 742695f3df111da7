"""Evaluation of generated operating-room images: fidelity (FID / KID, and a Fréchet distance in the relation
classifier's features), graph consistency through a relation classifier trained on real images, relation
sensitivity on graph edits, memorisation, downstream action recognition, and the metric cards that carry them.

:func:`evaluate` (``python -m or_synth.evaluate``) runs the metrics of :data:`METRICS` on a ``manifest.jsonl``;
this package never imports the generator, the sampling layer or the training stages.

- ``suite``: :func:`evaluate`; ``context``: the shared :class:`Evaluation` and its checks (:func:`prepare`);
- ``registry``: what a :class:`Metric` is and the inputs it can :class:`Need`; ``metrics/``: one module per
  metric family (``score_<metric>`` functions and their records);
- ``features``: feature spaces and the reference caches; ``fidelity``: Fréchet distance, KID, the cache files;
- ``consistency``, ``pairs``, ``relation_classifier``: the scorer and its image- and pair-level reports;
- ``memorisation``, ``sensitivity``, ``action_recognition``: those metrics' computations;
- ``image_sets``: the real and generated image sets; ``cards``: metric cards and ``metrics.json``.
"""

from or_synth.evaluation.cards import COMPARABLE_FIELDS, incomparable_fields, make_card
from or_synth.evaluation.consistency import consistency_report, relation_scores
from or_synth.evaluation.context import Evaluation, EvaluationError, prepare
from or_synth.evaluation.features import FeatureSpace, classifier_space, inception_space
from or_synth.evaluation.fidelity import (
    FeatureStats,
    ReferenceCache,
    fidelity_scores,
    frechet_distance,
    inception_extractor,
    kernel_inception_distance,
)
from or_synth.evaluation.image_sets import ImageSet, ImageSetError, load_generated, load_real_views
from or_synth.evaluation.memorisation import memorisation_report, nearest_training_images
from or_synth.evaluation.metrics import METRICS
from or_synth.evaluation.pairs import PairSet, generated_pairs
from or_synth.evaluation.registry import Metric, Need
from or_synth.evaluation.relation_classifier import RelationClassifier, classifier_hash
from or_synth.evaluation.suite import evaluate

__all__ = [
    "COMPARABLE_FIELDS",
    "METRICS",
    "Evaluation",
    "EvaluationError",
    "FeatureSpace",
    "FeatureStats",
    "ImageSet",
    "ImageSetError",
    "Metric",
    "Need",
    "PairSet",
    "ReferenceCache",
    "RelationClassifier",
    "classifier_hash",
    "classifier_space",
    "consistency_report",
    "evaluate",
    "fidelity_scores",
    "frechet_distance",
    "generated_pairs",
    "incomparable_fields",
    "inception_extractor",
    "inception_space",
    "kernel_inception_distance",
    "load_generated",
    "load_real_views",
    "make_card",
    "memorisation_report",
    "nearest_training_images",
    "prepare",
    "relation_scores",
]
