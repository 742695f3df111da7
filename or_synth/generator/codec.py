"""``PatchPCACodec``: a closed-form first stage beside the learned ``AutoencoderKL``, PCA of RGB patches.

Encoding projects every non-overlapping p x p patch (minus the mean patch) on the top k principal components
(a strided conv2d whose weights are the basis); decoding is the transposed conv (the basis is orthonormal, so
its transpose is the pseudo-inverse). Fitting is one covariance and one (C p^2)-sized symmetric eigenproblem:
about a second on two CPU cores, where a few CPU minutes of ``AutoencoderKL`` training blur away the relations
that graph consistency measures (``../shared/docs/cpu_budget.md``: 4x4 patches, 12 of 48 components, PSNR
34 dB, relation classifier unchanged). With ``whiten`` every latent channel has unit variance on the fitted
data, so the denoiser's noise is equally strong for every component instead of drowning the small ones.

The interface is ``AutoencoderKL``'s (``encode(x).latent_dist``, ``decode(z).sample``,
``config.latent_channels``, ``config.scaling_factor``; images in [-1, 1]), so the pipeline, the latent cache
and stage ``ldm`` treat both alike.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from diffusers.models.autoencoders.vae import DecoderOutput, DiagonalGaussianDistribution
from diffusers.models.modeling_outputs import AutoencoderKLOutput

from or_synth.generator.pixels import to_model_range


class PatchPCACodec(ModelMixin, ConfigMixin):
    """Linear codec of image patches: PCA of p x p patches (p = ``patch_size``), k = ``latent_channels`` kept.

    Images (B, C, H, W) in [-1, 1] with H and W multiples of ``patch_size`` map to latents
    (B, latent_channels, H / patch_size, W / patch_size). Fit with :meth:`fit` (or load a fitted one with
    ``from_pretrained``) before use.

    Args:
        in_channels: image channels C.
        patch_size: p, also the downsampling factor.
        latent_channels: principal components kept, k <= C p^2.
        whiten: divide each component by its standard deviation (unit-variance latent channels).
        scaling_factor: multiplies latents before diffusion (1 / std of the latents, measured by stage vae).
        sample_size: image side the codec was fitted at (recorded by :meth:`fit`, informative only).
    """

    config_name = "config.json"

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        patch_size: int = 4,
        latent_channels: int = 12,
        whiten: bool = True,
        scaling_factor: float = 1.0,
        sample_size: int | list[int] | None = None,
    ) -> None:
        super().__init__()
        dim = in_channels * patch_size**2
        if not 0 < latent_channels <= dim:
            raise ValueError(
                f"latent_channels={latent_channels} must be between 1 and in_channels * patch_size^2 = {dim}"
            )
        # Zeros until fit() (or from_pretrained) fills them; total_variance > 0 marks a fitted codec.
        self.register_buffer("mean", torch.zeros(in_channels, patch_size, patch_size))  # the mean patch
        self.register_buffer("basis", torch.zeros(latent_channels, in_channels, patch_size, patch_size))
        self.register_buffer("variance", torch.zeros(latent_channels))  # per component, on the fitted patches
        self.register_buffer("total_variance", torch.zeros(()))  # of all C p^2 components

    @property
    def is_fitted(self) -> bool:
        return bool(self.total_variance > 0)

    @property
    def explained_variance(self) -> float:
        """Fraction of the patch variance the kept components carry (on the fitted data)."""
        self._check_fitted()
        return float(self.variance.sum() / self.total_variance)

    @torch.no_grad()
    def fit(
        self, images: torch.Tensor, max_patches: int | None = 262_144, seed: int = 0, batch_size: int = 256
    ) -> float:
        """Fit mean patch, basis and variances in closed form on uint8 ``images`` (M, C, H, W).

        Args:
            images: uint8 (M, C, H, W), H and W multiples of ``patch_size``.
            max_patches: patches used for the covariance, drawn at random (seeded), the same number per image;
                None: every patch.
            seed: seed of that draw.
            batch_size: images converted at a time (bounds the float copy in memory).

        Returns:
            The explained variance fraction of the kept components.
        """
        c, p, k = self.config.in_channels, self.config.patch_size, self.config.latent_channels
        if images.ndim != 4 or images.shape[1] != c:
            raise ValueError(f"expected images (M, {c}, H, W), got {tuple(images.shape)}")
        self._check_divisible(images.shape[-2:])
        count = images.shape[0]
        cells = (images.shape[-2] // p) * (images.shape[-1] // p)
        per_image = cells if max_patches is None else max(1, min(cells, max_patches // max(count, 1)))
        generator = torch.Generator().manual_seed(seed)
        dim = c * p * p
        # Sums of patches and of their outer products in float64: the covariance of many patches, one pass.
        total = torch.zeros(dim, dtype=torch.float64)
        moment = torch.zeros(dim, dim, dtype=torch.float64)
        n = 0
        for start in range(0, count, batch_size):
            x = to_model_range(images[start : start + batch_size].cpu())
            patches = _patches(x, p)  # (B, L, C p p)
            if per_image < cells:  # the same number of random patches from every image
                keep = torch.rand(patches.shape[0], cells, generator=generator).argsort(dim=1)[:, :per_image]
                patches = patches.gather(1, keep.unsqueeze(-1).expand(-1, -1, dim))
            patches = patches.reshape(-1, dim).double()  # (N, C p p)
            total += patches.sum(0)
            moment += patches.T @ patches
            n += patches.shape[0]
        mean = total / n
        covariance = moment / n - torch.outer(mean, mean)
        # No library PCA (sklearn, torch.pca_lowrank): the eigenvectors themselves become the conv weights.
        eigenvalues, eigenvectors = torch.linalg.eigh(covariance)  # ascending
        eigenvalues = eigenvalues.flip(0).clamp_min(0.0)
        eigenvectors = eigenvectors.flip(1)[:, :k].T  # (k, C p p), largest variance first
        if eigenvalues.sum() <= 1e-12:  # pixels in [-1, 1]: anything below is rounding
            raise ValueError("the images have no variance (all patches equal): nothing to fit")
        # An eigenvector's sign is arbitrary: make its largest entry positive (a refit gives the same basis).
        signs = eigenvectors.gather(1, eigenvectors.abs().argmax(1, keepdim=True)).sign()
        eigenvectors = eigenvectors * signs
        self.mean.copy_(mean.reshape(c, p, p))
        self.basis.copy_(eigenvectors.reshape(k, c, p, p))
        self.variance.copy_(eigenvalues[:k])
        self.total_variance.copy_(eigenvalues.sum())
        height, width = images.shape[-2:]
        self.register_to_config(sample_size=int(height) if height == width else [int(height), int(width)])
        return self.explained_variance

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise RuntimeError(
                "this PatchPCACodec was never fitted: call codec.fit(images) (stage=vae with "
                "autoencoder=pca_patch does) or load a fitted one with PatchPCACodec.from_pretrained(folder)"
            )

    def _check_divisible(self, size) -> None:
        p = self.config.patch_size
        if any(int(s) % p for s in size):
            raise ValueError(f"image size {tuple(int(s) for s in size)} is not a multiple of patch_size={p}")

    def _component_scale(self) -> torch.Tensor:
        """(k,) per-component standard deviation when whitening, else ones."""
        if not self.config.whiten:
            return torch.ones_like(self.variance)
        # A floor keeps components of (numerically) zero variance finite instead of dividing by zero.
        return self.variance.clamp_min(1e-12 * float(self.variance.max())).sqrt()

    def encode(self, x: torch.Tensor, return_dict: bool = True):
        """Images (B, C, H, W) in [-1, 1] -> deterministic latent distribution (B, k, H / p, W / p)."""
        self._check_fitted()
        self._check_divisible(x.shape[-2:])
        weight = (self.basis / self._component_scale().view(-1, 1, 1, 1)).to(x.dtype)
        bias = -(weight.flatten(1) @ self.mean.flatten().to(x.dtype))  # projects x - mean, patch by patch
        latents = F.conv2d(x, weight, bias, stride=self.config.patch_size)
        # AutoencoderKL's posterior type, deterministic: mode() = mean = sample(), std = 0.
        posterior = DiagonalGaussianDistribution(
            torch.cat([latents, torch.zeros_like(latents)], dim=1), deterministic=True
        )
        if not return_dict:
            return (posterior,)
        return AutoencoderKLOutput(latent_dist=posterior)

    def decode(self, z: torch.Tensor, return_dict: bool = True, generator=None):
        """Latents (B, k, h, w) -> images (B, C, h p, w p) in [-1, 1], not clamped (like AutoencoderKL)."""
        self._check_fitted()
        weight = (self.basis * self._component_scale().view(-1, 1, 1, 1)).to(z.dtype)
        images = F.conv_transpose2d(z, weight, stride=self.config.patch_size)
        images = images + self.mean.to(z.dtype).repeat(1, z.shape[-2], z.shape[-1])  # the mean patch, tiled
        if not return_dict:
            return (images,)
        return DecoderOutput(sample=images)

    def forward(
        self,
        sample: torch.Tensor,
        sample_posterior: bool = False,
        return_dict: bool = True,
        generator: torch.Generator | None = None,
    ):
        """Reconstruction of ``sample`` (a deterministic posterior: ``sample_posterior`` changes nothing)."""
        posterior = self.encode(sample).latent_dist
        latents = posterior.sample(generator) if sample_posterior else posterior.mode()
        return self.decode(latents, return_dict=return_dict)


def _patches(images: torch.Tensor, p: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, H/p * W/p, C p p): non-overlapping patches, each flattened channel-major like a
    conv weight (C, p, p). A reshape: ``F.unfold`` gives the same values about 100x slower on CPU."""
    b, c, h, w = images.shape
    blocks = images.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5)  # (B, h, w, C, p, p)
    return blocks.reshape(b, (h // p) * (w // p), c * p * p)
