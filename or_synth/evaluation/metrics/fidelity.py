"""Fidelity metrics: FID and KID in the standard Inception space, and the same two statistics in the relation
classifier's feature space (``classifier_fd`` / ``classifier_kid``, the offline second opinion, never called FID).

Each compares the generated images with the reference split's real views (:func:`reference_features`, cached);
the statistics are :func:`or_synth.evaluation.fidelity.fidelity_scores`.
"""

from __future__ import annotations

from or_synth.evaluation.cards import make_card
from or_synth.evaluation.context import Evaluation
from or_synth.evaluation.features import FeatureSpace, classifier_space, reference_features
from or_synth.evaluation.fidelity import (
    FeatureStats,
    fidelity_scores,
    matched_real_reference,
    precision_recall_density_coverage,
    split_reference,
)
from or_synth.evaluation.registry import Metric, Need

FD_IMPLEMENTATION = (
    "or_synth.evaluation.frechet_distance (float64, eigh square root; agrees with torchmetrics)"
)
KID_IMPLEMENTATION = "torchmetrics.image.kid.poly_mmd over seeded subsets"


def compare_features(
    run: Evaluation, space: FeatureSpace, label: str, generated: FeatureStats | None = None
) -> tuple[dict, dict]:
    """Fréchet distance and KID of the generated images against the reference split in ``space`` (once per
    space and evaluation: FID and KID share it), and the card fields they carry.

    Args:
        label: what the Fréchet distance is called in warnings ("FID" only in the Inception space).
        generated: the generated images' features when already extracted (the classifier pass).
    """
    key = f"fidelity:{space.name}"
    if key not in run.shared:
        real, _, cached = reference_features(
            run.reference_cache, run.root, space, run.split, run.cameras, run.size, run.timings,
            max_scans=run.cfg.reference_max_scans, progress=bool(run.cfg.progress),
        )  # fmt: skip
        fake = generated if generated is not None else space(run.generated)
        scores = fidelity_scores(
            real, fake, name=label, kid_subset_size=int(run.cfg.kid_subset_size),
            kid_subsets=int(run.cfg.kid_subsets), seed=run.seed, min_n_warning=int(run.cfg.fid_min_n),
        )  # fmt: skip
        matched = matched_real_reference(
            real, fake, kid_subset_size=int(run.cfg.kid_subset_size), kid_subsets=int(run.cfg.kid_subsets),
            seed=run.seed,
        )  # fmt: skip
        fields = {
            **run.common,
            "feature_space": space.name,
            "weights_hash": space.weights_hash,
            "split": run.split,
            "n_real": scores["n_real"],
            "reference_cached": cached,
            "matched_real_reference": matched,
            "warnings": scores["warnings"],
        }
        run.shared[key] = scores, fields
        run.shared[reference_key(space)] = real  # the PRDC card compares with the same reference, read once
    return run.shared[key]


def reference_key(space: FeatureSpace) -> str:
    return f"fidelity-reference:{space.name}"


def fd_card(name: str, scores: dict, fields: dict) -> dict:
    return make_card(name, round(scores["frechet_distance"], 4), implementation=FD_IMPLEMENTATION, **fields)


def kid_card(name: str, scores: dict, fields: dict) -> dict:
    value = {
        "mean": round(scores["kid_mean"], 6),
        "std": round(scores["kid_std"], 6),
        "subset_size": scores["kid_subset_size"],
    }
    return make_card(name, value, implementation=KID_IMPLEMENTATION, **fields)


def score_fid(run: Evaluation) -> None:
    scores, fields = compare_features(run, run.inception, "FID")
    run.cards["fid"] = fd_card("fid", scores, fields)


def score_kid(run: Evaluation) -> None:
    scores, fields = compare_features(run, run.inception, "FID")
    run.cards["kid"] = kid_card("kid", scores, fields)


def score_classifier_fd(run: Evaluation) -> None:
    space = classifier_space(run.classifier, run.classifier_digest, run.batch_size)
    features = run.generated_predictions["features"].double().numpy()
    scores, fields = compare_features(
        run, space, "classifier FD", FeatureStats(features, meta={"extractor": space.name})
    )
    run.cards["classifier_fd"] = fd_card("classifier_fd", scores, fields)
    run.cards["classifier_kid"] = kid_card("classifier_kid", scores, fields)
    run.cards["classifier_prdc"] = prdc_card(run, space, fields)


def prdc_card(run: Evaluation, space: FeatureSpace, fields: dict) -> dict:
    """Precision, recall, density and coverage in the classifier's features, beside the same four for a real set
    of the generated N against the rest of the reference (what real images score)."""
    real = run.shared[reference_key(space)]  # read by compare_features, which the same metric ran first
    fake = FeatureStats(run.generated_predictions["features"].double().numpy())
    k = int(run.cfg.get("prdc_nearest_k", 5))
    value = precision_recall_density_coverage(real, fake, nearest_k=k)
    reference = {
        "measured": False,
        "why": f"the reference has {real.n} images, fewer than the generated N + 2",
    }
    parts = split_reference(real, fake.n, run.seed)
    if parts is not None:
        part, rest = parts
        reference = {"measured": True, "n": fake.n, "n_reference": rest.n,
                     "real_vs_real": precision_recall_density_coverage(rest, part, nearest_k=k),
                     "generated_vs_same_reference": precision_recall_density_coverage(rest, fake, nearest_k=k)}  # fmt: skip
    card_fields = {key: v for key, v in fields.items() if key != "matched_real_reference"}
    return make_card("classifier_prdc", value, implementation=PRDC_IMPLEMENTATION, matched_real_reference=reference,
                     **card_fields)  # fmt: skip


PRDC_IMPLEMENTATION = "prdc.compute_prdc (Naeem et al. 2020) in the relation classifier's features"

FID = Metric(
    "fid",
    score_fid,
    cards=("fid",),
    needs=frozenset({Need.GENERATED, Need.INCEPTION}),
    summary="Fréchet Inception distance to the reference split (torchmetrics' FID Inception, its hash in the card)",
)
KID = Metric(
    "kid",
    score_kid,
    cards=("kid",),
    needs=frozenset({Need.GENERATED, Need.INCEPTION}),
    summary="kernel Inception distance to the reference split (seeded subsets), from the same Inception pass",
)
CLASSIFIER_FD = Metric(
    "classifier_fd",
    score_classifier_fd,
    cards=("classifier_fd", "classifier_kid", "classifier_prdc"),
    needs=frozenset({Need.GENERATED, Need.CLASSIFIER, Need.CLASSIFIER_PASS}),
    summary="Fréchet distance, KID and precision / recall / density / coverage in the relation classifier's "
    "feature space (offline; never called FID)",
)
