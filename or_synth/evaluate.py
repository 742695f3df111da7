"""Evaluation entry point: ``python -m or_synth.evaluate samples=MANIFEST metrics=[...] classifier=DIR out=DIR``.

Scores the images listed in a ``manifest.jsonl`` of ``or_synth.sample`` / ``or_synth.generate`` against the real
images of ``dataset_root`` and writes ``out/metrics.json`` plus one metric card per number (``out/cards/``). It
never imports the generator, so it scores any model's output. The metrics (``configs/evaluate.yaml``):

- ``fid``, ``kid``: torchmetrics' FID Inception with the standard weights (local file or download), hash in the card;
- ``classifier_fd``: Fréchet distance and KID in the relation classifier's feature space, the offline second
  opinion (named as such, never FID);
- ``graph_consistency``: relation-classifier precision / recall / F1 against the conditioning graphs beside the
  ceiling (real images of the same graphs), the floor (shuffled graphs) and chance; per predicate, per camera;
- ``pair_consistency``: the same per (subject, object) pair, where boxes exist (a rendered dataset's real images;
  generated images drawn from its masks, ``layout=masks``, or saved with their layouts, ``save_layouts=true``);
  computed with ``graph_consistency`` whenever boxes exist, and an error when asked for where none do;
- ``memorisation``: nearest real training image of every generated image, near-duplicates flagged and saved;
- ``action_recognition``: the downstream study (:func:`or_synth.evaluation.action_recognition.downstream_study`);
- ``relation_sensitivity``: on ``edits=DIR`` (``or_synth.edit`` outputs), whether the regenerated image changes
  the way the graph edit says (:mod:`or_synth.evaluation.sensitivity`).

Every input is checked before the first feature is extracted; reference features are cached per (dataset,
split, size, cameras, extractor) under ``cache_dir``, so a second evaluation against the same reference skips
them. A thin ``@hydra.main`` wrapper around :func:`evaluate`, which tests call with a composed config.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import hydra
import numpy as np
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from or_synth.data import MAIN_ACTIONS, PREDICATES, SPLIT_TAKES, main_action
from or_synth.data.io import atomic_write_json
from or_synth.evaluation.cards import environment, make_card, write_cards
from or_synth.evaluation.consistency import consistency_report, pair_consistency_report
from or_synth.evaluation.fidelity import FeatureStats, ReferenceCache, fidelity_scores
from or_synth.evaluation.image_sets import (
    PREPROCESSING,
    ImageSet,
    ImageSetError,
    dataset_fingerprint,
    load_generated,
    load_real_counterparts,
    load_real_views,
    split_of_take,
)
from or_synth.evaluation.pairs import (
    EXPORT_MANIFEST,
    PairSet,
    annotated_pairs,
    build_pairs,
    has_boxes,
    label_map_boxes,
)
from or_synth.evaluation.relation_classifier import RelationClassifier, classifier_hash
from or_synth.render import render_embedded_on_first_use

CONFIG_DIR = str(Path(__file__).resolve().parents[1] / "configs")
METRICS = (
    "fid",
    "kid",
    "classifier_fd",
    "graph_consistency",
    "pair_consistency",
    "memorisation",
    "action_recognition",
    "relation_sensitivity",
)
log = logging.getLogger(__name__)


class EvaluationError(ValueError):
    """An evaluation that cannot give a meaningful number; the message says what to change."""


def load_config(overrides: Sequence[str] = ()) -> DictConfig:
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="evaluate", overrides=list(overrides))


def check_metrics(names: Sequence[str]) -> list[str]:
    unknown = [m for m in names if m not in METRICS]
    if unknown:
        raise EvaluationError(f"unknown metric {unknown[0]!r}; available: {', '.join(METRICS)}")
    if not names:
        raise EvaluationError("metrics=[] asks for nothing; choose from " + ", ".join(METRICS))
    return list(dict.fromkeys(names))


def ensure_dataset(root: Path) -> None:
    """The embedded default is rendered on first use (as the demo and training do); other roots must exist."""
    if render_embedded_on_first_use(root) or (root / "relationships_train.json").is_file():
        return
    raise FileNotFoundError(
        f"dataset_root={root} holds no dataset in 4D-OR's layout (relationships_train.json)"
    )


def reference_split(cfg: DictConfig, generated: ImageSet) -> str:
    if cfg.reference_split != "auto":
        return str(cfg.reference_split)
    splits = {split_of_take(t) for t in generated.takes}
    if len(splits) != 1 or None in splits:
        raise EvaluationError(
            f"the generated graphs come from takes {sorted(generated.takes)} (splits {sorted(map(str, splits))}); "
            "set reference_split=validation|test|train to say which real split they are compared with"
        )
    return splits.pop()


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


def generated_pairs(
    root: Path, generated: ImageSet, classifier: RelationClassifier
) -> tuple[PairSet | None, str | None]:
    """The (subject, object) pairs of the generated images, boxed by the layout each was drawn from, or
    ``(None, why)`` where pairs cannot be scored: no pair head, no boxes for the real images (the ceiling), or
    none for the generated ones."""
    if not classifier.has_pair_head:
        return None, (
            "the relation classifier has no pair-level head (trained without boxes, or before it existed); "
            "retrain it on a rendered dataset: python -m or_synth.train stage=classifier"
        )
    if not has_boxes(root):
        return None, f"dataset_root={root} has no boxes for the real images (the ceiling)"
    if generated.layouts and all(generated.layouts):
        boxes = [
            label_map_boxes(path, len(r.object_names))
            for path, r in zip(generated.layouts, generated.records, strict=True)
        ]
        return build_pairs(boxes, "layout label maps saved with the samples (layout_image)"), None
    export = Path(generated.source).parent
    if (export / EXPORT_MANIFEST).is_file() and generated.settings.get("layout") not in (None, "none"):
        # An or_synth.generate export keeps the masks that conditioned each image, boxed in its annotations.
        source = f"{export} annotations (the masks each exported image was drawn from)"
        return annotated_pairs(export, generated, source, generated.size), None
    if generated.settings.get("layout") == "given":
        source = f"{root} annotations (the masks the samples were drawn from, layout=masks)"
        return annotated_pairs(root, generated, source), None
    return None, (
        f"the samples were drawn without a saved layout (manifest layout {generated.settings.get('layout')!r}, no "
        "layout_image), so there are no boxes; sample with layout=masks, or save_layouts=true"
    )


class FeatureSpace:
    """A feature extractor with the name, weights hash and batch size its cards and cache keys need."""

    def __init__(self, name: str, extract, weights_hash: str, batch_size: int) -> None:
        self.name, self.extract, self.weights_hash, self.batch_size = name, extract, weights_hash, batch_size

    @torch.no_grad()
    def __call__(self, images: ImageSet) -> FeatureStats:
        parts = [
            self.extract(images.images[s : s + self.batch_size], images.cameras[s : s + self.batch_size])
            for s in range(0, len(images), self.batch_size)
        ]
        return FeatureStats(torch.cat(parts).double().numpy(), meta={"extractor": self.name})


def classifier_space(classifier: RelationClassifier, digest: str, batch_size: int) -> FeatureSpace:
    classifier.eval()
    return FeatureSpace(
        "relation-classifier-resnet18-pool", lambda x, c: classifier.features(x), digest, batch_size
    )


def inception_space(cfg: DictConfig, batch_size: int) -> FeatureSpace:
    from or_synth.evaluation.fidelity import inception_extractor

    extractor, digest = inception_extractor(cfg.inception_weights, bool(cfg.allow_download))
    extractor.eval()
    return FeatureSpace(
        "fid-inception-v3 (torch-fidelity, TF1-compatible bilinear resize to 299)",
        lambda x, c: extractor(x),
        digest,
        batch_size,
    )


def ceiling_predictions(
    cfg: DictConfig,
    classifier: RelationClassifier,
    digest: str,
    real: ImageSet,
    pairs: PairSet | None,
    split: str,
    timings: dict,
) -> dict[str, torch.Tensor]:
    """The classifier's outputs on the real counterparts (the ceiling's input), cached like reference features:
    they depend only on the real dataset, the classifier and which views (and boxes) are scored, so every model
    evaluated on the same held-out views shares them."""
    root = Path(cfg.dataset_root)
    cache = ReferenceCache(Path(cfg.cache_dir).expanduser())
    fields = {
        "dataset_path": str(root.resolve()),
        "dataset_hash": dataset_fingerprint(root, split),
        "split": split,
        "size": real.size[0],
        "cameras": sorted(set(real.cameras.tolist())),
        "weights_hash": digest,
        "preprocessing": PREPROCESSING,
        "views": hashlib.sha256("\n".join(real.ids).encode()).hexdigest(),
    }
    image_key = cache.key(**fields, extractor="relation classifier outputs (ceiling views)")
    pair_key = None
    if pairs is not None:
        boxes = torch.cat([pairs.image_index[:, None].float(), pairs.subject_box, pairs.object_box], 1)
        pair_key = cache.key(
            **fields,
            extractor="relation classifier pair outputs (ceiling views)",
            boxes=hashlib.sha256(boxes.numpy().tobytes()).hexdigest(),
        )
    started = time.perf_counter()
    columns = {
        "features": classifier.feature_dim,
        "predicates": len(PREDICATES),
        "triples": len(classifier.triples),
    }
    images, pair_stats = cache.get(image_key), cache.get(pair_key) if pair_key else None
    if images is not None and (pair_key is None or pair_stats is not None):
        parts = torch.from_numpy(images.features).float().split(list(columns.values()), dim=1)
        out = dict(zip(columns, parts, strict=True))
        if pair_stats is not None:
            out["pairs"] = torch.from_numpy(pair_stats.features).float()
        timings["ceiling_predictions_cached"] = round(time.perf_counter() - started, 2)
        return out
    out = classifier.predict(
        real.images, real.cameras, int(cfg.batch_size), pairs=pairs, records=real.records
    )
    table = torch.cat([out[name].reshape(len(real), -1) for name in columns], 1).double().numpy()
    cache.put(image_key, FeatureStats(table, meta={"columns": columns, "ids": real.ids}))
    if pair_key is not None:
        cache.put(pair_key, FeatureStats(out["pairs"].double().numpy(), meta={"n_pairs": len(pairs)}))
    timings["ceiling_predictions"] = round(time.perf_counter() - started, 2)
    return out


def reference_features(
    cfg: DictConfig,
    space: FeatureSpace,
    split: str,
    cameras: list[int],
    size: int,
    timings: dict,
    max_scans=None,
) -> tuple[FeatureStats, ImageSet | None, bool]:
    """Features of a real split, from the cache when present. Returns (stats, the images if they were read,
    whether the cache served them)."""
    root = Path(cfg.dataset_root)
    cache = ReferenceCache(Path(cfg.cache_dir).expanduser())
    key = cache.key(
        dataset_path=str(root.resolve()),
        dataset_hash=dataset_fingerprint(root, split),
        split=split,
        size=size,
        cameras=cameras,
        extractor=space.name,
        weights_hash=space.weights_hash,
        preprocessing=PREPROCESSING,
        max_scans=max_scans,
    )
    started = time.perf_counter()
    stats = cache.get(key)
    if stats is not None:
        timings[f"reference_{split}_{space.name}_cached"] = round(time.perf_counter() - started, 2)
        return stats, None, True
    images = load_real_views(root, split, cameras, size, limit=max_scans, progress=bool(cfg.progress))
    stats = space(images)
    stats.meta.update(split=split, n=len(images), ids=images.ids)
    cache.put(key, stats)
    timings[f"reference_{split}_{space.name}"] = round(time.perf_counter() - started, 2)
    return stats, images, False


def evaluate(cfg: DictConfig) -> dict:
    """Run the metrics ``cfg.metrics`` on ``cfg.samples``; returns what ``metrics.json`` holds."""
    started = time.perf_counter()
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    names = check_metrics(list(cfg.metrics))
    if "pair_consistency" in names and "graph_consistency" not in names:
        names.insert(names.index("pair_consistency"), "graph_consistency")  # pairs are scored with it
    out = Path(cfg.out)
    timings: dict[str, float] = {}
    if names == ["relation_sensitivity"]:
        return _only_relation_sensitivity(cfg, out, started)
    if cfg.samples is None:
        raise EvaluationError(
            "samples=MANIFEST is required: the manifest.jsonl of or_synth.sample / generate"
        )

    # 1. Everything that can be wrong, before any feature is extracted.
    root = Path(cfg.dataset_root)
    ensure_dataset(root)
    generated = load_generated(cfg.samples, progress=bool(cfg.progress))
    size, cameras = generated.size[0], sorted(set(generated.cameras.tolist()))
    needs_classifier = {"classifier_fd", "graph_consistency", "memorisation", "relation_sensitivity"} & set(
        names
    )
    classifier, classifier_digest = None, None
    if needs_classifier:
        if cfg.classifier is None:
            raise EvaluationError(
                f"{', '.join(sorted(needs_classifier))} need a relation classifier: classifier=DIR, trained on real "
                "images by `python -m or_synth.train stage=classifier`"
            )
        classifier = RelationClassifier.from_pretrained(cfg.classifier, cfg.classifier_hash)
        classifier_digest = classifier_hash(cfg.classifier)
        if classifier.image_size != size:
            raise EvaluationError(
                f"the classifier was trained at {classifier.image_size} px but the images are {size} px; score "
                "generated images at the resolution the classifier was trained on (train one at this size)"
            )
    pairs, no_pairs = (None, None)
    if "graph_consistency" in names:
        pairs, no_pairs = generated_pairs(root, generated, classifier)
        if pairs is None and "pair_consistency" in names:
            raise EvaluationError(f"pair_consistency cannot be measured: {no_pairs}")
    inception = inception_space(cfg, int(cfg.batch_size)) if {"fid", "kid"} & set(names) else None
    on_training_graphs = check_not_training_graphs(cfg, generated) if "graph_consistency" in names else False
    split = reference_split(cfg, generated)
    if "relation_sensitivity" in names and not cfg.edits:
        raise EvaluationError(
            "relation_sensitivity needs edits=DIR: the out folder of python -m or_synth.edit"
        )

    env = environment()
    common = {
        "samples": str(generated.source),
        "samples_sha256": generated.settings.get("manifest_sha256"),
        "pipeline_hash": generated.settings.get("pipeline_hash"),
        "sampling": {k: generated.settings.get(k) for k in ("sampler", "steps", "guidance_scale", "layout")},
        "sample_seed": generated.settings.get("base_seed"),
        "n_generated": len(generated),
        "dataset": str(root),
        "cameras": cameras,
        "size": size,
        "preprocessing": PREPROCESSING,
        "evaluation_seed": int(cfg.seed),
        "environment": env,
    }
    if classifier is not None:
        common["classifier_hash"] = classifier_digest
    cards: dict[str, dict] = {}
    results: dict = {}

    # 2. Classifier pass over the generated images (predictions and features at once).
    generated_predictions = None
    if classifier is not None:
        begin = time.perf_counter()
        generated_predictions = classifier.predict(
            generated.images, generated.cameras, int(cfg.batch_size), pairs=pairs, records=generated.records
        )
        timings["generated_classifier_pass"] = round(time.perf_counter() - begin, 2)
        timings["generated_images_per_second"] = round(
            len(generated) / max(timings["generated_classifier_pass"], 1e-9), 1
        )

    # 3. Fidelity.
    # (metric names, feature space, label, the generated images' features when already extracted)
    spaces = []
    if inception is not None:
        spaces.append(("fid", "kid", inception, "FID", None))
    if "classifier_fd" in names:
        space = classifier_space(classifier, classifier_digest, int(cfg.batch_size))
        known = FeatureStats(
            generated_predictions["features"].double().numpy(), meta={"extractor": space.name}
        )
        spaces.append(("classifier_fd", "classifier_kid", space, "classifier FD", known))
    for fd_name, kid_name, space, label, known in spaces:
        real, _, cached = reference_features(
            cfg, space, split, cameras, size, timings, cfg.reference_max_scans
        )
        fake = known if known is not None else space(generated)
        scores = fidelity_scores(
            real, fake, name=label, kid_subset_size=int(cfg.kid_subset_size), kid_subsets=int(cfg.kid_subsets),
            seed=int(cfg.seed), min_n_warning=int(cfg.fid_min_n),
        )  # fmt: skip
        fields = {
            **common,
            "feature_space": space.name,
            "weights_hash": space.weights_hash,
            "split": split,
            "n_real": scores["n_real"],
            "reference_cached": cached,
            "warnings": scores["warnings"],
        }
        implementation = (
            "or_synth.evaluation.frechet_distance (float64, eigh square root; agrees with torchmetrics)"
        )
        if fd_name in names:
            cards[fd_name] = make_card(
                fd_name, round(scores["frechet_distance"], 4), implementation=implementation, **fields
            )
        kid_card = kid_name if (kid_name != "kid" or "kid" in names) else None
        if kid_card:
            kid_value = {
                "mean": round(scores["kid_mean"], 6),
                "std": round(scores["kid_std"], 6),
                "subset_size": scores["kid_subset_size"],
            }
            cards[kid_card] = make_card(
                kid_card,
                kid_value,
                implementation="torchmetrics.image.kid.poly_mmd over seeded subsets",
                **fields,
            )

    # 4. Graph consistency.
    real_views, real_predictions = None, None
    if "graph_consistency" in names:
        begin = time.perf_counter()
        real_views = load_real_counterparts(root, generated)
        real_pairs = None
        if pairs is not None:  # the real renders in their own boxes: the pair-level ceiling
            real_pairs = annotated_pairs(root, real_views, f"{root} annotations")
        real_predictions = ceiling_predictions(
            cfg, classifier, classifier_digest, real_views, real_pairs, split, timings
        )
        report = consistency_report(
            classifier,
            generated,
            real_views,
            seed=int(cfg.seed),
            generated_predictions=generated_predictions,
            real_predictions=real_predictions,
        )
        timings["graph_consistency"] = round(time.perf_counter() - begin, 2)
        quality = classifier_quality(cfg.classifier)
        training_note = (
            ["scored on TRAINING-split graphs the generator was trained on (allow_training_graphs=true)"]
            if on_training_graphs
            else []
        )
        scored = {
            **common,
            "weights_hash": classifier_digest,
            "split": split,
            "n_real": len(real_views),
            "training_graphs": on_training_graphs,
        }
        cards["graph_consistency"] = consistency_card(
            "graph_consistency (predicate macro-F1; model / ceiling / floor)",
            report,
            ("scan", "image"),
            implementation="or_synth.evaluation.consistency.consistency_report",
            classifier_quality=quality,
            warnings=training_note + weak_predicate_warnings(report),
            **scored,
        )
        results["graph_consistency"] = report
        if pairs is None:
            report["pairs"] = {"measured": False, "why": no_pairs}
        else:
            begin = time.perf_counter()
            pair_report = pair_consistency_report(
                classifier,
                generated,
                pairs,
                real_views,
                real_pairs,
                seed=int(cfg.seed),
                batch_size=int(cfg.batch_size),
                generated_probabilities=generated_predictions["pairs"],
                real_probabilities=real_predictions["pairs"],
            )
            timings["pair_consistency"] = round(time.perf_counter() - begin, 2)
            cards["pair_consistency"] = consistency_card(
                "pair_consistency (pair-level predicate macro-F1; model / ceiling / floor / labels only)",
                pair_report,
                ("scan", "view"),
                implementation="or_synth.evaluation.consistency.pair_consistency_report",
                n_pairs=pair_report["n_pairs"],
                n_real_pairs=pair_report.get("n_real_pairs"),
                boxes=pair_report["box_source"],
                classifier_quality=quality.get("validation", {}).get("pairs", {}),
                warnings=training_note + weak_predicate_warnings(pair_report, what="pairs"),
                **scored,
            )
            results["pair_consistency"] = pair_report

    # 5. Memorisation.
    if "memorisation" in names:
        from or_synth.data import read_image
        from or_synth.evaluation.memorisation import memorisation_report, nearest_training_images

        begin = time.perf_counter()
        space = classifier_space(classifier, classifier_digest, int(cfg.batch_size))
        max_scans = cfg.memorisation.training_max_scans
        train_stats, train_images, _ = reference_features(
            cfg, space, "train", cameras, size, timings, max_scans
        )
        heldout = {}
        if real_views is not None:  # calibration: real held-out images are not copies of training images
            heldout = {"heldout_images": real_views.images, "heldout_features": real_predictions["features"]}
        # Only the training images that are someone's nearest neighbour are read (or kept): the search runs on
        # the cached features, and restricting it to those candidates leaves every nearest neighbour unchanged.
        queries = [generated_predictions["features"]]
        if heldout:
            queries.append(heldout["heldout_features"])
        candidates = np.unique(
            np.concatenate([nearest_training_images(q, train_stats.features)[0] for q in queries])
        )
        train_ids = [train_stats.meta["ids"][i] for i in candidates]
        candidate_images = (
            train_images.images[candidates]
            if train_images is not None
            else torch.stack([read_image(root / i, (size, size)) for i in train_ids])
        )
        report = memorisation_report(
            generated.images, generated.ids, generated_predictions["features"],
            candidate_images, train_ids, train_stats.features[candidates],
            feature_threshold=float(cfg.memorisation.feature_threshold),
            ssim_threshold=float(cfg.memorisation.ssim_threshold),
            pairs_dir=out / "memorisation_pairs", max_pairs=int(cfg.memorisation.max_pairs), **heldout,
        )  # fmt: skip
        report["summary"]["n_training"] = train_stats.n  # searched: all of them (read: the candidates)
        timings["memorisation"] = round(time.perf_counter() - begin, 2)
        summary = report["summary"]
        cards["memorisation"] = make_card(
            "memorisation (near-duplicates of real training images)",
            {k: summary[k] for k in ("n_flagged", "fraction_flagged", "similarity_median", "ssim_median")},
            implementation="or_synth.evaluation.memorisation (classifier-feature cosine NN + skimage SSIM)",
            **common,
            weights_hash=classifier_digest,
            split="train",
            n_real=train_stats.n,
            thresholds=dict(OmegaConf.to_container(cfg.memorisation)),
            warnings=[],
        )
        results["memorisation"] = report

    # 6. Relation sensitivity on graph edits.
    if "relation_sensitivity" in names:
        results["relation_sensitivity"], cards["relation_sensitivity"] = sensitivity_card(
            cfg, classifier, classifier_digest, {"environment": common["environment"]}
        )

    # 7. Downstream action recognition.
    if "action_recognition" in names:
        begin = time.perf_counter()
        results["action_recognition"], cards["action_recognition"] = action_recognition(
            cfg, generated, common
        )
        timings["action_recognition"] = round(time.perf_counter() - begin, 2)

    timings["total"] = round(time.perf_counter() - started, 2)
    return write_document(cfg, out, cards, results, timings)


def write_document(cfg: DictConfig, out: Path, cards: dict, results: dict, timings: dict) -> dict:
    """``out/metrics.json`` (values, cards, details, every warning once, timings, the config) and the cards."""
    document = {
        "metrics": {name: card["value"] for name, card in cards.items()},
        "cards": cards,
        "details": results,
        "warnings": sorted({w for card in cards.values() for w in card.get("warnings") or []}),
        "timings_seconds": timings,
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    out.mkdir(parents=True, exist_ok=True)
    write_cards(out, cards)
    atomic_write_json(out / "metrics.json", document, indent=2)
    return document


def sensitivity_card(cfg: DictConfig, classifier, digest: str, common: dict) -> tuple[dict, dict]:
    from or_synth.evaluation.sensitivity import relation_sensitivity

    report = relation_sensitivity(classifier, cfg.edits)
    card = make_card(
        "relation_sensitivity (changed labels moving the way the edit says; chance 0.5)",
        {kind: report[kind] for kind in ("after", "full")},
        implementation="or_synth.evaluation.sensitivity.relation_sensitivity",
        **common,
        edits=str(cfg.edits),
        n_edits=len(report["edits"]),
        classifier_hash=digest,
        weights_hash=digest,
        preprocessing=PREPROCESSING,
        warnings=[]
        if len(report["edits"]) >= 20
        else [f"only {len(report['edits'])} edit(s): a rough estimate"],
    )
    return report, card


def _only_relation_sensitivity(cfg: DictConfig, out: Path, started: float) -> dict:
    if not cfg.edits or cfg.classifier is None:
        raise EvaluationError(
            "relation_sensitivity needs edits=DIR (or_synth.edit outputs) and classifier=DIR"
        )
    classifier = RelationClassifier.from_pretrained(cfg.classifier, cfg.classifier_hash)
    report, card = sensitivity_card(
        cfg, classifier, classifier_hash(cfg.classifier), {"environment": environment()}
    )
    timings = {"total": round(time.perf_counter() - started, 2)}
    return write_document(cfg, out, {"relation_sensitivity": card}, {"relation_sensitivity": report}, timings)


def consistency_card(title: str, report: dict, units: Sequence[str], **fields) -> dict:
    """A consistency card: predicate macro-F1 per unit for the model and every reference the report has."""
    value = {
        unit: {
            who: report[who][f"predicate_macro_f1_per_{unit}"]
            for who in ("model", "ceiling", "floor", "labels_only")
            if who in report
        }
        for unit in units
    }
    return make_card(title, value, chance=report["chance"], **fields)


def classifier_quality(folder) -> dict:
    path = Path(folder) / "quality.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def weak_predicate_warnings(report: dict, what: str = "images", floor_f1: float = 0.5) -> list[str]:
    """A scorer that cannot see a predicate on real images cannot judge a generator on it: name those (by its
    per-scan F1 on the real ``what`` of the same graphs, the report's ceiling)."""
    warnings = []
    for name, row in report["predicates"].items():
        ceiling = row.get("ceiling", {}).get("f1_per_scan")
        if ceiling is not None and ceiling < floor_f1 and row["ceiling"].get("support_per_scan", 0) > 0:
            warnings.append(
                f"the relation classifier is weak on {name} (F1 {ceiling:.2f} on real {what} of these graphs): "
                f"its {name} score says little about the generator"
            )
    return warnings


def labelled(images: ImageSet):
    from or_synth.evaluation.action_recognition import LabelledImages

    labels = torch.tensor([MAIN_ACTIONS.index(main_action(r.predicates)) for r in images.records])
    takes = torch.tensor([r.take for r in images.records])
    return LabelledImages(images.images, labels, images.scan_groups(), takes)


def action_recognition(cfg: DictConfig, generated: ImageSet, common: dict) -> tuple[dict, dict]:
    """Real-only vs real + synthetic main-action recognition on real held-out takes (helper module)."""
    from or_synth.evaluation.action_recognition import LabelledImages, downstream_study

    settings = cfg.action_recognition
    synthetic = load_generated(settings.samples) if settings.samples else generated
    held_out = sorted(synthetic.takes - set(SPLIT_TAKES["train"]))
    if held_out:
        raise EvaluationError(
            f"{synthetic.source}: synthetic training images must come from TRAINING-split graphs (or new ones), "
            f"never from the held-out takes {held_out} the downstream model is tested on"
        )
    size, cameras = synthetic.size[0], sorted(set(synthetic.cameras.tolist()))
    root = Path(cfg.dataset_root)
    real_train = load_real_views(root, "train", cameras, size, limit=int(settings.real_train_scans))
    real_test = [load_real_views(root, s, cameras, size) for s in ("validation", "test")]
    test = LabelledImages.concat([labelled(t) for t in real_test])  # offsets the scan ids of each part
    extra = None
    warnings = []
    if settings.extra_real_root:
        extra = labelled(load_real_views(settings.extra_real_root, "train", cameras, size))
    else:
        warnings.append(
            "no oracle control: set action_recognition.extra_real_root to a render of the training takes"
        )
    study = downstream_study(
        labelled(real_train), labelled(synthetic), test, extra,
        seeds=list(settings.seeds), ratios=list(settings.ratios), fractions=list(settings.fractions),
        steps=int(settings.steps), batch_size=int(settings.batch_size),
        log=(lambda line: print(line, file=sys.stderr, flush=True)) if cfg.progress else None,
    )  # fmt: skip
    card = make_card(
        "action_recognition (main-action macro-F1 on real held-out takes)",
        [
            {k: row.get(k) for k in ("fraction", "arm", "ratio", "mean", "ci95")}
            | {"gain": (row.get("gain_over_real_only") or {}).get("mean")}
            for row in study["rows"]
        ],
        implementation="or_synth.evaluation.action_recognition.downstream_study",
        **{**common, "samples": synthetic.source, "n_generated": len(synthetic)},
        split="train -> validation+test",
        n_real=len(real_train),
        seeds=list(settings.seeds),
        warnings=warnings,
    )
    return study, card


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="evaluate")
def main(cfg: DictConfig) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        document = evaluate(cfg)
    except (EvaluationError, ImageSetError, FileNotFoundError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    for name, value in document["metrics"].items():
        print(f"{name}: {value}")
    for warning in document["warnings"]:
        print(f"warning: {warning}")
    print(f"metrics: {Path(cfg.out) / 'metrics.json'}  cards: {Path(cfg.out) / 'cards'}")


if __name__ == "__main__":
    main()
