"""``ORScenePipeline``: scene graphs (+ camera views, + optional layouts) -> OR images.

A diffusers ``DiffusionPipeline`` with four components (``unet``, ``vae``, ``scheduler``, ``graph_encoder``),
saved as a folder with ``model_index.json`` and loaded with ``ORScenePipeline.from_pretrained(path)``, with no
training code. ``vae`` is diffusers' ``AutoencoderKL`` or the closed-form :class:`PatchPCACodec`; like
:class:`GraphConditioner`, the codec is a custom component that ``model_index.json`` records by its module
(``["or_synth.generator.codec", "PatchPCACodec"]``), which diffusers imports when loading. Sampling, export
and edits all call this one denoising loop.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    DDPMScheduler,
    DiffusionPipeline,
    DPMSolverMultistepScheduler,
    ImagePipelineOutput,
    UNet2DConditionModel,
)
from diffusers.utils.torch_utils import randn_tensor
from PIL import Image
from torch_geometric.data import Batch, Data

from or_synth.generator.autoencoder import downsampling_factor
from or_synth.generator.codec import PatchPCACodec
from or_synth.generator.conditioning import GraphConditioner
from or_synth.generator.denoiser import denoise

COMPONENTS = ("unet", "vae", "scheduler", "graph_encoder")


def make_scheduler(name: str, config) -> object:
    """A diffusers sampler built from the training scheduler's config: ``ddpm``, ``ddim``, ``dpmsolver++``."""
    if name == "ddpm":
        return DDPMScheduler.from_config(config)
    if name == "ddim":
        return DDIMScheduler.from_config(config)
    if name in ("dpmsolver++", "dpm-solver++", "dpmsolver"):
        return DPMSolverMultistepScheduler.from_config(config, algorithm_type="dpmsolver++", solver_order=2)
    raise ValueError(f"unknown sampler {name!r}; choose ddpm, ddim or dpmsolver++")


def pipeline_hash(path: str | Path) -> str:
    """Content hash of a saved pipeline folder (every file's relative path and bytes), 16 hex digits.

    A shipped folder's own ``shipped.json`` (what was shipped, with this very hash inside) is not part of the
    pipeline: the training run's folder and its shipped copy have one hash."""
    root = Path(path)
    digest = hashlib.sha256()
    files = (p for p in root.rglob("*") if p.is_file() and p.relative_to(root) != Path("shipped.json"))
    for file in sorted(files):
        digest.update(str(file.relative_to(root)).encode())
        with file.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:16]


def check_pipeline_folder(path: str | Path) -> None:
    """Raise a clear error when ``path`` is not a complete pipeline folder (before any model is loaded)."""
    root = Path(path)
    if not (root / "model_index.json").is_file():
        raise FileNotFoundError(f"{root} is not a pipeline folder: model_index.json is missing")
    missing = []
    for component in COMPONENTS:
        folder = root / component
        config = "scheduler_config.json" if component == "scheduler" else "config.json"
        if not (folder / config).is_file():
            missing.append(f"{component}/{config}")
        elif component != "scheduler" and not any(folder.glob("*.safetensors")):
            missing.append(f"{component}/*.safetensors")
    if missing:
        raise FileNotFoundError(f"pipeline folder {root} is incomplete: missing {', '.join(missing)}")


class ORScenePipeline(DiffusionPipeline):
    """Graph-conditioned latent diffusion for operating-room scenes.

    Args:
        unet: the denoiser (``UNet2DConditionModel`` with projection class embedding).
        vae: the first stage, ``AutoencoderKL`` or :class:`PatchPCACodec` (``config.scaling_factor``
            measured on the training data).
        scheduler: any diffusers scheduler (the training one is saved; swap with :func:`make_scheduler`).
        graph_encoder: :class:`GraphConditioner` (scene-graph encoder + layout map).
    """

    model_cpu_offload_seq = "graph_encoder->unet->vae"

    def __init__(
        self,
        unet: UNet2DConditionModel,
        vae: AutoencoderKL | PatchPCACodec,  # diffusers reads this hint to check the loaded component's class
        scheduler,
        graph_encoder: GraphConditioner,
    ) -> None:
        super().__init__()
        self.register_modules(unet=unet, vae=vae, scheduler=scheduler, graph_encoder=graph_encoder)

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        size = self.unet.config.sample_size
        h, w = (size, size) if isinstance(size, int) else tuple(size)
        return self.vae.config.latent_channels, h, w

    @property
    def image_size(self) -> tuple[int, int]:
        """(height, width) of the images this pipeline draws: the UNet's latent grid times the VAE's factor."""
        _, h, w = self.latent_shape
        factor = downsampling_factor(self.vae)
        return h * factor, w * factor

    @property
    def has_layout_input(self) -> bool:
        return self.graph_encoder.layout_channels > 0

    def _guided(self, latents, t, cond, uncond, graph_only, guidance_scale, layout_guidance_scale):
        """SpaText's multi-conditional guidance: eps = u + s_g (g - u) + s_l (gl - g)."""
        if uncond is None:  # guidance switched off: one conditional pass
            return denoise(self.unet, self.scheduler.scale_model_input(latents, t), t, cond)
        parts = [uncond, cond] if graph_only is None else [uncond, graph_only, cond]
        model_input = self.scheduler.scale_model_input(torch.cat([latents] * len(parts)), t)
        out = denoise(self.unet, model_input, t, parts[0].cat(*parts[1:])).chunk(len(parts))
        if graph_only is None:
            return out[0] + guidance_scale * (out[1] - out[0])
        return out[0] + guidance_scale * (out[1] - out[0]) + layout_guidance_scale * (out[2] - out[1])

    @torch.no_grad()
    def __call__(
        self,
        graphs: Sequence[Data] | Batch,
        views: Sequence[int] | torch.Tensor,
        *,
        masks: torch.Tensor | None = None,
        num_inference_steps: int = 20,
        guidance_scale: float = 3.0,
        layout_guidance_scale: float = 1.0,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        keep_latents: torch.Tensor | None = None,
        keep_mask: torch.Tensor | None = None,
        null_graph: bool = False,
        layout_graphs: Sequence[Data] | Batch | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
    ):
        """Generate one image per graph.

        Args:
            graphs: B scene graphs (PyG ``Data`` from :func:`or_synth.data.record_to_data`) or their batch.
            views: (B,) camera ids 1..6 the images are seen from.
            masks: (B, H, W) uint8 instance masks as the renderer writes them, for models with a layout input;
                None generates from the graph alone.
            num_inference_steps: sampler steps.
            guidance_scale: classifier-free guidance on the graph (1 = none).
            layout_guidance_scale: guidance on the layout on top of the graph (SpaText); used with ``masks``.
            generator: one generator, or one per image (per-image seeds: an image does not depend on its batch).
            latents: (B, C, h, w) starting noise instead of drawing it.
            keep_latents / keep_mask: latent inpainting for graph edits. ``keep_latents`` (B, C, h, w) are the
                final latents of an earlier image (``output_type="latent"``) and ``keep_mask`` (B, 1, h, w) is 1
                where that image is kept: after every step the kept cells are replaced by ``keep_latents`` noised
                to the next timestep with this call's starting noise (blended latent diffusion, as diffusers'
                inpainting pipeline does for a plain UNet), so only the rest is regenerated.
            null_graph: draw with the encoder's learned null graph in place of ``graphs`` (the layout, if any,
                kept): the control that says what the layout alone draws. Graph guidance then has nothing to
                amplify (conditional and unconditional graph are the same), so only layout guidance acts.
            layout_graphs: the graphs whose nodes ``masks`` label, when they differ from ``graphs`` (the
                conflict control: one scan's layout, another scan's graph).
            output_type: ``pil``, ``np`` (B, H, W, 3 float in [0, 1]), ``pt`` (B, 3, H, W in [0, 1]) or
                ``latent`` (the final latents, scaled as the denoiser sees them).

        Returns:
            ``ImagePipelineOutput(images=...)`` (or a tuple when ``return_dict=False``).
        """
        batch = graphs if isinstance(graphs, Batch) else Batch.from_data_list(list(graphs))
        size = batch.num_graphs
        device = self._execution_device
        views = torch.as_tensor(views, dtype=torch.long, device=device).reshape(-1)
        if views.shape[0] != size:
            raise ValueError(f"got {size} graphs but {views.shape[0]} views")
        if masks is not None and not self.has_layout_input:
            raise ValueError("this pipeline's denoiser has no layout input; call it without masks")
        channels, h, w = self.latent_shape
        if latents is None:
            latents = randn_tensor(
                (size, channels, h, w), generator=generator, device=device, dtype=self.unet.dtype
            )
        noise = latents.to(device)
        latents = noise * self.scheduler.init_noise_sigma
        if (keep_latents is None) != (keep_mask is None):
            raise ValueError("keep_latents and keep_mask go together")
        if keep_mask is not None:
            keep_mask = keep_mask.to(device=device, dtype=latents.dtype)
            keep_latents = keep_latents.to(device=device, dtype=latents.dtype)

        use_layout = masks is not None

        def encode(drop_graph: bool, drop_layout: bool):
            return self.graph_encoder(
                batch, views, masks=masks, latent_size=(h, w), drop_graph=drop_graph, drop_layout=drop_layout,
                layout_graphs=layout_graphs,
            )  # fmt: skip

        cond = encode(null_graph, not use_layout)
        guide = guidance_scale != 1.0 or (use_layout and layout_guidance_scale != 1.0)
        uncond = graph_only = None
        if null_graph and guide:  # conditional and unconditional graph agree: only the layout term remains
            guidance_scale = 1.0
            guide = use_layout and layout_guidance_scale != 1.0
        if guide:
            uncond = encode(True, True)
            if use_layout:
                graph_only = encode(null_graph, True)

        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = self.scheduler.timesteps
        for i, t in enumerate(self.progress_bar(timesteps)):
            prediction = self._guided(
                latents, t, cond, uncond, graph_only, guidance_scale, layout_guidance_scale
            )
            latents = self.scheduler.step(prediction, t, latents, generator=generator).prev_sample
            if keep_mask is not None:
                known = keep_latents
                if i + 1 < len(timesteps):
                    known = self.scheduler.add_noise(keep_latents, noise, timesteps[i + 1 : i + 2])
                latents = keep_mask * known + (1 - keep_mask) * latents

        if output_type == "latent":
            return ImagePipelineOutput(images=latents) if return_dict else (latents,)
        images = self.vae.decode(latents / self.vae.config.scaling_factor).sample
        images = (images.float() / 2 + 0.5).clamp(0, 1)
        if output_type == "pt":
            result = images.cpu()
        else:
            array = images.permute(0, 2, 3, 1).cpu().numpy()
            result = array if output_type == "np" else numpy_to_pil(array)
        if not return_dict:
            return (result,)
        return ImagePipelineOutput(images=result)


def numpy_to_pil(images: np.ndarray) -> list[Image.Image]:
    return [Image.fromarray((image * 255).round().astype(np.uint8)) for image in images]
