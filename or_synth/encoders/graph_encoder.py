"""The scene-graph encoder: triplet message passing (SG2Im's GraphTripleConv) over label embeddings.

Input: a PyG ``Data``/``Batch`` from :func:`or_synth.data.record_to_data` (``node_class``, ``node_role``,
``edge_index`` (subject, object), ``edge_attr`` predicate ids) and a camera view per graph. Output
(:class:`GraphEncoding`): one token per node, one per triple, a pooled graph token, and the per-graph token
sequences (nodes then triples) padded to a common length with a mask, for cross-attention. A learned null
graph replaces dropped graphs for classifier-free guidance (``force_drop``, DiT's ``LabelEmbedder``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch_geometric.data import Data
from torch_geometric.nn import MessagePassing
from torch_geometric.utils import scatter, to_dense_batch

from or_synth.data.io import atomic_path

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


class GraphTripleConv(MessagePassing):
    """One round of triplet message passing (Johnson et al., SG2Im, CVPR 2018, §3 "Graph Convolution").

    Every triple (s, p, o) runs through a shared MLP that produces a new predicate vector and one candidate
    vector for each end; each node averages the candidates of all triples it takes part in (as subject or
    object) and a second MLP maps the average back to node width. Unlike SG2Im the updates are residual with
    LayerNorm, so a node with no edges keeps its own features instead of being zeroed.

    Args:
        dim: node / predicate width D.
        hidden: candidate width H.
        aggr: how a node pools its candidates (``mean`` as in SG2Im, or ``sum``/``max``).
    """

    def __init__(self, dim: int, hidden: int, aggr: str = "mean") -> None:
        super().__init__(aggr=aggr, flow="source_to_target")
        self.hidden = hidden
        self.triple_mlp = nn.Sequential(
            nn.Linear(3 * dim, hidden), nn.GELU(), nn.Linear(hidden, 2 * hidden + dim)
        )
        self.node_mlp = nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.node_norm = nn.LayerNorm(dim)
        self.predicate_norm = nn.LayerNorm(dim)

    def forward(
        self, x: torch.Tensor, edge_index: torch.Tensor, p: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Args: x (N, D) nodes, edge_index (2, E) subject -> object, p (E, D) predicates.

        Returns: updated ``(x, p)``, same shapes.
        """
        triple = self.edge_updater(edge_index, x=x, p=p)  # (E, 2H + D)
        new_s, new_p, new_o = triple.split([self.hidden, p.shape[-1], self.hidden], dim=-1)
        # Each triple sends one candidate to its subject and one to its object; propagate() averages them
        # per receiving node (target row of `both`; the source row only keeps the flow convention).
        s, o = edge_index
        both = torch.stack([torch.cat([o, s]), torch.cat([s, o])])
        pooled = self.propagate(both, candidate=torch.cat([new_s, new_o]), size=(x.shape[0], x.shape[0]))
        return self.node_norm(x + self.node_mlp(pooled)), self.predicate_norm(p + new_p)

    def edge_update(self, x_j: torch.Tensor, x_i: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        # source_to_target: x_j is the subject (edge_index[0]), x_i the object (edge_index[1]).
        return self.triple_mlp(torch.cat([x_j, p, x_i], dim=-1))

    def message(self, candidate: torch.Tensor) -> torch.Tensor:
        return candidate


@dataclass
class GraphEncoderConfig:
    """Everything needed to rebuild a :class:`SceneGraphEncoder` (stored as ``config.json``).

    Attributes:
        text_dim: width of the label embeddings.
        node_labels / predicates: names of the label-table rows (the checkpoint describes itself).
        object_classes / roles: the vocabulary the (class, role) -> node-label lookup was built from.
        text_model_id: text tower that embedded the labels.
        dim: token width D. hidden: triple-MLP width H. layers: GraphTripleConv rounds.
        aggr: node pooling in GraphTripleConv. num_views: camera ids 1..num_views (0 = no view).
        null_prob: classifier-free-guidance drop probability while training (0 disables random drops).
    """

    text_dim: int
    node_labels: list[str]
    predicates: list[str]
    object_classes: list[str]
    roles: list[str]
    text_model_id: str = ""
    dim: int = 256
    hidden: int = 512
    layers: int = 5
    aggr: str = "mean"
    num_views: int = 6
    null_prob: float = 0.1
    extra: dict = field(default_factory=dict)


@dataclass
class GraphEncoding:
    """The encoder's output for a batch of B graphs with N nodes and E triples in total.

    Attributes:
        node_tokens: (N, D). triple_tokens: (E, D), in ``edge_index`` order.
        graph_token: (B, D) pooled per graph (the null graph's token where dropped).
        tokens: (B, L, D) per graph its node tokens then its triple tokens, zero-padded; a dropped graph
            holds the learned null token at position 0 and nothing else.
        mask: (B, L) bool, True at real tokens.
        node_batch: (N,) graph of each node. triple_batch: (E,) graph of each triple.
        dropped: (B,) bool, which graphs were replaced by the null graph.
    """

    node_tokens: torch.Tensor
    triple_tokens: torch.Tensor
    graph_token: torch.Tensor
    tokens: torch.Tensor
    mask: torch.Tensor
    node_batch: torch.Tensor
    triple_batch: torch.Tensor
    dropped: torch.Tensor


class SceneGraphEncoder(nn.Module):
    """Scene graph (+ camera view) -> node, triple, graph and padded tokens.

    Args:
        config: sizes and label names.
        node_text: (num_node_labels, text_dim) frozen text embeddings of the node-label prompts.
        predicate_text: (num_predicates, text_dim) frozen text embeddings of the predicate prompts.
        label_lookup: (num_classes, num_roles) long, (class id, role id) -> node-label id, -1 invalid.
    """

    def __init__(
        self,
        config: GraphEncoderConfig,
        node_text: torch.Tensor,
        predicate_text: torch.Tensor,
        label_lookup: torch.Tensor,
    ) -> None:
        super().__init__()
        self.config = config
        d = config.dim
        # Frozen label tables are buffers: saved with the weights, never trained.
        self.register_buffer("node_text", node_text.float().clone())
        self.register_buffer("predicate_text", predicate_text.float().clone())
        self.register_buffer("label_lookup", label_lookup.long().clone())
        self.node_in = nn.Sequential(nn.Linear(config.text_dim, d), nn.LayerNorm(d))
        self.predicate_in = nn.Sequential(nn.Linear(config.text_dim, d), nn.LayerNorm(d))
        self.view_embedding = nn.Embedding(config.num_views + 1, d)  # row 0: no view given
        # Masked-graph modelling replaces a node / predicate input with these (SGDiff's masked pre-training).
        self.node_mask_token = nn.Parameter(torch.zeros(d))
        self.predicate_mask_token = nn.Parameter(torch.zeros(d))
        self.convs = nn.ModuleList(
            GraphTripleConv(d, config.hidden, config.aggr) for _ in range(config.layers)
        )
        self.triple_out = nn.Sequential(nn.Linear(3 * d, d), nn.GELU(), nn.Linear(d, d), nn.LayerNorm(d))
        self.graph_out = nn.Sequential(nn.Linear(3 * d, d), nn.GELU(), nn.Linear(d, d), nn.LayerNorm(d))
        # The learned null graph (classifier-free guidance): a pooled token and a one-token sequence.
        self.null_graph_token = nn.Parameter(torch.randn(d) * 0.02)
        self.null_token = nn.Parameter(torch.randn(d) * 0.02)

    @classmethod
    def from_config(cls, config: GraphEncoderConfig) -> SceneGraphEncoder:
        """An encoder with zero label tables of the config's shapes, for components that load saved weights
        (which fill the tables) or copy them from a built encoder."""
        return cls(
            config,
            torch.zeros(len(config.node_labels), config.text_dim),
            torch.zeros(len(config.predicates), config.text_dim),
            torch.zeros(len(config.object_classes), len(config.roles), dtype=torch.long),
        )

    @property
    def dim(self) -> int:
        return self.config.dim

    @property
    def num_node_labels(self) -> int:
        return int(self.node_text.shape[0])

    @property
    def num_predicates(self) -> int:
        return int(self.predicate_text.shape[0])

    # --- input checks -----------------------------------------------------------------------------------
    def node_labels_of(self, graph: Data) -> torch.Tensor:
        """(N,) node-label ids from ``node_class`` and ``node_role``.

        Raises:
            ValueError: naming the node when a class or role id is unknown or the pair is not a label.
        """
        classes, roles = graph.node_class, graph.node_role
        num_classes, num_roles = self.label_lookup.shape
        bad = (classes < 0) | (classes >= num_classes) | (roles < 0) | (roles >= num_roles)
        if bad.any():
            i = int(bad.nonzero()[0])
            raise ValueError(
                f"node {i}: unknown label (class id {int(classes[i])}, role id {int(roles[i])}); the encoder "
                f"knows {num_classes} classes {self.config.object_classes} and {num_roles} roles"
            )
        labels = self.label_lookup[classes, roles]
        if (labels < 0).any():
            i = int((labels < 0).nonzero()[0])
            raise ValueError(
                f"node {i}: class {self.config.object_classes[int(classes[i])]!r} with role "
                f"{self.config.roles[int(roles[i])]!r} is not a valid node label"
            )
        return labels

    def _check_edges(self, graph: Data, num_nodes: int) -> None:
        edge_index, edge_attr = graph.edge_index, graph.edge_attr
        if edge_index.dim() != 2 or edge_index.shape[0] != 2 or edge_attr.shape != (edge_index.shape[1],):
            raise ValueError(
                f"expected edge_index (2, E) and edge_attr (E,), got {tuple(edge_index.shape)} and "
                f"{tuple(edge_attr.shape)}"
            )
        bad = (edge_attr < 0) | (edge_attr >= self.num_predicates)
        if bad.any():
            e = int(bad.nonzero()[0])
            raise ValueError(
                f"edge {e}: unknown predicate id {int(edge_attr[e])}; the encoder knows "
                f"{self.num_predicates} predicates {self.config.predicates} (the 'none' label is no edge)"
            )
        if edge_index.numel() and (int(edge_index.min()) < 0 or int(edge_index.max()) >= num_nodes):
            raise ValueError(f"edge_index refers to a node outside 0..{num_nodes - 1}")

    # --- forward ----------------------------------------------------------------------------------------
    def forward(
        self,
        graph: Data,
        views: torch.Tensor | None = None,
        *,
        force_drop: torch.Tensor | bool | None = None,
        node_mask: torch.Tensor | None = None,
        predicate_mask: torch.Tensor | None = None,
    ) -> GraphEncoding:
        """Encode a graph or a PyG batch of graphs.

        Args:
            graph: ``Data`` or ``Batch`` with ``node_class``, ``node_role``, ``edge_index``, ``edge_attr``.
            views: (B,) camera ids 1..num_views, or 0 for "no view"; None means no view for every graph.
            force_drop: (B,) bool or a bool for all graphs: replace those graphs by the null graph. When
                None, graphs are dropped at random with ``config.null_prob`` in training mode only (DiT).
            node_mask: (N,) bool, nodes whose label is hidden behind the mask token (masked modelling).
            predicate_mask: (E,) bool, triples whose predicate is hidden behind the mask token.

        Raises:
            ValueError: an unknown label or predicate id, an edge to a missing node, a graph with no nodes,
                a view outside 0..num_views.
        """
        num_nodes = int(graph.node_class.shape[0])
        node_batch = getattr(graph, "batch", None)
        if node_batch is None:
            node_batch = torch.zeros(num_nodes, dtype=torch.long, device=graph.node_class.device)
        num_graphs = int(graph.num_graphs) if hasattr(graph, "num_graphs") else 1
        counts = torch.bincount(node_batch, minlength=num_graphs)
        if num_graphs == 0 or (counts == 0).any():
            raise ValueError(
                "a scene graph needs at least one node (for an unconditional pass use force_drop=True, "
                "which encodes the learned null graph)"
            )
        labels = self.node_labels_of(graph)
        self._check_edges(graph, num_nodes)
        device = self.node_text.device
        if views is None:
            views = torch.zeros(num_graphs, dtype=torch.long, device=device)
        views = torch.as_tensor(views, device=device).long().reshape(-1)
        if views.shape[0] != num_graphs or (views < 0).any() or (views > self.config.num_views).any():
            raise ValueError(
                f"views must be ({num_graphs},) camera ids in 1..{self.config.num_views} (0 = none), "
                f"got {views.tolist()}"
            )
        node_batch = node_batch.to(device)
        edge_index = graph.edge_index.to(device)

        x = self.node_in(self.node_text[labels.to(device)])  # (N, D)
        p = self.predicate_in(self.predicate_text[graph.edge_attr.to(device)])  # (E, D)
        if node_mask is not None:
            x = torch.where(node_mask.to(device).unsqueeze(-1), self.node_mask_token.to(x.dtype), x)
        if predicate_mask is not None:
            p = torch.where(predicate_mask.to(device).unsqueeze(-1), self.predicate_mask_token.to(p.dtype), p)
        view = self.view_embedding(views)  # (B, D)
        x = x + view[node_batch]
        for conv in self.convs:
            x, p = conv(x, edge_index, p)

        s, o = edge_index
        triple_batch = node_batch[s]
        node_tokens = x
        triple_tokens = self.triple_out(torch.cat([x[s], p, x[o]], dim=-1))  # (E, D)
        pooled_nodes = scatter(node_tokens, node_batch, 0, dim_size=num_graphs, reduce="mean")
        pooled_triples = scatter(triple_tokens, triple_batch, 0, dim_size=num_graphs, reduce="mean")
        graph_token = self.graph_out(torch.cat([pooled_nodes, pooled_triples, view], dim=-1))  # (B, D)

        # Padded sequences: graph b's node tokens then its triple tokens (stable sort keeps that order).
        all_tokens = torch.cat([node_tokens, triple_tokens])
        all_batch = torch.cat([node_batch, triple_batch])
        order = torch.sort(all_batch, stable=True).indices
        tokens, mask = to_dense_batch(all_tokens[order], all_batch[order], batch_size=num_graphs)

        dropped = self._drop_ids(num_graphs, force_drop, device)
        if dropped.any():
            graph_token = torch.where(
                dropped.unsqueeze(-1), self.null_graph_token.to(graph_token.dtype), graph_token
            )
            null_row = torch.zeros_like(tokens[0])
            null_row[0] = self.null_token.to(tokens.dtype)
            null_mask = torch.zeros_like(mask[0])
            null_mask[0] = True
            tokens = torch.where(dropped[:, None, None], null_row, tokens)
            mask = torch.where(dropped[:, None], null_mask, mask)
        return GraphEncoding(
            node_tokens, triple_tokens, graph_token, tokens, mask, node_batch, triple_batch, dropped
        )

    def _drop_ids(self, num_graphs: int, force_drop, device) -> torch.Tensor:
        """Which graphs become the null graph (DiT ``LabelEmbedder.token_drop``)."""
        if force_drop is None:
            if self.training and self.config.null_prob > 0:
                return torch.rand(num_graphs, device=device) < self.config.null_prob
            return torch.zeros(num_graphs, dtype=torch.bool, device=device)
        drop = torch.as_tensor(force_drop, device=device).bool()
        return drop.expand(num_graphs).clone() if drop.dim() == 0 else drop.reshape(num_graphs)

    # --- self-describing checkpoints --------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path) -> Path:
        """Write ``config.json`` + ``model.safetensors`` (label tables included) atomically into ``directory``.

        The generator loads it with :meth:`from_pretrained`; no training script or text tower needed.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        # Weights are replaced first, then the config (the inner context exits first).
        with atomic_path(directory / CONFIG_NAME) as tmp_config, atomic_path(directory / WEIGHTS_NAME) as tmp:
            save_file(state, str(tmp), metadata={"format": "pt", "class": type(self).__name__})
            tmp_config.write_text(json.dumps({"class": type(self).__name__, **asdict(self.config)}, indent=2))
        return directory

    @classmethod
    def from_pretrained(
        cls, directory: str | Path, map_location: str | torch.device = "cpu"
    ) -> SceneGraphEncoder:
        """Rebuild an encoder written by :meth:`save_pretrained`."""
        directory = Path(directory)
        config_file, weights_file = directory / CONFIG_NAME, directory / WEIGHTS_NAME
        if not config_file.is_file() or not weights_file.is_file():
            raise FileNotFoundError(
                f"{directory} holds no encoder checkpoint ({CONFIG_NAME} + {WEIGHTS_NAME})"
            )
        raw = json.loads(config_file.read_text())
        raw.pop("class", None)
        config = GraphEncoderConfig(**raw)
        state = load_file(str(weights_file), device=str(map_location))
        model = cls(config, state["node_text"], state["predicate_text"], state["label_lookup"])
        model.load_state_dict(state)
        return model
