"""Alignment objectives and a tiny end-to-end alignment run that must beat its starting point."""

from __future__ import annotations

import math

import pytest
import torch
from torch_geometric.data import Batch

from or_synth.encoders import build_aligner, info_nce, retrieval_recall
from or_synth.encoders.metrics import masked_predicate_eval, one_masked_edge_copies, score_predicates
from tests.helpers import tiny_clip_cfg, write_graph_image_dataset


def test_info_nce_is_symmetric_and_log_b_when_uninformative():
    emb = torch.nn.functional.normalize(torch.randn(6, 8), dim=-1)
    assert info_nce(emb, emb, torch.tensor(1.0)) == pytest.approx(
        float(info_nce(emb, emb, torch.tensor(1.0)))
    )
    same = torch.nn.functional.normalize(torch.ones(6, 8), dim=-1)
    assert float(info_nce(same, same, torch.tensor(10.0))) == pytest.approx(math.log(6), rel=1e-5)
    a, b = torch.randn(5, 4), torch.randn(5, 4)
    torch.testing.assert_close(info_nce(a, b, torch.tensor(2.0)), info_nce(b, a, torch.tensor(2.0)))


def test_retrieval_recall():
    eye = torch.eye(6)
    assert retrieval_recall(eye, eye) == {"R@1": 1.0, "R@5": 1.0}
    shifted = retrieval_recall(eye, eye.roll(1, 0))
    assert shifted["R@1"] == 0.0
    # Ties count against the query: identical gallery items never give a lucky hit.
    assert retrieval_recall(torch.ones(3, 2), torch.ones(3, 2))["R@1"] == 0.0


def test_masked_graph_loss_and_eval(graphs, tmp_path):
    aligner = build_aligner(tiny_clip_cfg(tmp_path), embed_dim=16)
    batch = Batch.from_data_list(graphs)
    out = aligner.masked_graph_loss(batch, mask_prob=0.5, generator=torch.Generator().manual_seed(0))
    assert out["loss"].requires_grad and torch.isfinite(out["loss"])
    out["loss"].backward()
    assert aligner.predicate_head.weight.grad.abs().sum() > 0
    copies = one_masked_edge_copies(graphs)
    assert len(copies) == sum(g.edge_attr.numel() for g in graphs) and all(
        c.predicate_mask.sum() == 1 for c in copies
    )
    result = masked_predicate_eval(aligner, graphs, aligner.encoder.config.predicates)
    assert result["triples"] == len(copies) and 0.0 <= result["accuracy"] <= 1.0
    scored = score_predicates(
        torch.tensor([3, 3, 5]), torch.tensor([3, 7, 5]), aligner.encoder.config.predicates
    )
    assert scored["accuracy"] == pytest.approx(2 / 3) and scored["accuracy_not_closeto"] == pytest.approx(0.5)


def test_masked_graph_loss_on_a_graph_without_edges(graphs, tmp_path):
    aligner = build_aligner(tiny_clip_cfg(tmp_path), embed_dim=16)
    out = aligner.masked_graph_loss(graphs[1], mask_prob=0.0)
    assert out["loss"].item() == 0.0 and out["loss"].requires_grad


@pytest.fixture(scope="module")
def aligned_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("graph_images")
    return write_graph_image_dataset(root, {"train": (1, 3), "validation": (4,)}, scans_per_take=24, seed=0)


def test_tiny_alignment_run_improves_retrieval(aligned_dataset, tmp_path):
    """Deterministic seeds; the adapted encoder must beat its start by a clear margin on held-out take 4."""
    from tests.helpers import compose_train_cfg

    cfg = compose_train_cfg(
        aligned_dataset,
        tmp_path,
        [
            "align.steps=120",
            "align.batch_size=16",
            "align.eval_every=1000",
            "align.ckpt_every=1000",
            "trainer.log_every=20",
            "align.lr=2e-3",
            "align.image_lr=1e-3",
            "encoder.image_tower.trainable_blocks=-1",
            "align.eval_max_graphs=24",
        ],
    )
    from or_synth.train import train

    result = train(cfg)
    start, end = result["metrics"]["start"], result["metrics"]["end"]
    assert start["retrieval/queries"] == end["retrieval/queries"] == 48
    assert end["retrieval/R@5"] >= start["retrieval/R@5"] + 0.15, (start, end)
    assert end["retrieval/R@1"] > start["retrieval/R@1"], (start, end)
