"""Prompts, text towers (open_clip / data2vec from local paths) and the on-disk label-embedding cache."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from or_synth.data import OBJECT_CLASSES, PREDICATES, Vocabulary
from or_synth.encoders import (
    LabelPrompts,
    build_label_embeddings,
    build_prompt_tokenizer,
    build_text_tower,
    embed_labels,
    node_label_lookup,
    text_tower_model_id,
)
from tests.helpers import TINY_CLIP, TINY_D2V_TEXT


def test_every_default_label_has_a_written_prompt(caplog):
    prompts = LabelPrompts.from_vocabulary(Vocabulary())
    assert "no written prompt" not in caplog.text
    assert prompts.predicates == PREDICATES and len(prompts.predicate_prompts) == 14
    assert "head-surgeon" in prompts.node_labels and "human_0" not in prompts.node_labels
    assert "not-a-person" not in prompts.node_labels
    assert len(set(prompts.texts)) == len(prompts.texts)
    assert "sterile gown" in prompts.node_prompts[prompts.node_labels.index("head-surgeon")]


def test_node_label_lookup_uses_roles_for_people_and_classes_for_objects():
    vocab = Vocabulary()
    prompts = LabelPrompts.from_vocabulary(vocab)
    table = node_label_lookup(vocab, prompts.node_labels)
    label = lambda c, r: prompts.node_labels[table[vocab.class_id(c), vocab.role_id(r)]]  # noqa: E731
    assert label("human_0", "head-surgeon") == label("human_3", "head-surgeon") == "head-surgeon"
    assert label("human_1", "unknown") == "unknown"
    assert label("Patient", "Patient") == "Patient"
    assert label("instrument_table", "not-a-person") == "instrument_table"
    assert table[vocab.class_id("human_0"), vocab.role_id("not-a-person")] == -1
    assert table.shape == (len(OBJECT_CLASSES), len(vocab.roles))


def test_custom_vocabulary_gets_generic_prompts(caplog):
    vocab = Vocabulary(object_classes=OBJECT_CLASSES + ("c_arm",))
    prompts = LabelPrompts.from_vocabulary(vocab)
    assert "c arm in an operating room" in prompts.node_prompts[-1]
    assert "no written prompt for c_arm" in caplog.text


def test_cache_miss_then_hit_keyed_by_model_and_prompts(tmp_path):
    towers = {"backend": "open_clip", "model": None, "pretrained": None, "arch": TINY_CLIP, "seed": 0}
    prompts = LabelPrompts.from_vocabulary()
    built = []

    def factory():
        built.append(1)
        return build_text_tower(towers)

    model_id = text_tower_model_id(towers)
    first = embed_labels(prompts, factory, model_id=model_id, cache_dir=tmp_path)
    assert not first.cache_hit and first.cache_file.is_file() and len(built) == 1
    assert first.node.shape == (len(prompts.node_labels), 32) and first.predicate.shape == (14, 32)
    second = embed_labels(prompts, factory, model_id=model_id, cache_dir=tmp_path)
    assert second.cache_hit and len(built) == 1  # a hit never builds the tower
    torch.testing.assert_close(first.node, second.node)

    edited = dataclasses.replace(prompts, predicate_prompts=("helping",) + prompts.predicate_prompts[1:])
    third = embed_labels(edited, factory, model_id=model_id, cache_dir=tmp_path)
    assert not third.cache_hit and third.cache_file != first.cache_file and len(built) == 2
    assert not torch.allclose(third.predicate[0], first.predicate[0])

    other_seed = {**towers, "seed": 1}
    fourth = embed_labels(
        prompts,
        lambda: build_text_tower(other_seed),
        model_id=text_tower_model_id(other_seed),
        cache_dir=tmp_path,
    )
    assert not fourth.cache_hit and fourth.cache_file != first.cache_file
    assert len(list(tmp_path.glob("*.safetensors"))) == 3 and not list(tmp_path.glob("*.tmp"))


def test_model_id_is_known_without_loading(tmp_path):
    towers = {"backend": "open_clip", "model": None, "pretrained": None, "arch": TINY_CLIP, "seed": 0}
    assert text_tower_model_id(towers) == build_text_tower(towers).model_id
    assert text_tower_model_id({"backend": "open_clip", "model": "ViT-B-32", "pretrained": "openai"}) == (
        "open_clip:ViT-B-32:openai"
    )


def test_open_clip_local_checkpoint(tmp_path):
    """A checkpoint file named in the config loads through the same path as the real models."""
    import open_clip

    towers = {"backend": "open_clip", "model": None, "pretrained": None, "arch": TINY_CLIP, "seed": 3}
    source = build_text_tower(towers)
    path = tmp_path / "tiny_clip.pt"
    torch.save(source.clip.state_dict(), path)
    loaded = build_text_tower({**towers, "seed": 0, "pretrained": str(path)})
    texts = ["a head surgeon", "drilling into the knee"]
    torch.testing.assert_close(loaded.encode(texts), source.encode(texts))
    assert str(path.resolve()) in loaded.model_id
    assert isinstance(loaded.clip, open_clip.CLIP)


def test_data2vec_text_tower_from_a_local_folder(tmp_path):
    from transformers import Data2VecTextConfig, Data2VecTextModel

    prompts = LabelPrompts.from_vocabulary()
    tokenizer = build_prompt_tokenizer(prompts.texts, tmp_path / "d2v")
    config = Data2VecTextConfig(
        **TINY_D2V_TEXT, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id
    )
    torch.manual_seed(0)
    Data2VecTextModel(config, add_pooling_layer=False).save_pretrained(tmp_path / "d2v")

    cfg = {
        "towers": {"backend": "data2vec", "text_model": str(tmp_path / "d2v"), "pretrained": True},
        "cache_dir": str(tmp_path / "cache"),
    }
    labels = build_label_embeddings(cfg)
    assert labels.node.shape == (len(prompts.node_labels), 32) and torch.isfinite(labels.node).all()
    assert labels.model_id.startswith(f"data2vec:{(tmp_path / 'd2v').resolve()}")
    # Different prompts give different embeddings (the tokenizer knows every prompt word).
    assert torch.cdist(labels.predicate, labels.predicate).fill_diagonal_(1).min() > 0
    assert build_label_embeddings(cfg).cache_hit


def test_random_data2vec_tower_builds_its_tokenizer_offline():
    towers = {"backend": "data2vec", "pretrained": False, "text_arch": TINY_D2V_TEXT, "seed": 0}
    tower = build_text_tower(towers, LabelPrompts.from_vocabulary().texts)
    assert tower.encode(["a head surgeon in a sterile gown"]).shape == (1, 32)


def test_unknown_backend():
    with pytest.raises(ValueError, match="unknown encoder.towers.backend 'bert'"):
        build_text_tower({"backend": "bert"})


# --- real pretrained label embeddings that install offline: all-MiniLM-L6-v2 (encoder.label_text=minilm) -----------
def minilm_cfg(cache_dir, label_text="minilm") -> dict:
    return {"towers": {"backend": "open_clip", "arch": TINY_CLIP, "pretrained": None}, "label_text": label_text,
            "cache_dir": str(cache_dir)}  # fmt: skip


def test_minilm_label_embeddings_are_real_pretrained_ones(tmp_path):
    """The packaged weights load offline through sentence-transformers: 384-d unit vectors in which the two
    surgeons' prompts lie closer together than a surgeon and a piece of furniture (random weights would not)."""
    labels = build_label_embeddings(minilm_cfg(tmp_path))
    assert labels.dim == 384 and labels.model_id.startswith("sentence_transformer:")
    assert torch.allclose(labels.node.norm(dim=-1), torch.ones(len(labels.node)), atol=1e-4)
    names = list(labels.prompts.node_labels)
    node = labels.node
    head, assistant, table = (
        node[names.index(n)] for n in ("head-surgeon", "assistant-surgeon", "instrument_table")
    )
    assert head @ assistant > head @ table + 0.1
    predicates = list(labels.prompts.predicates)
    drilling, sawing, lying = (
        labels.predicate[predicates.index(p)] for p in ("Drilling", "Sawing", "LyingOn")
    )
    assert drilling @ sawing > drilling @ lying
    again = build_label_embeddings(minilm_cfg(tmp_path))  # cached: the tower is not loaded again
    assert again.cache_hit and torch.equal(again.node, labels.node)


def test_minilm_weights_that_cannot_load_are_a_clear_error(tmp_path):
    from or_synth.encoders.towers import PretrainedWeightsError

    spec = {"backend": "sentence_transformer", "model": str(tmp_path / "no_such_model")}
    with pytest.raises(PretrainedWeightsError, match="no such sentence-transformers folder"):
        build_label_embeddings(minilm_cfg(tmp_path / "cache", spec))
    with pytest.raises(ValueError, match="encoder.label_text=glove"):
        build_label_embeddings(minilm_cfg(tmp_path / "cache", "glove"))
