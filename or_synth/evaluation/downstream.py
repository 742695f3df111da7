"""The downstream study, second protocol: does adding generated images help main-action recognition on real
held-out takes, measured so that a reviewer accepts the answer.

What changes against :func:`or_synth.evaluation.action_recognition.downstream_study` (kept as it was, its recorded
numbers reproducible):

- **Every arm trains the same number of steps**, chosen where the real-only arm's VALIDATION score has plateaued
  (:func:`learning_curve`, :func:`plateau_steps`): real only is then the matched-compute control by construction
  (the same optimiser steps, the same batch, spent on real images only), and no arm wins by training longer.
- **A synthetic-only arm** beside real only, real + synthetic and real + oracle (real renders of the synthetic
  images' own graphs, the same count and the same seeded draw).
- **A reference**: the real-only model on the whole real pool, the ceiling each low-data regime is read against.
- **Intervals over seeds and test scans**: every gain is a paired bootstrap that resamples seeds and test scans
  together (:func:`paired_scan_bootstrap`); a gain whose interval does not exclude 0 is "not shown".

Works on tensors (:class:`~or_synth.evaluation.action_recognition.LabelledImages`); the benchmark loads the images
and draws the synthetic graphs. Never imports the generator.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from or_synth.evaluation.action_recognition import (
    DEFAULT_ARCHITECTURE,
    LabelledImages,
    added_count,
    check_added_pools,
    check_compatible,
    classification_table,
    draw_added,
    real_subset,
    summarise,
    train_and_score,
)


def train_and_predict(train: LabelledImages, test: LabelledImages, **settings) -> dict:
    """:func:`~or_synth.evaluation.action_recognition.train_and_score` with the per-scan predictions and truth kept
    (the bootstrap over scans needs them)."""
    return train_and_score(train, test, keep_predictions=True, **settings)


def macro_f1(predicted: np.ndarray, truth: np.ndarray) -> float:
    return classification_table(predicted, truth)["macro_f1"]


def paired_scan_bootstrap(
    arm: Sequence[dict], baseline: Sequence[dict] | None, *, resamples: int = 2000, seed: int = 0
) -> dict:
    """The mean macro-F1 over seeds of ``arm`` (minus ``baseline``'s, paired by seed and by test scan) with a 95 %
    interval from resampling seeds and test scans together: each resample draws seeds with replacement and one
    set of scans with replacement, scored for both arms on the same scans.

    Args:
        arm, baseline: per seed, :func:`train_and_predict` results on the same test scans (same order).
    """
    truth = np.asarray(arm[0]["scan_truth"])
    predictions = np.array([r["scan_predictions"] for r in arm])
    base = None if baseline is None else np.array([r["scan_predictions"] for r in baseline])
    if base is not None and base.shape != predictions.shape:
        raise ValueError(
            f"the two arms were scored on different seeds or scans: {predictions.shape} vs {base.shape}"
        )

    def statistic(seeds: np.ndarray, scans: np.ndarray) -> float:
        values = [macro_f1(predictions[s, scans], truth[scans]) for s in seeds]
        if base is not None:
            values = [v - macro_f1(base[s, scans], truth[scans]) for v, s in zip(values, seeds, strict=True)]
        return float(np.mean(values))

    everything = np.arange(len(truth))
    value = statistic(np.arange(len(predictions)), everything)
    rng = np.random.default_rng(seed)
    samples = np.array(
        [
            statistic(
                rng.integers(0, len(predictions), len(predictions)), rng.integers(0, len(truth), len(truth))
            )
            for _ in range(resamples)
        ]
    )
    samples = samples[np.isfinite(samples)]
    low, high = np.quantile(samples, [0.025, 0.975])
    out = {"value": round(value, 4), "ci95": [round(float(low), 4), round(float(high), 4)]}
    if baseline is not None:
        out["shown"] = bool(low > 0 or high < 0)
    return out


def learning_curve(
    real_train: LabelledImages, real_validation: LabelledImages, *, step_grid: Sequence[int], seeds: Sequence[int],
    batch_size: int, lr: float, architecture: str = DEFAULT_ARCHITECTURE, log: Callable[[str], None] | None = None,
) -> list[dict]:  # fmt: skip
    """The real-only arm's validation macro-F1 per scan at each step count of ``step_grid`` (one fresh run per
    (steps, seed): the warm-up and cosine schedule depend on the total, so a prefix of a longer run is not the
    same model)."""
    curve = []
    for steps in sorted(set(int(s) for s in step_grid)):
        scores = []
        for seed in seeds:
            result = train_and_predict(real_train, real_validation, steps=steps, batch_size=batch_size, seed=seed,
                                       lr=lr, architecture=architecture)  # fmt: skip
            scores.append(result["macro_f1"])
            if log is not None:
                log(
                    f"learning curve: {steps} steps, seed {seed}: validation macro-F1 {result['macro_f1']:.3f}"
                )
        curve.append(
            {
                "steps": steps,
                "macro_f1": [round(v, 4) for v in scores],
                "mean": round(float(np.mean(scores)), 4),
            }
        )
    return curve


def plateau_steps(curve: Sequence[dict], tolerance: float = 0.01) -> int:
    """The fewest steps whose mean validation score is within ``tolerance`` of the curve's best: where more steps
    stop paying."""
    best = max(point["mean"] for point in curve)
    return min(point["steps"] for point in curve if point["mean"] >= best - tolerance)


def equal_steps_study(
    real_train: LabelledImages, synthetic: LabelledImages, real_test: LabelledImages,
    oracle: LabelledImages | None = None, *, steps: int, batch_size: int, seeds: Sequence[int] = (0, 1, 2, 3, 4),
    ratios: Sequence[float] = (1.0,), fractions: Sequence[float] = (1.0, 0.25, 0.1), lr: float = 3e-3,
    architecture: str = DEFAULT_ARCHITECTURE, resamples: int = 2000, log: Callable[[str], None] | None = None,
) -> dict:  # fmt: skip
    """Real only, real + synthetic, real + oracle and synthetic only, every run ``steps`` optimiser steps.

    For each real fraction f (a seeded, action-stratified subset of the real training scans per seed, shared by
    every arm of that seed) and ratio r: ``synthetic`` adds ``r x (real images)`` generated images, ``oracle``
    the same count of ``oracle`` images with the same seeded row draw (listed in the synthetic images' order, so
    they pair image by image), ``synthetic_only`` trains on that many generated images alone. Gains over real
    only are paired by seed and test scan (:func:`paired_scan_bootstrap`); the reference is real only on the
    whole pool (fraction 1).

    Returns:
        ``rows`` (fraction, arm, ratio, counts, per-seed scores, mean, per-class table, ``macro_f1_interval``
        over seeds and scans and ``gain_over_real_only`` with ``shown``), ``reference`` and ``definitions``.
    """
    if not seeds or not fractions:
        raise ValueError("seeds and fractions must be non-empty")
    if any(r <= 0 for r in ratios) or any(not 0 < f <= 1 for f in fractions):
        raise ValueError("ratios must be > 0 and fractions in (0, 1]")
    check_compatible(real_train=real_train, synthetic=synthetic, real_test=real_test,
                     **({"oracle": oracle} if oracle is not None else {}))  # fmt: skip
    check_added_pools(
        real_train, real_test, {"synthetic": synthetic, "oracle": oracle}, fractions, ratios, seeds
    )
    rows, runs = [], {}

    def run(fraction: float, arm: str, ratio: float) -> dict:
        results, counts = [], {}
        for seed in seeds:
            real = real_subset(real_train, fraction, seed)
            count = added_count(len(real), ratio)
            pool = {"synthetic": synthetic, "synthetic_only": synthetic, "oracle": oracle}.get(arm)
            added = None if pool is None else draw_added(pool, count, seed, fraction, ratio)
            if arm == "real_only":
                train = real
            elif arm == "synthetic_only":
                train = added
            else:
                train = LabelledImages.concat([real, added])
            counts = {"real_images": 0 if arm == "synthetic_only" else len(real),
                      "real_scans": 0 if arm == "synthetic_only" else int(real.groups.unique().numel()),
                      "added_images": 0 if added is None else len(added)}  # fmt: skip
            results.append(train_and_predict(train, real_test, steps=steps, batch_size=batch_size, seed=seed, lr=lr,
                                             architecture=architecture))  # fmt: skip
            if log is not None:
                log(
                    f"fraction {fraction} {arm} r={ratio} seed {seed}: macro-F1 {results[-1]['macro_f1']:.3f}"
                )
        runs[(fraction, arm, ratio)] = results
        row = {"fraction": fraction, "arm": arm, "ratio": ratio, "steps": steps, **counts}
        row.update({k: v for k, v in summarise(results, seeds).items() if k != "ci95"})
        row["macro_f1_interval"] = paired_scan_bootstrap(results, None, resamples=resamples)
        rows.append(row)
        return row

    for fraction in fractions:
        run(fraction, "real_only", 0.0)
        for ratio in ratios:
            for arm in ("synthetic", *(("oracle",) if oracle is not None else ()), "synthetic_only"):
                row = run(fraction, arm, float(ratio))
                row["gain_over_real_only"] = paired_scan_bootstrap(
                    runs[(fraction, arm, float(ratio))],
                    runs[(fraction, "real_only", 0.0)],
                    resamples=resamples,
                )
    reference = next((r for r in rows if r["fraction"] == 1.0 and r["arm"] == "real_only"), None)
    return {
        "rows": rows,
        "reference": None
        if reference is None
        else {"mean": reference["mean"], "interval": reference["macro_f1_interval"]},
        "definitions": {
            "metric": "macro-F1 per scan (softmax probabilities averaged over the scan's views) over the main "
            "actions present in the test set",
            "steps": f"every run trains {steps} optimiser steps at batch {batch_size}: real only is the matched-compute "
            "control by construction",
            "oracle": "real renders of the synthetic images' own graphs, the same count and the same seeded draw",
            "reference": "real only on the whole real pool (fraction 1): the ceiling of the low-data regimes",
            "intervals": f"95 % percentile bootstrap over seeds and test scans together ({resamples} resamples); "
            "gains paired by seed and scan, 'shown' when the interval excludes 0",
        },
        "settings": {
            "seeds": list(seeds),
            "ratios": [float(r) for r in ratios],
            "fractions": list(fractions),
            "steps": steps,
            "batch_size": batch_size,
            "lr": lr,
            "architecture": architecture,
        },  # fmt: skip
    }
