"""The latent diffusion generator: first stage (autoencoder or patch codec), graph conditioning, denoiser and its
training objective, the sampling pipeline, and the graph-to-layout predictor that gives graphs without a layout one.

Imports :mod:`or_synth.encoders` and :mod:`or_synth.data`; sampling, export and edits build on
:class:`ORScenePipeline`.
"""

from or_synth.generator import shipped
from or_synth.generator.autoencoder import (
    AutoencoderLoss,
    build_autoencoder,
    downsampling_factor,
    load_pretrained_autoencoder,
    measure_scaling_factor,
    psnr,
    reconstruct,
    weights_hash,
)
from or_synth.generator.codec import PatchPCACodec
from or_synth.generator.conditioning import Conditioning, GraphConditioner
from or_synth.generator.denoiser import GraphConditionedDenoiser, build_unet, denoise
from or_synth.generator.layout_predictor import LayoutPrediction, LayoutPredictor
from or_synth.generator.objective import diffusion_loss, min_snr_weights, training_target
from or_synth.generator.pipeline import (
    ORScenePipeline,
    check_pipeline_folder,
    make_scheduler,
    pipeline_hash,
)
from or_synth.generator.pixels import to_model_range, to_uint8

__all__ = [
    "AutoencoderLoss",
    "Conditioning",
    "GraphConditionedDenoiser",
    "GraphConditioner",
    "LayoutPrediction",
    "LayoutPredictor",
    "ORScenePipeline",
    "PatchPCACodec",
    "build_autoencoder",
    "build_unet",
    "check_pipeline_folder",
    "denoise",
    "diffusion_loss",
    "downsampling_factor",
    "load_pretrained_autoencoder",
    "make_scheduler",
    "measure_scaling_factor",
    "min_snr_weights",
    "pipeline_hash",
    "psnr",
    "reconstruct",
    "shipped",
    "to_model_range",
    "to_uint8",
    "training_target",
    "weights_hash",
]
