"""Evaluation of generated operating-room images: fidelity (FID / KID, and a Fréchet distance in the relation
classifier's features), graph consistency through a relation classifier trained on real images, relation
sensitivity on graph edits, memorisation, downstream action recognition, and the metric cards that carry them.

``python -m or_synth.evaluate`` runs them on a ``manifest.jsonl``; this package never imports the generator.
"""

from or_synth.evaluation.cards import COMPARABLE_FIELDS, incomparable_fields, make_card
from or_synth.evaluation.consistency import consistency_report, relation_scores
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
from or_synth.evaluation.relation_classifier import RelationClassifier, classifier_hash

__all__ = [
    "COMPARABLE_FIELDS",
    "FeatureStats",
    "ImageSet",
    "ImageSetError",
    "ReferenceCache",
    "RelationClassifier",
    "classifier_hash",
    "consistency_report",
    "fidelity_scores",
    "frechet_distance",
    "incomparable_fields",
    "inception_extractor",
    "kernel_inception_distance",
    "load_generated",
    "load_real_views",
    "make_card",
    "memorisation_report",
    "nearest_training_images",
    "relation_scores",
]
