"""Loading the frozen CLIP (open_clip) and data2vec (transformers) models behind the text and image towers.

One rule for every model: pretrained weights come from the hub (a tag or a model id) where the network
allows, or from a local path in the config. When they cannot be loaded, :class:`PretrainedWeightsError` says
which model failed and how to point the config at a local copy; nothing falls back to random weights. Random
initialisation happens only when the config asks for it (``pretrained: null`` / ``false``), which the tests
and the ``debug=smoke`` preset do with tiny architectures.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

CHECKPOINT_SUFFIXES = (".bin", ".pt", ".pth", ".safetensors", ".ckpt")


class PretrainedWeightsError(RuntimeError):
    """Pretrained weights were asked for and could not be loaded (no hub access, missing local file)."""


def looks_like_path(value: str) -> bool:
    """True for strings meant as a filesystem path rather than a hub tag / model id."""
    return (
        value.startswith(("/", "./", "../", "~"))
        or value.endswith(CHECKPOINT_SUFFIXES)
        or Path(value).expanduser().exists()
    )


def _file_fingerprint(path: Path) -> str:
    """Cheap identity of a local checkpoint (resolved path, size, mtime) for cache keys."""
    stat = path.stat()
    return f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"


def _spec_hash(spec: Any) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:12]


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Random init under a fixed seed, without disturbing the caller's RNG stream."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


# --- open_clip -----------------------------------------------------------------------------------------
def load_open_clip(
    model: str | None, pretrained: str | None, arch: Mapping | None = None, seed: int = 0
) -> tuple[nn.Module, str, dict]:
    """An open_clip ``CLIP`` model, its cache identity and its preprocessing config.

    Args:
        model: open_clip model name (``ViT-B-32``); ignored when ``arch`` is given.
        pretrained: an open_clip pretrained tag (``laion2b_s34b_b79k``, hub download), a local checkpoint
            file, or None for an explicit random initialisation.
        arch: a custom ``CLIP`` config ``{embed_dim, vision_cfg, text_cfg}`` (tiny models in tests);
            ``pretrained`` must then be None or a local file.
        seed: init seed when weights are random.

    Returns:
        ``(clip_model, model_id, preprocess)``; ``preprocess`` holds ``mean``, ``std`` (read from the
        model's pretrained config, open_clip's defaults otherwise).
    """
    import open_clip
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

    name = f"arch-{_spec_hash(dict(arch))}" if arch else model
    if not name:
        raise ValueError("open_clip tower: set encoder.towers.model (e.g. ViT-B-32) or encoder.towers.arch")
    how_to = (
        "Download the checkpoint on a machine with hub access (e.g. open_clip_pytorch_model.bin from the "
        "model's HuggingFace page) and set encoder.towers.pretrained=/path/to/that/file; "
        "encoder.towers.pretrained=null builds randomly initialised towers, for tests only."
    )
    preprocess = {"mean": tuple(OPENAI_DATASET_MEAN), "std": tuple(OPENAI_DATASET_STD)}
    local = pretrained is not None and looks_like_path(pretrained)
    if local:
        path = Path(pretrained).expanduser()
        if not path.is_file():
            raise PretrainedWeightsError(
                f"open_clip model {name!r}: local checkpoint {path} does not exist. {how_to}"
            )
    if arch:
        if pretrained is not None and not local:
            raise ValueError(
                f"encoder.towers.pretrained={pretrained!r} is a hub tag, which only applies to named "
                "open_clip models; with encoder.towers.arch give a local checkpoint file or null"
            )
        with seeded(seed):
            clip = open_clip.CLIP(**{k: dict(v) if isinstance(v, Mapping) else v for k, v in arch.items()})
        if local:
            try:
                open_clip.load_checkpoint(clip, str(path))
            except Exception as exc:  # noqa: BLE001 - any load failure gets the same actionable message
                raise PretrainedWeightsError(
                    f"open_clip model {name!r}: cannot load {path}: {exc}. {how_to}"
                ) from exc
    else:
        if pretrained is None:
            with seeded(seed):
                clip = open_clip.create_model(model, pretrained=None)
        else:
            tag_cfg = None if local else open_clip.get_pretrained_cfg(model, pretrained)
            if tag_cfg:
                preprocess = {"mean": tuple(tag_cfg["mean"]), "std": tuple(tag_cfg["std"])}
            try:
                clip = open_clip.create_model(
                    model, pretrained=str(path) if local else pretrained, require_pretrained=True
                )
            except Exception as exc:  # noqa: BLE001
                raise PretrainedWeightsError(
                    f"could not load pretrained weights for open_clip model {model!r} "
                    f"(pretrained={pretrained!r}): {exc}. {how_to}"
                ) from exc
    return clip.eval(), open_clip_model_id(model, pretrained, arch, seed), preprocess


def open_clip_model_id(model: str | None, pretrained: str | None, arch: Mapping | None, seed: int) -> str:
    """Identity of an open_clip model's weights, computed without loading it (label-cache key)."""
    name = f"arch-{_spec_hash(dict(arch))}" if arch else model
    if pretrained is None:
        weights = f"random-seed{seed}"
    elif looks_like_path(pretrained) and Path(pretrained).expanduser().is_file():
        weights = _file_fingerprint(Path(pretrained).expanduser())
    else:
        weights = pretrained
    return f"open_clip:{name}:{weights}"


# --- data2vec (transformers) ---------------------------------------------------------------------------
def _hf_how_to(kind: str, key: str) -> str:
    return (
        f"Download it on a machine with hub access (transformers `save_pretrained` / "
        f"`huggingface-cli download`) and set encoder.towers.{key}=/path/to/the/{kind}/folder "
        "(a folder with config.json and the weights; the text folder also holds the tokenizer)."
    )


def _from_pretrained(cls, name: str, kind: str, key: str):
    path = Path(name).expanduser()
    if looks_like_path(name) and not path.is_dir():
        raise PretrainedWeightsError(
            f"data2vec {kind} model: local folder {path} does not exist. {_hf_how_to(kind, key)}"
        )
    try:
        return cls.from_pretrained(str(path) if path.is_dir() else name)
    except Exception as exc:  # noqa: BLE001 - hub/offline/missing-file errors all get one message
        raise PretrainedWeightsError(
            f"could not load pretrained data2vec {kind} weights {name!r}: {exc}. {_hf_how_to(kind, key)}"
        ) from exc


def hf_model_id(name: str, pretrained: bool, arch: Mapping | None, seed: int) -> str:
    if not pretrained:
        return f"data2vec:arch-{_spec_hash(dict(arch or {}))}:random-seed{seed}"
    path = Path(name).expanduser()
    if path.is_dir():
        weights = sorted(p for p in path.iterdir() if p.suffix in CHECKPOINT_SUFFIXES)
        return f"data2vec:{path.resolve()}:" + ",".join(_file_fingerprint(p) for p in weights)
    return f"data2vec:{name}"


def build_prompt_tokenizer(texts: Sequence[str], save_dir: str | Path | None = None):
    """A word-level ``PreTrainedTokenizerFast`` over the words of ``texts``, built offline.

    Used for randomly initialised data2vec text towers (the real ones ship their BPE tokenizer). Saved with
    ``save_pretrained`` when ``save_dir`` is given, so it loads back like a hub tokenizer.
    """
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    special = ["<pad>", "<unk>", "<s>", "</s>", "<mask>"]
    tokenizer = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.train_from_iterator(list(texts), trainers.WordLevelTrainer(special_tokens=special))
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", 2), ("</s>", 3)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token="<pad>",
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        mask_token="<mask>",
    )
    if save_dir is not None:
        fast.save_pretrained(str(save_dir))
    return fast


def load_data2vec_text(
    name: str | None, pretrained: bool, arch: Mapping | None, seed: int, prompts: Sequence[str]
) -> tuple[nn.Module, Any, str]:
    """A ``Data2VecTextModel`` and its tokenizer: from the hub / a local folder, or random from ``arch``.

    A random tower gets a word-level tokenizer built from ``prompts`` (no download needed).
    """
    from transformers import AutoTokenizer, Data2VecTextConfig, Data2VecTextModel

    if pretrained:
        if not name:
            raise ValueError("data2vec text tower: set encoder.towers.text_model (hub id or local folder)")
        model = _from_pretrained(Data2VecTextModel, name, "text", "text_model")
        tokenizer = _from_pretrained(AutoTokenizer, name, "text", "text_model")
    else:
        if not arch:
            raise ValueError("encoder.towers.pretrained=false needs encoder.towers.text_arch (config kwargs)")
        tokenizer = build_prompt_tokenizer(prompts)
        config = Data2VecTextConfig(
            **{**dict(arch), "vocab_size": len(tokenizer), "pad_token_id": tokenizer.pad_token_id}
        )
        with seeded(seed):
            model = Data2VecTextModel(config, add_pooling_layer=False)
    return model.eval(), tokenizer, hf_model_id(name or "", pretrained, arch, seed)


def load_data2vec_vision(
    name: str | None, pretrained: bool, arch: Mapping | None, seed: int
) -> tuple[nn.Module, dict, str]:
    """A ``Data2VecVisionModel`` (with its mean pooler), its preprocessing and cache identity."""
    from transformers import Data2VecVisionConfig, Data2VecVisionModel

    preprocess = {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}  # BEiT/data2vec-vision processor default
    if pretrained:
        if not name:
            raise ValueError("data2vec image tower: set encoder.towers.vision_model (hub id or local folder)")
        model = _from_pretrained(Data2VecVisionModel, name, "vision", "vision_model")
        try:
            from transformers import AutoImageProcessor

            local = Path(name).expanduser()
            processor = AutoImageProcessor.from_pretrained(str(local) if local.is_dir() else name)
            preprocess = {"mean": tuple(processor.image_mean), "std": tuple(processor.image_std)}
        except Exception:  # noqa: BLE001 - a folder without a processor keeps the BEiT default
            pass
    else:
        if not arch:
            raise ValueError(
                "encoder.towers.pretrained=false needs encoder.towers.vision_arch (config kwargs)"
            )
        with seeded(seed):
            model = Data2VecVisionModel(Data2VecVisionConfig(**dict(arch)), add_pooling_layer=True)
    return model.eval(), preprocess, hf_model_id(name or "", pretrained, arch, seed)
