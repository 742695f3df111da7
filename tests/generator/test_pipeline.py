"""ORScenePipeline and its components: conditioning, guidance, save/load, seeds, errors."""

from __future__ import annotations

import pytest
import torch

from or_synth.generator import ORScenePipeline, check_pipeline_folder, make_scheduler, pipeline_hash
from tests.helpers import tiny_pipeline


def _run(pipe, graphs, views, seeds, **kwargs):
    generators = [torch.Generator().manual_seed(s) for s in seeds]
    kwargs.setdefault("output_type", "pt")
    return pipe(graphs, views, num_inference_steps=3, generator=generators, **kwargs).images


def test_layout_map_fills_each_node_mask_with_its_embedding(graphs):
    conditioner = tiny_pipeline().graph_encoder.eval()
    masks = torch.zeros(1, 16, 16, dtype=torch.uint8)
    masks[0, :8, :8] = 1  # node 0 covers the top-left quarter
    masks[0, 8:, 8:] = 255  # clutter belongs to no node
    cond = conditioner(graphs[:1], torch.tensor([1]), masks=masks, latent_size=(4, 4))
    labels = conditioner.encoder.node_labels_of(graphs[0])
    expected = conditioner.layout_proj(conditioner.encoder.node_text[labels[0]])
    assert torch.allclose(cond.layout[0, :, 0, 0], expected, atol=1e-6)
    assert cond.layout[0, :, 3, 3].abs().max() == 0 and cond.layout[0, :, 0, 3].abs().max() == 0
    dropped = conditioner(graphs[:1], torch.tensor([1]), masks=masks, latent_size=(4, 4), drop_layout=True)
    assert dropped.layout.abs().max() == 0


def test_graph_and_view_enter_independently(graphs):
    conditioner = tiny_pipeline().graph_encoder.eval()
    views = torch.tensor([1, 2, 3, 4])
    full = conditioner(graphs, views, latent_size=(4, 4))
    null = conditioner(graphs, views, latent_size=(4, 4), drop_graph=True)
    d = conditioner.dim
    assert full.mask.sum(1).tolist() == [g.num_nodes + g.edge_index.shape[1] for g in graphs]
    assert null.mask.sum(1).tolist() == [1, 1, 1, 1]  # the learned null graph: one token
    assert torch.allclose(null.class_embedding[0, :d], null.class_embedding[1, :d])  # same null graph token
    assert not torch.allclose(null.class_embedding[0, d:], null.class_embedding[1, d:])  # views still differ


def test_pipeline_round_trip_seeds_and_batch_independence(graphs, tmp_path):
    pipe = tiny_pipeline()
    masks = torch.randint(0, 5, (4, 16, 16), dtype=torch.uint8)
    first = _run(pipe, graphs, [1, 2, 3, 4], [0, 1, 2, 3], masks=masks)
    assert first.shape == (4, 3, 16, 16) and first.min() >= 0 and first.max() <= 1
    assert torch.equal(
        first, _run(pipe, graphs, [1, 2, 3, 4], [0, 1, 2, 3], masks=masks)
    )  # same seed, same image
    alone = _run(pipe, graphs[2:3], [3], [2], masks=masks[2:3])
    assert torch.allclose(alone[0], first[2], atol=1e-5)  # an image does not depend on its batch
    assert not torch.allclose(first[0], _run(pipe, graphs[:1], [1], [9], masks=masks[:1])[0])

    pipe.save_pretrained(tmp_path / "pipe")
    check_pipeline_folder(tmp_path / "pipe")
    loaded = ORScenePipeline.from_pretrained(tmp_path / "pipe")
    assert torch.allclose(first, _run(loaded, graphs, [1, 2, 3, 4], [0, 1, 2, 3], masks=masks), atol=1e-5)
    assert len(pipeline_hash(tmp_path / "pipe")) == 16


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "dpmsolver++"])
def test_samplers_and_guidance_modes(graphs, sampler):
    pipe = tiny_pipeline()
    pipe.scheduler = make_scheduler(sampler, pipe.scheduler.config)
    no_guidance = _run(pipe, graphs[:2], [1, 2], [0, 1], guidance_scale=1.0)
    guided = _run(pipe, graphs[:2], [1, 2], [0, 1], guidance_scale=4.0)
    assert torch.isfinite(guided).all() and not torch.allclose(no_guidance, guided)


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "dpmsolver++"])
def test_latent_inpainting_keeps_the_masked_cells_and_regenerates_the_rest(graphs, sampler):
    """keep_mask 1: the cell ends exactly as keep_latents; 0: as a plain run with the same seed (graph edits)."""
    pipe = tiny_pipeline()
    pipe.scheduler = make_scheduler(sampler, pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    plain = _run(pipe, graphs[:2], [1, 2], [0, 1], output_type="latent")
    earlier = _run(pipe, graphs[1::-1], [1, 2], [5, 6], output_type="latent")  # another image to keep from
    keep = torch.zeros(2, 1, *plain.shape[-2:])
    keep[..., : plain.shape[-1] // 2] = 1  # keep the left half
    edited = _run(
        pipe, graphs[:2], [1, 2], [0, 1], output_type="latent", keep_latents=earlier, keep_mask=keep
    )
    left, right = slice(0, plain.shape[-1] // 2), slice(plain.shape[-1] // 2, None)
    assert torch.equal(edited[..., left], earlier[..., left])
    assert not torch.allclose(edited[..., right], earlier[..., right])
    nothing_kept = _run(pipe, graphs[:2], [1, 2], [0, 1], output_type="latent", keep_latents=earlier,
                        keep_mask=torch.zeros_like(keep))  # fmt: skip
    assert torch.allclose(nothing_kept, plain, atol=1e-6)
    with pytest.raises(ValueError, match="go together"):
        _run(pipe, graphs[:2], [1, 2], [0, 1], keep_mask=keep)


def test_bad_input_is_refused(graphs, tmp_path):
    pipe = tiny_pipeline(layout_channels=0)
    with pytest.raises(ValueError, match="no layout input"):
        _run(pipe, graphs[:1], [1], [0], masks=torch.zeros(1, 16, 16, dtype=torch.uint8))
    with pytest.raises(ValueError, match="2 graphs but 1 views"):
        _run(pipe, graphs[:2], [1], [0, 1])
    with pytest.raises(ValueError, match="views must be"):
        _run(pipe, graphs[:1], [7], [0])
    with pytest.raises(ValueError, match="unknown sampler"):
        make_scheduler("euler-magic", pipe.scheduler.config)
    pipe.save_pretrained(tmp_path / "pipe")
    (tmp_path / "pipe" / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"incomplete: missing unet/\*.safetensors"):
        check_pipeline_folder(tmp_path / "pipe")


def test_null_graph_control_draws_the_layout_alone(graphs):
    """null_graph=True: the graph tokens no longer matter, only the layout (read with its own scan's node labels)
    and the seed; and it is the conditional pass of the null graph (guidance on the graph has nothing to
    amplify)."""
    pipe = tiny_pipeline()
    masks = torch.randint(0, 5, (1, 16, 16), dtype=torch.uint8)
    a = _run(pipe, graphs[:1], [1], [7], masks=masks, null_graph=True, guidance_scale=3.0)
    b = _run(
        pipe,
        graphs[3:4],
        [1],
        [7],
        masks=masks,
        null_graph=True,
        guidance_scale=3.0,
        layout_graphs=graphs[:1],
    )
    assert torch.allclose(a, b, atol=1e-6)
    assert torch.allclose(
        a, _run(pipe, graphs[:1], [1], [7], masks=masks, null_graph=True, guidance_scale=1.0)
    )
    with_graph = _run(pipe, graphs[:1], [1], [7], masks=masks, guidance_scale=3.0)
    assert not torch.allclose(a, with_graph, atol=1e-4)
    other_layout = _run(pipe, graphs[:1], [1], [7], masks=torch.zeros_like(masks), null_graph=True)
    assert not torch.allclose(a, other_layout, atol=1e-4)


def test_conflict_control_keeps_one_scans_layout_under_another_scans_graph(graphs):
    """layout_graphs: the masks are read with their own scan's node labels, the tokens come from ``graphs``."""
    pipe = tiny_pipeline()
    conditioner = pipe.graph_encoder.eval()
    masks = torch.randint(0, 5, (1, 16, 16), dtype=torch.uint8)
    own = conditioner(graphs[:1], torch.tensor([1]), masks=masks, latent_size=(8, 8))
    conflict = conditioner(
        graphs[3:4], torch.tensor([1]), masks=masks, latent_size=(8, 8), layout_graphs=graphs[:1]
    )
    other = conditioner(graphs[3:4], torch.tensor([1]), masks=masks, latent_size=(8, 8))
    assert torch.equal(conflict.layout, own.layout) and not torch.equal(other.layout, own.layout)
    assert torch.equal(conflict.tokens, other.tokens)
    same = _run(pipe, graphs[:1], [1], [3], masks=masks, layout_graphs=graphs[:1])
    assert torch.equal(same, _run(pipe, graphs[:1], [1], [3], masks=masks))  # its own graph: the plain call
    with pytest.raises(ValueError, match="layout graphs"):
        conditioner(graphs[:2], torch.tensor([1, 2]), masks=masks.repeat(2, 1, 1), latent_size=(8, 8),
                    layout_graphs=graphs[:1])  # fmt: skip
