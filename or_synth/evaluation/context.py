"""The shared context of one evaluation: which metrics run, the inputs they need, and what they write.

:func:`prepare` builds an :class:`Evaluation` from the ``evaluate`` config and checks every input the chosen
metrics need (:class:`~or_synth.evaluation.registry.Need`) before any feature is extracted: a wrong request
fails before any work, and nothing is written. The metrics then read it (the generated set, the pinned relation
classifier and its one pass over the generated images, the reference split, the fields every card carries,
the ceiling's real counterparts, computed on first use) and put their cards and details into it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from safetensors import SafetensorError

from or_synth.data import SPLIT_TAKES
from or_synth.data.errors import UserError
from or_synth.data.io import check_output_folder
from or_synth.evaluation.cards import environment
from or_synth.evaluation.features import FeatureSpace, ceiling_predictions, inception_space
from or_synth.evaluation.fidelity import ReferenceCache
from or_synth.evaluation.image_sets import (
    PREPROCESSING,
    ImageSet,
    load_generated,
    load_real_counterparts,
    split_of_take,
)
from or_synth.evaluation.pairs import PairSet, annotated_pairs, generated_pairs
from or_synth.evaluation.registry import Metric, Need
from or_synth.evaluation.relation_classifier import RelationClassifier, classifier_hash
from or_synth.render import render_embedded_on_first_use


class EvaluationError(UserError, ValueError):
    """An evaluation that cannot give a meaningful number; the message says what to change."""


@dataclass
class Ceiling:
    """The real image of every generated (scan, camera) and the relation classifier's outputs on it.

    Attributes:
        views: the real counterparts, in the generated set's order.
        pairs: their (subject, object) pairs in the dataset's own boxes, when the generated images have pairs.
        predictions: :meth:`RelationClassifier.predict` on ``views`` (and ``pairs``).
    """

    views: ImageSet
    pairs: PairSet | None
    predictions: dict[str, torch.Tensor]


@dataclass
class Evaluation:
    """One evaluation: its config, its metrics, the inputs they share, and the cards and details they write.

    Attributes:
        metrics: the metrics that run, in registry order.
        optional: those among them scored only where their inputs exist (not asked for by name).
        environment: package versions, machine and commit (every card carries it).
        generated, split: the images ``samples=`` lists, and the real split they are compared with.
        real_views: the real image of every generated (scan, camera), for the ceiling.
        classifier, classifier_digest: the pinned relation classifier and its hash.
        pairs, no_pairs: the generated images' (subject, object) pairs, or why there are none.
        inception: the FID Inception feature space.
        on_training_graphs: the images show the generator's training graphs (allowed by the config).
        common: the fields every card of the generated set carries (samples, hashes, N, cameras, seeds, ...).
        generated_predictions: the classifier's outputs on the generated images (:meth:`classify_generated`).
        inputs: what each metric's own check prepared, by metric name.
        cards, details: what the metrics wrote: ``metrics.json``'s cards and details.
        arrays: per-scan arrays a metric keeps beside them (``out/per_scan_<metric>.npz``), by metric name.
        timings: seconds per step.
        shared: work one metric did that another reuses (one Inception pass for FID and KID).
    """

    cfg: DictConfig
    metrics: list[Metric]
    optional: frozenset[str]
    environment: dict = field(default_factory=dict)
    generated: ImageSet | None = None
    split: str | None = None
    real_views: ImageSet | None = None
    classifier: RelationClassifier | None = None
    classifier_digest: str | None = None
    pairs: PairSet | None = None
    no_pairs: str | None = None
    inception: FeatureSpace | None = None
    on_training_graphs: bool = False
    common: dict = field(default_factory=dict)
    generated_predictions: dict[str, torch.Tensor] | None = None
    inputs: dict[str, Any] = field(default_factory=dict)
    cards: dict[str, dict] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, dict] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    shared: dict[str, Any] = field(default_factory=dict)
    _ceiling: Ceiling | None = field(default=None, repr=False)

    @property
    def root(self) -> Path:
        """The real dataset (``dataset_root=``)."""
        return Path(self.cfg.dataset_root)

    @property
    def out(self) -> Path:
        return Path(self.cfg.out)

    @property
    def seed(self) -> int:
        return int(self.cfg.seed)

    @property
    def batch_size(self) -> int:
        return int(self.cfg.batch_size)

    @property
    def size(self) -> int:
        return self.generated.size[0]

    @property
    def cameras(self) -> list[int]:
        return sorted(set(self.generated.cameras.tolist()))

    @cached_property
    def reference_cache(self) -> ReferenceCache:
        return ReferenceCache(Path(self.cfg.cache_dir).expanduser())

    def uses(self, need: Need) -> bool:
        """Does any metric of this evaluation need ``need``?"""
        return any(need in metric.needs for metric in self.metrics)

    @contextmanager
    def timed(self, key: str) -> Iterator[None]:
        started = time.perf_counter()
        yield
        self.timings[key] = round(time.perf_counter() - started, 2)

    def classify_generated(self) -> None:
        """The classifier's outputs on the generated images (features, predicates, triples and, with pairs, pair
        probabilities): one pass that every metric reads."""
        with self.timed("generated_classifier_pass"):
            self.generated_predictions = self.classifier.predict(
                self.generated.images,
                self.generated.cameras,
                self.batch_size,
                pairs=self.pairs,
                records=self.generated.records,
            )
        seconds = max(self.timings["generated_classifier_pass"], 1e-9)
        self.timings["generated_images_per_second"] = round(len(self.generated) / seconds, 1)

    def ceiling(self) -> Ceiling:
        """The real counterparts and the classifier's outputs on them (computed, or served by the cache, once)."""
        if self._ceiling is None:
            views, pairs = self.real_views, None
            if self.pairs is not None:  # the real renders in their own boxes: the pair-level ceiling
                pairs = annotated_pairs(self.root, views, f"{self.root} annotations")
            predictions = ceiling_predictions(
                self.reference_cache, self.root, self.classifier, self.classifier_digest, views, pairs,
                self.split, self.timings, self.batch_size,
            )  # fmt: skip
            self._ceiling = Ceiling(views, pairs, predictions)
        return self._ceiling


def select_metrics(
    registry: Mapping[str, Metric], names: Sequence[str]
) -> tuple[list[Metric], frozenset[str]]:
    """The metrics ``names`` asks for, the ones they require, and the ones scored beside them (optional).

    Raises:
        EvaluationError: an unknown name, or none.
    """
    unknown = [m for m in names if m not in registry]
    if unknown:
        raise EvaluationError(f"unknown metric {unknown[0]!r}; available: {', '.join(registry)}")
    if not names:
        raise EvaluationError("metrics=[] asks for nothing; choose from " + ", ".join(registry))
    wanted = set(names)
    for name in names:
        wanted.update(registry[name].requires)
    optional = {m.name for m in registry.values() if m.scored_with in wanted and m.name not in wanted}
    return [m for m in registry.values() if m.name in wanted | optional], frozenset(optional)


def prepare(cfg: DictConfig, registry: Mapping[str, Metric]) -> Evaluation:
    """The evaluation ``cfg`` asks for, every input checked before any feature is extracted.

    Raises:
        EvaluationError, ImageSetError, FileNotFoundError, ValueError: what is wrong with the request, naming
            the option or file.
    """
    check_options(cfg)
    asked = [cfg.metrics] if isinstance(cfg.metrics, str) else list(cfg.metrics)  # metrics=fid is one metric
    metrics, optional = select_metrics(registry, list(dict.fromkeys(asked)))
    run = Evaluation(cfg, metrics, optional)
    if run.uses(Need.GENERATED):
        if cfg.samples is None:
            raise EvaluationError(
                "samples=MANIFEST is required: the manifest.jsonl of or_synth.sample / generate"
            )
        against = str(cfg.get("score_against", "image"))
        run.generated = load_generated(cfg.samples, progress=bool(cfg.progress), against=against)
        ensure_dataset(run.root)  # after the manifest: a wrong samples= is refused before a first-use render
    if run.uses(Need.CLASSIFIER):
        run.classifier, run.classifier_digest = load_classifier(run)
    if run.uses(Need.PAIRS):
        run.pairs, run.no_pairs = generated_pairs(run.root, run.generated, run.classifier)
    if run.uses(Need.INCEPTION):
        run.inception = inception_space(cfg.inception_weights, bool(cfg.allow_download), run.batch_size)
    if run.uses(Need.HELD_OUT_GRAPHS):
        run.on_training_graphs = check_not_training_graphs(cfg, run.generated)
    if run.uses(Need.GENERATED):
        run.split = reference_split(cfg, run.generated)
    if run.uses(Need.REAL_COUNTERPARTS):  # read here: a dataset that does not show these graphs fails first
        run.real_views = load_real_counterparts(run.root, run.generated)
    if run.uses(Need.EDITS) and not cfg.edits:
        raise EvaluationError(
            f"{' and '.join(needing(run, Need.EDITS))} needs edits=DIR: the out folder of python -m or_synth.edit"
        )
    for metric in metrics:
        if metric.check is not None:
            run.inputs[metric.name] = metric.check(run)
    run.environment = environment()
    if run.generated is not None:
        run.common = common_fields(run)
    return run


REFERENCE_SPLITS = ("auto", "train", "validation", "val", "test")


def _whole(cfg: DictConfig, key: str, minimum: int, *, optional: bool = False) -> None:
    value = OmegaConf.select(cfg, key)
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        what = f"a whole number >= {minimum}" + (" or null" if optional else "")
        raise EvaluationError(f"{key} must be {what}, got {value!r}")


def _fraction(cfg: DictConfig, key: str) -> None:
    value = OmegaConf.select(cfg, key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= float(value) <= 1.0:
        raise EvaluationError(f"{key} must be a number in 0..1, got {value!r}")


def check_options(cfg: DictConfig) -> None:
    """The plain options, before any file is read: counts positive, thresholds in range, a known reference split,
    an ``out=`` folder that can be written (the metrics would otherwise be computed and then lost)."""
    for key in ("batch_size", "kid_subsets", "memorisation.max_pairs"):
        _whole(cfg, key, 1)
    _whole(cfg, "kid_subset_size", 2)  # KID's unbiased MMD needs two images per subset
    _whole(cfg, "floor_derangements", 1)
    _whole(cfg, "bootstrap_resamples", 100)
    for key in ("fid_min_n", "seed"):
        _whole(cfg, key, 0)
    for key in ("threads", "reference_max_scans", "memorisation.training_max_scans"):
        _whole(cfg, key, 1, optional=True)
    for key in ("memorisation.feature_threshold", "memorisation.ssim_threshold"):
        _fraction(cfg, key)
    if str(cfg.reference_split) not in REFERENCE_SPLITS:
        raise EvaluationError(
            f"reference_split={cfg.reference_split}: use one of {', '.join(REFERENCE_SPLITS)}"
        )
    check_output_folder(cfg.out, "out")


def needing(run: Evaluation, need: Need) -> list[str]:
    """The metrics of ``run`` that need ``need`` (those asked for, or required by them), sorted."""
    return sorted(m.name for m in run.metrics if need in m.needs and m.name not in run.optional)


def ensure_dataset(root: Path) -> None:
    """The embedded default is rendered on first use (as the demo and training do); other roots must hold a
    dataset of some split (a render of one validation take is enough for graph consistency; a metric that needs
    another split names the file it misses when it reads it)."""
    if render_embedded_on_first_use(root) or any(root.glob("relationships_*.json")):
        return
    raise FileNotFoundError(
        f"dataset_root={root} holds no dataset in 4D-OR's layout (no relationships_{{split}}.json)"
    )


def load_classifier(run: Evaluation) -> tuple[RelationClassifier, str]:
    """The relation classifier ``classifier=`` names, pinned by ``classifier_hash=`` when given, at the size of
    the images it scores."""
    cfg = run.cfg
    if cfg.classifier is None:
        raise EvaluationError(
            f"{', '.join(needing(run, Need.CLASSIFIER))} need a relation classifier: classifier=DIR, trained on "
            "real images by `python -m or_synth.train stage=classifier`"
        )
    try:
        classifier = RelationClassifier.from_pretrained(cfg.classifier, cfg.classifier_hash)
    except (
        SafetensorError,
        RuntimeError,
        KeyError,
        json.JSONDecodeError,
    ) as error:  # truncated or foreign files
        raise EvaluationError(
            f"classifier={cfg.classifier} cannot be loaded ({type(error).__name__}: {error}); pass the classifier/ "
            "folder that `python -m or_synth.train stage=classifier` wrote, or train it again"
        ) from error
    if run.generated is not None and classifier.image_size != run.size:
        raise EvaluationError(
            f"the classifier was trained at {classifier.image_size} px but the images are {run.size} px; score "
            "generated images at the resolution the classifier was trained on (train one at this size)"
        )
    return classifier, classifier_hash(cfg.classifier)


def check_not_training_graphs(cfg: DictConfig, generated: ImageSet) -> bool:
    """Graph consistency on the generator's training graphs flatters it: refused unless the user says so."""
    on_train = sorted(generated.takes & set(SPLIT_TAKES["train"]))
    if on_train and not cfg.allow_training_graphs:
        raise EvaluationError(
            f"{generated.source}: the images were generated from TRAINING-split graphs (takes {on_train}), which "
            "the generator was trained on; graph consistency there measures recall of training data. Sample "
            "validation/test graphs, or pass allow_training_graphs=true to score them anyway (the cards say so)"
        )
    return bool(on_train)


def reference_split(cfg: DictConfig, generated: ImageSet) -> str:
    """The real split the generated images are compared with: ``reference_split=``, or the split of their graphs."""
    if cfg.reference_split != "auto":
        return str(cfg.reference_split)
    splits = {split_of_take(t) for t in generated.takes}
    if len(splits) != 1 or None in splits:
        raise EvaluationError(
            f"the generated graphs come from takes {sorted(generated.takes)} (splits {sorted(map(str, splits))}); "
            "set reference_split=validation|test|train to say which real split they are compared with"
        )
    return splits.pop()


def common_fields(run: Evaluation) -> dict:
    """What every card of the generated set carries: the samples and their settings, the dataset, N, cameras,
    size, preprocessing, the seed, the environment and (when one scores) the classifier's hash."""
    generated = run.generated
    common = {
        "samples": str(generated.source),
        "samples_sha256": generated.settings.get("manifest_sha256"),
        "pipeline_hash": generated.settings.get("pipeline_hash"),
        "sampling": {
            k: generated.settings.get(k)
            for k in ("sampler", "steps", "guidance_scale", "layout", "control", "score_against")
        },
        "sample_seed": generated.settings.get("base_seed"),
        "n_generated": len(generated),
        "dataset": str(run.root),
        "cameras": run.cameras,
        "size": run.size,
        "preprocessing": PREPROCESSING,
        "evaluation_seed": run.seed,
        "environment": run.environment,
    }
    if run.classifier is not None:
        common["classifier_hash"] = run.classifier_digest
    return common
