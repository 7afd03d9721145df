"""Random Hugging Face PyTorch T5 models built from configs (no download): the parity reference."""

from __future__ import annotations

import numpy as np
import torch
import transformers

# Odd sizes on purpose: 3 heads, d_kv 16 (inner 48 != d_model 40), 2 encoder / 3 decoder layers.
ODD_SHAPE = dict(vocab_size=101, d_model=40, d_kv=16, num_heads=3, d_ff=56, num_layers=2,
                 num_decoder_layers=3, relative_attention_num_buckets=32,
                 relative_attention_max_distance=128, dropout_rate=0.0)


def build_t5(kind: str, seed: int = 0) -> transformers.T5ForConditionalGeneration:
  """kind: 't5_1_1' (gated-GELU, untied output layer) or 't5' (ReLU, tied + d_model**-0.5 scaling)."""
  torch.manual_seed(seed)
  if kind == "t5_1_1":
    config = transformers.T5Config(**ODD_SHAPE, feed_forward_proj="gated-gelu", tie_word_embeddings=False,
                                   scale_decoder_outputs=False, pad_token_id=0, eos_token_id=1,
                                   decoder_start_token_id=0)
  elif kind == "t5":
    config = transformers.T5Config(**ODD_SHAPE, feed_forward_proj="relu", tie_word_embeddings=True,
                                   scale_decoder_outputs=True, pad_token_id=0, eos_token_id=1,
                                   decoder_start_token_id=0)
  else:
    raise ValueError(kind)
  model = transformers.T5ForConditionalGeneration(config).eval()
  with torch.no_grad():
    # Random layer-norm scales and position biases, so a mix-up of them cannot go unnoticed.
    for name, param in model.named_parameters():
      if "layer_norm" in name:
        param.copy_(1.0 + 0.3 * torch.randn_like(param))
      if "relative_attention_bias" in name:
        param.copy_(torch.randn_like(param))
  if kind == "t5_1_1":
    # transformers 5 always ties T5's output layer: untie by hand to get a real T5 1.1.
    model.lm_head.weight = torch.nn.Parameter(torch.randn_like(model.shared.weight))
  return model


def hf_logits(model, encoder_input_tokens: np.ndarray, decoder_input_tokens: np.ndarray,
              decoder_target_tokens: np.ndarray) -> np.ndarray:
  """HF forward with the masks spot_jax derives (padding id 0)."""
  with torch.no_grad():
    out = model(input_ids=torch.tensor(encoder_input_tokens),
                attention_mask=torch.tensor(encoder_input_tokens > 0, dtype=torch.long),
                decoder_input_ids=torch.tensor(decoder_input_tokens),
                decoder_attention_mask=torch.tensor(decoder_target_tokens > 0, dtype=torch.long))
  return out.logits.numpy()


def padded_batch(vocab_size: int, seed: int = 0):
  """Encoder/decoder batches with padding in both, targets shifted right as T5 does."""
  rng = np.random.default_rng(seed)
  enc_lens, dec_lens = [11, 7, 3, 11], [6, 2, 4, 5]
  enc = np.zeros((4, 11), np.int64)
  tgt = np.zeros((4, 6), np.int64)
  for i, (el, dl) in enumerate(zip(enc_lens, dec_lens)):
    enc[i, :el] = rng.integers(2, vocab_size, el)
    enc[i, el - 1] = 1  # EOS
    tgt[i, :dl] = rng.integers(2, vocab_size, dl)
    tgt[i, dl - 1] = 1
  dec_in = np.zeros_like(tgt)
  dec_in[:, 1:] = tgt[:, :-1]
  dec_in[tgt == 0] = 0
  return enc, dec_in, tgt
