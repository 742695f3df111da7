"""Measurements of the adapted encoder: graph(+view) -> image retrieval and masked-predicate accuracy."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch_geometric.data import Batch, Data, Dataset
from torch_geometric.loader import DataLoader

from or_synth.encoders.alignment import GraphImageAligner, retrieval_recall


def evenly_spaced(n: int, limit: int | None) -> list[int]:
    """At most ``limit`` indices spread over ``range(n)`` (a deterministic, take-wide subset)."""
    if limit is None or limit >= n:
        return list(range(n))
    return torch.linspace(0, n - 1, limit).round().long().unique().tolist()


@torch.no_grad()
def retrieval_eval(
    aligner: GraphImageAligner,
    dataset: Dataset,
    *,
    batch_size: int = 32,
    max_graphs: int | None = None,
    ks: Sequence[int] = (1, 5),
) -> dict[str, float]:
    """Recall@k of graph(+camera view) -> image retrieval over every (scan, camera) image of ``dataset``.

    Each scan's graph is encoded once per camera with that camera's view id; the gallery holds all images
    of all cameras, so a hit needs both the right scan and the right view.

    Args:
        dataset: a ``FourDORDataset`` with ``load_images=True``.
        max_graphs: evaluate an evenly spaced subset of at most this many scans.

    Returns:
        ``{"R@1", "R@5", "queries"}``.
    """
    was_training = aligner.training
    aligner.eval()
    device = aligner.logit_scale.device
    subset = dataset[evenly_spaced(len(dataset), max_graphs)]
    graphs, images = [], []
    for batch in DataLoader(subset, batch_size=batch_size, shuffle=False):
        batch = batch.to(device)
        b, v = batch.images.shape[:2]
        images.append(aligner.image_embedding(batch.images.flatten(0, 1)).view(b, v, -1))
        graphs.append(torch.stack([aligner.graph_embedding(batch, batch.cameras[:, i]) for i in range(v)], 1))
    aligner.train(was_training)
    queries, gallery = torch.cat(graphs).flatten(0, 1), torch.cat(images).flatten(0, 1)
    return {**retrieval_recall(queries.cpu(), gallery.cpu(), ks=ks), "queries": int(queries.shape[0])}


def one_masked_edge_copies(graphs: Sequence[Data]) -> list[Data]:
    """One copy of each graph per edge, with ``predicate_mask`` (E,) hiding exactly that edge."""
    copies = []
    for graph in graphs:
        num_edges = int(graph.edge_attr.shape[0])
        for e in range(num_edges):
            mask = torch.zeros(num_edges, dtype=torch.bool)
            mask[e] = True
            copies.append(
                Data(
                    node_class=graph.node_class,
                    node_role=graph.node_role,
                    edge_index=graph.edge_index,
                    edge_attr=graph.edge_attr,
                    predicate_mask=mask,
                    num_nodes=graph.num_nodes,
                )
            )
    return copies


@torch.no_grad()
def masked_predicate_eval(
    aligner: GraphImageAligner, graphs: Sequence[Data], predicates: Sequence[str], *, batch_size: int = 256
) -> dict:
    """Hide each triple's predicate in turn and predict it from the rest of the graph.

    Returns:
        ``accuracy`` over all triples, ``accuracy_not_closeto`` over triples whose true predicate is not
        CloseTo, ``macro_recall`` over predicates present, ``per_predicate`` recall and ``triples``.
    """
    was_training = aligner.training
    aligner.eval()
    device = aligner.logit_scale.device
    predicted, target = [], []
    copies = one_masked_edge_copies(graphs)
    for start in range(0, len(copies), batch_size):
        batch = Batch.from_data_list(copies[start : start + batch_size]).to(device)
        predicted.append(aligner.predict_masked_predicates(batch, batch.predicate_mask).cpu())
        target.append(batch.edge_attr[batch.predicate_mask].cpu())
    aligner.train(was_training)
    return score_predicates(torch.cat(predicted), torch.cat(target), predicates)


def score_predicates(predicted: torch.Tensor, target: torch.Tensor, predicates: Sequence[str]) -> dict:
    """Accuracy, accuracy without CloseTo targets, and per-predicate / macro recall."""
    correct = predicted == target
    per = {}
    for i, name in enumerate(predicates):
        hit = target == i
        if hit.any():
            per[name] = float(correct[hit].float().mean())
    not_close = (
        target != list(predicates).index("CloseTo") if "CloseTo" in predicates else torch.ones_like(correct)
    )
    return {
        "accuracy": float(correct.float().mean()) if len(target) else 0.0,
        "accuracy_not_closeto": float(correct[not_close].float().mean()) if not_close.any() else 0.0,
        "macro_recall": sum(per.values()) / len(per) if per else 0.0,
        "per_predicate": per,
        "triples": int(len(target)),
    }
