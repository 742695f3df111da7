"""SceneGraphEncoder: invariances, batching, the null graph, bad input, checkpoints."""

from __future__ import annotations

import json

import pytest
import torch
from torch_geometric.data import Batch, Data

from or_synth.data import DatasetFormatError, Vocabulary, parse_scan
from or_synth.encoders import GraphTripleConv, SceneGraphEncoder
from tests.helpers import scan_entry

ATOL = 1e-5


def permute_graph(graph: Data, node_perm: torch.Tensor, edge_perm: torch.Tensor) -> Data:
    """Node i of the result is node node_perm[i] of graph; edges reordered by edge_perm."""
    inverse = torch.empty_like(node_perm)
    inverse[node_perm] = torch.arange(len(node_perm))
    return Data(
        node_class=graph.node_class[node_perm],
        node_role=graph.node_role[node_perm],
        edge_index=inverse[graph.edge_index][:, edge_perm],
        edge_attr=graph.edge_attr[edge_perm],
        num_nodes=graph.num_nodes,
    )


def test_node_permutation_leaves_pooled_embedding_unchanged(encoder, graphs):
    graph = graphs[3]  # 9 nodes, 10 triples
    generator = torch.Generator().manual_seed(0)
    for _ in range(3):
        node_perm = torch.randperm(graph.num_nodes, generator=generator)
        edge_perm = torch.randperm(graph.edge_attr.shape[0], generator=generator)
        permuted = permute_graph(graph, node_perm, edge_perm)
        with torch.no_grad():
            a = encoder(graph, torch.tensor([2]))
            b = encoder(permuted, torch.tensor([2]))
        torch.testing.assert_close(a.graph_token, b.graph_token, atol=ATOL, rtol=0)
        # Node and triple tokens are equivariant: they move with their node / edge.
        torch.testing.assert_close(a.node_tokens[node_perm], b.node_tokens, atol=ATOL, rtol=0)
        torch.testing.assert_close(a.triple_tokens[edge_perm], b.triple_tokens, atol=ATOL, rtol=0)


def test_real_graph_permutation_invariance(encoder, real_graphs):
    graph = max(real_graphs, key=lambda g: g.edge_attr.shape[0])
    node_perm = torch.randperm(graph.num_nodes, generator=torch.Generator().manual_seed(1))
    permuted = permute_graph(graph, node_perm, torch.arange(graph.edge_attr.shape[0]))
    with torch.no_grad():
        torch.testing.assert_close(
            encoder(graph).graph_token, encoder(permuted).graph_token, atol=ATOL, rtol=0
        )


def test_batched_equals_one_by_one(encoder, graphs):
    views = torch.tensor([1, 3, 0, 6])
    with torch.no_grad():
        batched = encoder(Batch.from_data_list(graphs), views)
        singles = [encoder(g, views[i : i + 1]) for i, g in enumerate(graphs)]
    lengths = [g.num_nodes + g.edge_attr.shape[0] for g in graphs]
    assert batched.tokens.shape == (4, max(lengths), encoder.dim)
    assert batched.mask.sum(1).tolist() == lengths
    for i, single in enumerate(singles):
        n = lengths[i]
        torch.testing.assert_close(batched.tokens[i, :n], single.tokens[0], atol=ATOL, rtol=0)
        assert batched.mask[i, :n].all() and not batched.mask[i, n:].any()
        assert (batched.tokens[i, n:] == 0).all()
        torch.testing.assert_close(batched.graph_token[i], single.graph_token[0], atol=ATOL, rtol=0)
        torch.testing.assert_close(
            batched.node_tokens[batched.node_batch == i], single.node_tokens, atol=ATOL, rtol=0
        )
        torch.testing.assert_close(
            batched.triple_tokens[batched.triple_batch == i], single.triple_tokens, atol=ATOL, rtol=0
        )


def test_sequence_is_nodes_then_triples(encoder, graphs):
    with torch.no_grad():
        out = encoder(graphs[0])
    n = graphs[0].num_nodes
    torch.testing.assert_close(out.tokens[0, :n], out.node_tokens)
    torch.testing.assert_close(out.tokens[0, n:], out.triple_tokens)


def test_camera_view_changes_the_graph_token(encoder, graphs):
    with torch.no_grad():
        tokens = [encoder(graphs[0], torch.tensor([v])).graph_token for v in range(7)]
    for a in range(7):
        for b in range(a + 1, 7):
            assert not torch.allclose(tokens[a], tokens[b], atol=1e-4)


def test_null_graph_with_force_drop(encoder, graphs):
    batch = Batch.from_data_list(graphs)
    with torch.no_grad():
        kept = encoder(batch)
        dropped = encoder(batch, force_drop=True)
        mixed = encoder(batch, force_drop=torch.tensor([False, True, False, True]))
    assert not kept.dropped.any() and dropped.dropped.all()
    for i in range(4):
        torch.testing.assert_close(dropped.graph_token[i], encoder.null_graph_token.detach())
        torch.testing.assert_close(dropped.tokens[i, 0], encoder.null_token.detach())
        assert dropped.mask[i].tolist() == [True] + [False] * (dropped.mask.shape[1] - 1)
    # Only the forced rows change, the others are the conditional encoding.
    torch.testing.assert_close(mixed.graph_token[[0, 2]], kept.graph_token[[0, 2]])
    torch.testing.assert_close(mixed.graph_token[[1, 3]], dropped.graph_token[[1, 3]])
    torch.testing.assert_close(mixed.tokens[[0, 2]], kept.tokens[[0, 2]])
    # The null graph is independent of the input graph: it gets a gradient of its own.
    encoder.zero_grad()
    encoder(batch, force_drop=True).graph_token.sum().backward()
    assert encoder.null_graph_token.grad is not None and encoder.node_in[0].weight.grad.abs().sum() == 0
    encoder.zero_grad()


def test_random_drop_only_in_training(encoder, graphs):
    batch = Batch.from_data_list(graphs)
    encoder.config.null_prob = 1.0
    try:
        encoder.train()
        assert encoder(batch).dropped.all()
        assert not encoder(batch, force_drop=False).dropped.any()  # an explicit switch wins (DiT)
        encoder.eval()
        assert not encoder(batch).dropped.any()
    finally:
        encoder.config.null_prob = 0.1
        encoder.eval()


def test_graph_without_edges(encoder, graphs):
    empty = graphs[1]
    assert empty.edge_attr.numel() == 0
    with torch.no_grad():
        out = encoder(empty, torch.tensor([4]))
    assert out.triple_tokens.shape == (0, encoder.dim)
    assert out.tokens.shape == (1, empty.num_nodes, encoder.dim) and out.mask.all()
    assert torch.isfinite(out.graph_token).all()


def test_node_without_edges(encoder, graphs):
    graph = graphs[2]  # instrument and secondary_table take part in no triple
    with torch.no_grad():
        out = encoder(graph)
        without = encoder(
            Data(
                node_class=graph.node_class[:2],
                node_role=graph.node_role[:2],
                edge_index=graph.edge_index,
                edge_attr=graph.edge_attr,
                num_nodes=2,
            )
        )
    assert torch.isfinite(out.node_tokens).all()
    assert out.mask.sum() == graph.num_nodes + graph.edge_attr.shape[0]
    # Isolated nodes keep a token and count in the pooled graph token...
    assert not torch.allclose(out.graph_token, without.graph_token, atol=1e-4)
    # ...but send nothing to the connected nodes: their tokens are as if the isolated ones were absent.
    torch.testing.assert_close(out.node_tokens[:2], without.node_tokens, atol=ATOL, rtol=0)


def test_graph_with_no_nodes_is_refused(encoder):
    empty = Data(
        node_class=torch.empty(0, dtype=torch.long),
        node_role=torch.empty(0, dtype=torch.long),
        edge_index=torch.empty(2, 0, dtype=torch.long),
        edge_attr=torch.empty(0, dtype=torch.long),
        num_nodes=0,
    )
    with pytest.raises(ValueError, match="at least one node.*force_drop"):
        encoder(empty)


def test_unknown_labels_are_refused(encoder, graphs):
    graph = graphs[0].clone()
    graph.node_class[2] = 99
    with pytest.raises(ValueError, match="node 2: unknown label"):
        encoder(graph)
    graph = graphs[0].clone()
    graph.edge_attr[1] = 14  # 'none' is the absence of an edge, not a predicate
    with pytest.raises(ValueError, match="edge 1: unknown predicate id 14"):
        encoder(graph)
    graph = graphs[0].clone()
    graph.node_role[1] = Vocabulary().role_id("not-a-person")  # node 1 is human_0
    with pytest.raises(ValueError, match="node 1: class 'human_0' with role 'not-a-person'"):
        encoder(graph)
    graph = graphs[0].clone()
    graph.edge_index[0, 0] = 50
    with pytest.raises(ValueError, match="outside"):
        encoder(graph)
    with pytest.raises(ValueError, match="views"):
        encoder(graphs[0], torch.tensor([7]))


def test_unknown_label_names_stop_at_the_data_layer():
    entry = scan_entry(1, "000000", ["Patient", "robot_arm"], [])
    with pytest.raises(DatasetFormatError, match="unknown object class 'robot_arm'"):
        parse_scan(entry, Vocabulary())


def test_save_and_load_round_trip(encoder, graphs, tmp_path):
    encoder.save_pretrained(tmp_path / "enc")
    config = json.loads((tmp_path / "enc" / "config.json").read_text())
    assert config["class"] == "SceneGraphEncoder" and "head-surgeon" in config["node_labels"]
    assert not list((tmp_path / "enc").glob("*.tmp"))
    loaded = SceneGraphEncoder.from_pretrained(tmp_path / "enc").eval()
    batch = Batch.from_data_list(graphs)
    with torch.no_grad():
        a, b = encoder(batch, torch.tensor([1, 2, 3, 4])), loaded(batch, torch.tensor([1, 2, 3, 4]))
    torch.testing.assert_close(a.tokens, b.tokens)
    torch.testing.assert_close(a.graph_token, b.graph_token)
    with pytest.raises(FileNotFoundError, match="no encoder checkpoint"):
        SceneGraphEncoder.from_pretrained(tmp_path / "missing")


def test_triple_conv_pools_onto_both_ends():
    torch.manual_seed(0)
    conv = GraphTripleConv(dim=8, hidden=16)
    x, p = torch.randn(3, 8), torch.randn(1, 8)
    new_x, new_p = conv(x, torch.tensor([[0], [1]]), p)
    # Subject and object change; node 2 takes part in no triple and only gets the residual MLP(0) shift.
    assert not torch.allclose(new_x[0], conv.node_norm(x[0] + conv.node_mlp(torch.zeros(16))))
    assert not torch.allclose(new_x[1], conv.node_norm(x[1] + conv.node_mlp(torch.zeros(16))))
    torch.testing.assert_close(new_x[2], conv.node_norm(x[2] + conv.node_mlp(torch.zeros(16))))
    assert new_p.shape == (1, 8)
