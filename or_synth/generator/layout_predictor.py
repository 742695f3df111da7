"""The graph-to-layout predictor: a box and a soft mask per node of a scene graph seen from one camera.

SG2Im's layout stage (Johnson et al., "Image Generation from Scene Graphs", CVPR 2018, §3 "Scene Layout"): the
scene-graph encoder's node tokens go through a box regression MLP and a mask regression network (a small
upsampling conv decoder to an M x M soft mask), and the masks are pasted into their boxes to compose a layout.
Here each node token is concatenated with a learned camera embedding first, because where a node appears depends
on the camera (4D-OR has six). A third head predicts whether the node is visible in that camera at all (the
renderer's annotations have no box for a node that is out of view or fully hidden): trained with BCE, and nodes
it calls invisible are not drawn.

The composed label map has the format of the pipeline's layout input (the renderer's ``instance_masks/``): uint8,
node index + 1, 0 background, so :class:`~or_synth.generator.ORScenePipeline` takes it unchanged. It saves and
loads like the other generator components (``save_pretrained`` / ``from_pretrained``: ``config.json`` +
safetensors weights), trained by ``python -m or_synth.train stage=layout``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn
from torch_geometric.data import Batch, Data
from torch_geometric.utils import to_dense_batch

from or_synth.encoders.graph_encoder import GraphEncoderConfig, SceneGraphEncoder

# Labels 1..254 are nodes; 255 is the renderer's clutter label and must never name a node.
MAX_NODES = 254
# Vocabulary fields that give graph ids their meaning: a predictor and a pipeline must agree on all of them.
VOCABULARY_FIELDS = ("object_classes", "roles", "predicates", "node_labels")


@dataclass
class LayoutPrediction:
    """The predictor's output for B (graph, camera) pairs with N nodes in total.

    Attributes:
        boxes: (N, 4) ``(x0, y0, x1, y1)`` normalised to [0, 1] by the image width / height, x0 <= x1, y0 <= y1.
        mask_logits: (N, M, M) mask logits in the box's own frame (row 0 = the box's top edge); None when
            the masks were not asked for (box evaluation skips the mask decoder, most of the compute).
        visibility_logits: (N,) logit that the node is visible in the camera.
        node_batch: (N,) which pair each node belongs to.
    """

    boxes: torch.Tensor
    mask_logits: torch.Tensor | None
    visibility_logits: torch.Tensor
    node_batch: torch.Tensor


def mask_decoder(in_channels: int, channels: int, mask_size: int) -> nn.Sequential:
    """SG2Im's mask regression network (``sg2im/model.py: _build_mask_net``): from a 1 x 1 feature map, upsample
    x2 + 3x3 conv until ``mask_size``, then a 1x1 conv to one logit per cell. GroupNorm instead of SG2Im's
    BatchNorm, so a node's mask does not depend on the other nodes in its batch (sampling is batch-independent)."""
    if mask_size < 2 or mask_size & (mask_size - 1):
        raise ValueError(f"mask_size must be a power of two >= 2, got {mask_size}")
    layers: list[nn.Module] = [nn.Unflatten(1, (in_channels, 1, 1))]
    width, size = in_channels, 1
    while size < mask_size:
        layers += [
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.GroupNorm(min(8, width), width),
            nn.Conv2d(width, channels, kernel_size=3, padding=1),
            nn.ReLU(),
        ]
        width, size = channels, size * 2
    layers.append(nn.Conv2d(channels, 1, kernel_size=1))
    return nn.Sequential(*layers)


def paste_masks(masks: torch.Tensor, boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Each (M, M) mask resampled into its box of an (H, W) image, zero outside (SG2Im's ``masks_to_layout``).

    A spatial transformer: ``affine_grid`` maps every output pixel centre to the box's frame ([-1, 1] across the
    box) and ``grid_sample`` reads the mask there (zeros outside, bilinear inside).

    Args:
        masks: (N, M, M) values in [0, 1]. boxes: (N, 4) normalised ``(x0, y0, x1, y1)``.

    Returns:
        (N, H, W).
    """
    x0, y0, x1, y1 = boxes.unbind(-1)
    w = (x1 - x0).clamp_min(1e-4)
    h = (y1 - y0).clamp_min(1e-4)
    # Output x_n in [-1, 1] is image x = (x_n + 1) / 2; the box frame's u_n = 2 (x - x0) / w - 1.
    zero = torch.zeros_like(w)
    theta = torch.stack(
        [
            torch.stack([1 / w, zero, (1 - 2 * x0) / w - 1], -1),
            torch.stack([zero, 1 / h, (1 - 2 * y0) / h - 1], -1),
        ],
        dim=1,
    )  # (N, 2, 3)
    grid = F.affine_grid(theta, [masks.shape[0], 1, height, width], align_corners=False)
    return F.grid_sample(masks[:, None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)[
        :, 0
    ]


class LayoutPredictor(ModelMixin, ConfigMixin):
    """Scene graph + camera -> a box, a soft mask and a visibility logit per node.

    Args:
        encoder_config: :class:`~or_synth.encoders.GraphEncoderConfig` as a dict (label names, sizes).
        mask_size: M, the side of each node's mask (a power of two; SG2Im uses 16).
        hidden: width of the box and visibility MLPs.
        mask_channels: channels of the mask decoder's convolutions.
        num_views: camera ids 1..num_views of the camera embedding.
        mask_threshold: a pixel belongs to its strongest node only when that mask value exceeds this.
        visibility_threshold: nodes below this visibility probability are not drawn.
    """

    config_name = "config.json"

    @register_to_config
    def __init__(
        self,
        encoder_config: dict,
        mask_size: int = 16,
        hidden: int = 256,
        mask_channels: int = 16,
        num_views: int = 6,
        mask_threshold: float = 0.5,
        visibility_threshold: float = 0.5,
    ) -> None:
        super().__init__()
        config = GraphEncoderConfig(**encoder_config)
        # Label tables are filled by the saved weights (or by from_encoder); their shapes come from the config.
        self.encoder = SceneGraphEncoder.from_config(config)
        d = config.dim
        self.camera_embedding = nn.Embedding(num_views + 1, d)  # row 0: no camera (unused by the heads)
        self.box_head = nn.Sequential(
            nn.Linear(2 * d, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, 4)
        )
        self.visibility_head = nn.Sequential(nn.Linear(2 * d, hidden), nn.GELU(), nn.Linear(hidden, 1))
        self.mask_head = mask_decoder(2 * d, mask_channels, mask_size)

    @classmethod
    def from_encoder(cls, encoder: SceneGraphEncoder, **kwargs) -> LayoutPredictor:
        """A predictor around an existing (e.g. ``align``-adapted) encoder, its weights copied; fresh heads."""
        predictor = cls(asdict(encoder.config), **kwargs)
        predictor.encoder.load_state_dict(encoder.state_dict())
        return predictor

    @property
    def mask_size(self) -> int:
        return self.config.mask_size

    def vocabulary(self) -> dict[str, list[str]]:
        """The label names graph ids refer to (:data:`VOCABULARY_FIELDS`)."""
        config = self.encoder.config
        return {key: list(getattr(config, key)) for key in VOCABULARY_FIELDS}

    def forward(
        self, graphs: Data | Batch | list[Data], views: torch.Tensor, *, with_masks: bool = True
    ) -> LayoutPrediction:
        """Predict every node's box, mask (unless ``with_masks=False``) and visibility for B graphs, each seen
        from ``views`` (B,) camera ids 1..6.

        Raises:
            ValueError: an unknown label or predicate, a camera outside 1..num_views, a graph with more than
                254 nodes (labels 1..254 are nodes, 255 is clutter).
        """
        if isinstance(graphs, list | tuple):
            graphs = Batch.from_data_list(list(graphs))
        elif not isinstance(graphs, Batch):
            graphs = Batch.from_data_list([graphs])
        device = self.camera_embedding.weight.device
        views = torch.as_tensor(views, device=device).long().reshape(-1)
        if views.shape[0] != graphs.num_graphs or (views < 1).any() or (views > self.config.num_views).any():
            raise ValueError(
                f"views must be ({graphs.num_graphs},) camera ids in 1..{self.config.num_views}, "
                f"got {views.tolist()}"
            )
        if int(torch.bincount(graphs.batch).max()) > MAX_NODES:
            raise ValueError(f"a layout holds at most {MAX_NODES} nodes per graph (labels 1..254)")
        # Node tokens are computed before the encoder's classifier-free-guidance drop, which they never see.
        encoding = self.encoder(graphs.to(device), views, force_drop=False)
        features = torch.cat([encoding.node_tokens, self.camera_embedding(views)[encoding.node_batch]], -1)
        raw = self.box_head(features)  # (N, 4)
        # x0, y0 in [0, 1]; x1 = x0 + (1 - x0) * s: always a valid box inside the image, differentiable.
        start = torch.sigmoid(raw[:, :2])
        end = start + (1 - start) * torch.sigmoid(raw[:, 2:])
        boxes = torch.stack([start[:, 0], start[:, 1], end[:, 0], end[:, 1]], -1)
        return LayoutPrediction(
            boxes=boxes,
            mask_logits=self.mask_head(features)[:, 0] if with_masks else None,
            visibility_logits=self.visibility_head(features)[:, 0],
            node_batch=encoding.node_batch,
        )

    def compose(
        self,
        prediction: LayoutPrediction,
        size: tuple[int, int],
        *,
        num_graphs: int | None = None,
        mask_threshold: float | None = None,
    ) -> torch.Tensor:
        """Label maps from a prediction: every visible node's mask pasted into its box (SG2Im's
        ``masks_to_layout``), each pixel given to the node with the highest mask value there when that value
        exceeds ``mask_threshold`` (default: the config's), 0 elsewhere.

        Returns:
            (B, H, W) uint8: node index (within its graph) + 1, 0 background.
        """
        if prediction.mask_logits is None:
            raise ValueError("composing a layout needs the masks: call the predictor with with_masks=True")
        height, width = (int(v) for v in size)
        threshold = self.config.mask_threshold if mask_threshold is None else float(mask_threshold)
        batch = prediction.node_batch
        num_graphs = int(batch.max()) + 1 if num_graphs is None else num_graphs
        pasted = paste_masks(torch.sigmoid(prediction.mask_logits), prediction.boxes, height, width)
        visible = torch.sigmoid(prediction.visibility_logits) >= self.config.visibility_threshold
        pasted = pasted * visible[:, None, None].to(pasted.dtype)
        dense, _ = to_dense_batch(pasted.flatten(1), batch, batch_size=num_graphs)  # (B, K, H*W), padding 0
        best, node = dense.max(dim=1)
        labels = torch.where(best > threshold, node + 1, torch.zeros_like(node))
        return labels.view(num_graphs, height, width).to(torch.uint8)

    @torch.no_grad()
    def label_maps(
        self, graphs: Data | Batch | list[Data], views: torch.Tensor, size: tuple[int, int]
    ) -> torch.Tensor:
        """(B, H, W) uint8 label maps of B (graph, camera) pairs, in the pipeline's layout format."""
        was_training = self.training
        self.eval()
        try:
            prediction = self(graphs, views)
            return self.compose(prediction, size, num_graphs=int(torch.as_tensor(views).numel())).cpu()
        finally:
            self.train(was_training)


def check_vocabulary(predictor: LayoutPredictor, encoder_config: GraphEncoderConfig, where: str) -> None:
    """Raise a ValueError naming the first field where the predictor's vocabulary differs from the graph
    encoder's (``where`` names that encoder, e.g. the pipeline folder): graph ids would mean other labels."""
    ours = predictor.vocabulary()
    for key in VOCABULARY_FIELDS:
        theirs = list(getattr(encoder_config, key))
        if ours[key] != theirs:
            missing = sorted(set(theirs) - set(ours[key]))
            extra = sorted(set(ours[key]) - set(theirs))
            detail = f"missing {missing}, extra {extra}" if missing or extra else "another order"
            raise ValueError(
                f"the layout predictor was trained with a different vocabulary than {where}: its {key} differ "
                f"({detail}); train the predictor on the same label set (stage=layout with the pipeline's "
                "dataset and encoder)"
            )
