"""Graph edits through the generator: the before image, the after image regenerated only where the edit acts
(latent inpainting with the same seed), and the edit mask.

With a layout (given or rendered) the edited region is every pixel of the changed nodes in the before or the
after label map, plus every pixel whose node differs between the two (node ids renumbered across the edit),
dilated by a few pixels; latent cells touching it are regenerated and the rest of the before latent is kept
(:meth:`ORScenePipeline.__call__`'s ``keep_latents`` / ``keep_mask``). Without a layout the whole image is
regenerated with the same seed. :func:`regenerate` also returns that full regeneration, which is what kept-region
similarity is measured against, and the null edit (the region re-inpainted under the unchanged graph).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from or_synth.data.edits import EditResult
from or_synth.data.scene_graph import record_to_data
from or_synth.data.vocabulary import Vocabulary
from or_synth.generator.pipeline import ORScenePipeline


def renumber_mask(mask: np.ndarray, result: EditResult) -> np.ndarray:
    """A before label map (node + 1, 0 room, 255 clutter) in the after graph's node numbering: a removed node's
    pixels become room, later nodes move up by one; other edits keep the numbering (added nodes come last)."""
    if result.edit.kind != "remove":
        return mask.copy()
    (removed,) = result.changed_nodes
    out = mask.astype(np.int32)
    node = out - 1
    out = np.where(node == removed, 0, np.where((node > removed) & (out != 255), out - 1, out))
    return out.astype(mask.dtype)


def edit_region(
    before_mask: np.ndarray, after_mask: np.ndarray, result: EditResult, dilation: int = 2
) -> np.ndarray:
    """(H, W) bool: where the edit may change the image (see the module docstring)."""
    before_nodes = np.isin(before_mask.astype(np.int32) - 1, list(result.changed_nodes))
    added = range(result.before.num_nodes - (result.edit.kind == "remove"), result.after.num_nodes)
    after_changed = set(result.changed_nodes) if result.edit.kind != "remove" else set()
    after_nodes = np.isin(after_mask.astype(np.int32) - 1, [*after_changed, *added])
    moved = renumber_mask(before_mask, result) != after_mask
    region = torch.from_numpy(before_nodes | after_nodes | moved).float()[None, None]
    if dilation > 0:
        region = F.max_pool2d(region, 2 * dilation + 1, stride=1, padding=dilation)
    return region[0, 0].bool().numpy()


def keep_mask_for(region: torch.Tensor, latent_size: tuple[int, int]) -> torch.Tensor:
    """(B, H, W) bool edited pixels -> (B, 1, h, w) float, 1 on latent cells that no edited pixel touches."""
    touched = F.adaptive_max_pool2d(region.float()[:, None], latent_size)
    return 1.0 - touched


@dataclass
class EditImages:
    """``before`` and ``after`` (inpainted, or fully regenerated without a layout), ``full`` (the after graph
    regenerated everywhere with the same seed), each (3, H, W) float in [0, 1]; ``region`` (H, W) bool or None;
    ``null`` the null edit: the same region re-inpainted with the same seed under the UNCHANGED graph and layout
    (what inpainting alone changes, the control an edit's effect is read against; None without a region)."""

    before: torch.Tensor
    after: torch.Tensor
    full: torch.Tensor
    region: np.ndarray | None
    null: torch.Tensor | None = None


@torch.no_grad()
def regenerate(
    pipe: ORScenePipeline,
    result: EditResult,
    view: int,
    seed: int,
    *,
    before_mask: np.ndarray | None = None,
    after_mask: np.ndarray | None = None,
    dilation: int = 2,
    vocabulary: Vocabulary | None = None,
    **sampling,
) -> EditImages:
    """The before image and the edited one from the same seed (``sampling``: steps, guidance scales;
    ``vocabulary``: the label ids of the pipeline's graph encoder, default the standard 4D-OR ones)."""
    with_layout = before_mask is not None and after_mask is not None and pipe.has_layout_input
    graphs = [record_to_data(result.before, vocabulary), record_to_data(result.after, vocabulary)]

    def draw(graph, mask, output_type, **extra):
        return pipe(
            [graph],
            [view],
            masks=None if mask is None else torch.as_tensor(mask)[None],
            generator=torch.Generator().manual_seed(seed),
            output_type=output_type,
            **sampling,
            **extra,
        ).images

    before_latent = draw(graphs[0], before_mask if with_layout else None, "latent")
    before = _decode(pipe, before_latent)
    full = draw(graphs[1], after_mask if with_layout else None, "pt")[0]
    if not with_layout:
        return EditImages(before, full, full, None)
    region = edit_region(before_mask, after_mask, result, dilation)
    keep = keep_mask_for(torch.from_numpy(region)[None], pipe.latent_shape[1:])
    after = draw(graphs[1], after_mask, "pt", keep_latents=before_latent, keep_mask=keep)[0]
    null = draw(graphs[0], before_mask, "pt", keep_latents=before_latent, keep_mask=keep)[0]
    return EditImages(before, after, full, region, null)


def _decode(pipe: ORScenePipeline, latents: torch.Tensor) -> torch.Tensor:
    images = pipe.vae.decode(latents / pipe.vae.config.scaling_factor).sample
    return (images.float() / 2 + 0.5).clamp(0, 1)[0].cpu()


def kept_region_change(before: torch.Tensor, after: torch.Tensor, region: np.ndarray) -> dict[str, float]:
    """How much of the image OUTSIDE the edited region changed: pixel MSE and mean SSIM over kept pixels (MONAI's
    local SSIM map, 5 px Gaussian window; a window counts as kept when its centre pixel is)."""
    from monai.metrics.regression import compute_ssim_and_cs

    keep = torch.from_numpy(~region)
    if not keep.any():
        return {"kept_mse": float("nan"), "kept_ssim": float("nan"), "kept_fraction": 0.0}
    mse = float(((before - after) ** 2).mean(0)[keep].mean())
    k = 5
    ssim_map, _ = compute_ssim_and_cs(
        after[None].float(),
        before[None].float(),
        2,
        [k, k],
        [1.5, 1.5],
        data_range=1.0,
        kernel_type="gaussian",
    )
    centres = keep[k // 2 : keep.shape[0] - k // 2, k // 2 : keep.shape[1] - k // 2]
    ssim = float(ssim_map[0].mean(0)[centres].mean()) if centres.any() else float("nan")
    return {"kept_mse": mse, "kept_ssim": ssim, "kept_fraction": float(keep.float().mean())}
