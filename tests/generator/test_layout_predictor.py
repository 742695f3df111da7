"""The graph-to-layout predictor: shapes, box validity, label-map composition, save/load, vocabulary checks."""

from __future__ import annotations

from dataclasses import asdict

import pytest
import torch
from torch_geometric.data import Batch

from or_synth.encoders import GraphEncoderConfig, build_scene_graph_encoder
from or_synth.generator.layout_predictor import (
    LayoutPrediction,
    LayoutPredictor,
    check_vocabulary,
    mask_decoder,
    paste_masks,
)
from tests.helpers import knee_graphs, tiny_clip_cfg

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def encoder():
    torch.manual_seed(0)
    return build_scene_graph_encoder(tiny_clip_cfg(None))


@pytest.fixture(scope="module")
def predictor(encoder) -> LayoutPredictor:
    torch.manual_seed(0)
    return LayoutPredictor.from_encoder(encoder, mask_size=8, hidden=32, mask_channels=8).eval()


def test_shapes_and_valid_boxes(predictor, encoder):
    graphs = knee_graphs()
    batch = Batch.from_data_list(graphs)
    prediction = predictor(batch, torch.tensor([1, 2, 5, 6]))
    n = batch.num_nodes
    assert prediction.boxes.shape == (n, 4) and prediction.mask_logits.shape == (n, 8, 8)
    assert prediction.visibility_logits.shape == (n,)
    assert prediction.node_batch.tolist() == batch.batch.tolist()
    boxes = prediction.boxes
    assert ((boxes >= 0) & (boxes <= 1)).all()
    assert (boxes[:, 2] >= boxes[:, 0]).all() and (boxes[:, 3] >= boxes[:, 1]).all()
    maps = predictor.label_maps(graphs, [1, 2, 5, 6], (12, 20))
    assert maps.shape == (4, 12, 20) and maps.dtype == torch.uint8
    for graph, labels in zip(graphs, maps, strict=True):
        assert int(labels.max()) <= graph.num_nodes  # node index + 1, or 0
    # The encoder's weights were copied; the heads are new.
    assert torch.equal(predictor.encoder.node_text, encoder.node_text)
    with pytest.raises(ValueError, match=r"camera ids in 1..6"):
        predictor(graphs[:1], [7])


def test_composition_puts_each_node_in_its_box():
    """Full masks: a node's pixels are exactly the pixels whose centres lie in its box; overlaps go to the
    node with the higher mask value; an invisible node and a weak mask draw nothing."""
    predictor = LayoutPredictor(asdict(_config()), mask_size=16, hidden=8, mask_channels=8)
    boxes = torch.tensor(
        [
            [0.25, 0.5, 0.75, 1.0],  # graph 0, node 0
            [0.0, 0.0, 0.5, 0.6],  # graph 0, node 1: overlaps node 0, weaker mask
            [0.0, 0.0, 1.0, 1.0],  # graph 0, node 2: invisible
            [0.5, 0.0, 1.0, 0.5],  # graph 1, node 0: mask below the threshold
            [0.0, 0.5, 0.5, 1.0],  # graph 1, node 1
        ]
    )
    logits = torch.tensor([8.0, 4.0, 8.0, -2.0, 8.0])[:, None, None].expand(5, 16, 16)
    prediction = LayoutPrediction(
        boxes=boxes,
        mask_logits=logits,
        visibility_logits=torch.tensor([5.0, 5.0, -5.0, 5.0, 5.0]),
        node_batch=torch.tensor([0, 0, 0, 1, 1]),
    )
    maps = predictor.compose(prediction, (10, 20))
    expected = torch.zeros(2, 10, 20, dtype=torch.uint8)
    expected[0, 0:6, 0:10] = 2  # pixel centres (i + 0.5) / W inside [x0, x1)
    expected[0, 5:10, 5:15] = 1  # node 0 wins where they overlap
    expected[1, 5:10, 0:10] = 2
    assert torch.equal(maps, expected)
    # paste_masks is the spatial transformer alone: zero outside the box, the mask inside.
    pasted = paste_masks(torch.ones(1, 16, 16), boxes[:1], 10, 20)
    assert torch.equal(pasted[0] > 0.5, expected[0] == 1)


def test_save_load_round_trip(predictor, tmp_path):
    predictor.save_pretrained(tmp_path / "predictor")
    files = sorted(p.name for p in (tmp_path / "predictor").iterdir())
    assert files == ["config.json", "diffusion_pytorch_model.safetensors"]
    loaded = LayoutPredictor.from_pretrained(tmp_path / "predictor").eval()
    assert loaded.config.mask_size == 8 and loaded.vocabulary() == predictor.vocabulary()
    graphs, views = knee_graphs(), [3, 3, 4, 1]
    a, b = predictor(graphs, views), loaded(graphs, views)
    assert torch.equal(a.boxes, b.boxes) and torch.equal(a.mask_logits, b.mask_logits)
    size = (16, 16)
    assert torch.equal(predictor.label_maps(graphs, views, size), loaded.label_maps(graphs, views, size))


def test_label_maps_do_not_depend_on_the_batch(predictor):
    graphs = knee_graphs()
    together = predictor.label_maps(graphs, [1, 2, 3, 4], (16, 16))
    alone = torch.cat(
        [predictor.label_maps([g], [v], (16, 16)) for g, v in zip(graphs, [1, 2, 3, 4], strict=True)]
    )
    assert torch.equal(together, alone)


def test_vocabulary_mismatch_is_named(predictor, encoder):
    check_vocabulary(predictor, encoder.config, "the pipeline")  # same labels: fine
    other = asdict(encoder.config)
    other["predicates"] = [*other["predicates"][:-1], "Juggling"]
    with pytest.raises(ValueError, match=r"different vocabulary than the pipeline: its predicates.*Juggling"):
        check_vocabulary(predictor, GraphEncoderConfig(**other), "the pipeline")


def test_mask_decoder_needs_a_power_of_two():
    assert mask_decoder(16, 8, 16)(torch.zeros(3, 16)).shape == (3, 1, 16, 16)
    with pytest.raises(ValueError, match="power of two"):
        mask_decoder(16, 8, 12)


def _config() -> GraphEncoderConfig:
    """A small encoder config (label tables are zeros: composition does not use the encoder)."""
    return GraphEncoderConfig(
        text_dim=8,
        node_labels=["Patient"],
        predicates=["CloseTo"],
        object_classes=["Patient"],
        roles=["Patient"],
        dim=8,
        hidden=8,
        layers=1,
    )
