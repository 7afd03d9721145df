"""Mixed precision: bf16 activations, fp32 prompt and fp32 optimizer state, through the real trainer.

On TPU the frozen T5 runs its activations in bfloat16 (`T5Config.dtype`) while the trainable prompt,
its gradient and Adafactor's second moments must stay float32: a bf16 prompt would lose updates
smaller than 2^-8 of its entries. Two runs of `train.train` on the same data and initial prompt, one
fp32 and one bf16, must (1) keep every saved prompt / optimizer-state leaf float32 and (2) agree.

Tolerances. bfloat16 keeps 8 significant bits: one rounding is a relative error of at most
2^-8 ~ 3.9e-3. The tiny model rounds activations a few times per layer (2+2 layers) but normalises
them (RMSNorm in fp32) and computes softmax, logits and loss in fp32, so a step's loss may differ by
a few roundings: relative 2e-2 (about five bf16 ulps) at every step (measured: <= 4e-3 over 8 inits).

The learning rate is 0.03, a tenth of the paper's 0.3. Adafactor (no momentum, beta2 = 0 at step 1)
gives every prompt entry a step of about lr whatever the size of its gradient, so entries whose
gradient is within bf16 noise of zero step in a random direction. At lr 0.3 on this 32-wide model
each step moves every entry by ~ its initial size and those random steps compound: measured over 8
inits, bf16 and fp32 losses then drift apart by up to 4% after 5 steps and the prompts by up to 83%
of the distance travelled (rounding only the initial prompt to bf16, fp32 activations: 1-5%, once
23%). That is the optimizer amplifying gradient noise, not precision lost in the prompt, and
it would hide a real precision bug; at lr 0.03 the trajectory is smooth enough to compare. The final
prompts are compared by direction, since a few near-zero-gradient entries may still differ by ~2 lr:
cosine(p_bf16 - p_init, p_fp32 - p_init) >= 0.95 (measured >= 0.966 over 8 inits, 0.9994 for this one;
two unrelated 160-entry displacements have cosine ~ 0 +- 0.08).
"""

import os

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from spot_jax import train
from spot_jax.models import prompt as prompt_lib
from tests import train_fixtures as fx

STEPS = 5
LOSS_RTOL = 2e-2
LEARNING_RATE = 0.03
MIN_COSINE = 0.95


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """{'float32' | 'bfloat16': (TrainResult, saved state)} from the same frozen model, data and init."""
  model_cfg, frozen = fx.tiny_model()
  initial = np.asarray(prompt_lib.random_uniform()(jax.random.key(0), (5, model_cfg.d_model)))
  results = {}
  for dtype in ("float32", "bfloat16"):
    workdir = tmp_path_factory.mktemp(dtype)
    cfg = fx.small_config(num_train_steps=STEPS, prompt_length=initial.shape[0], learning_rate=LEARNING_RATE)
    result = train.train(cfg, str(workdir), model_config=model_cfg.replace(dtype=dtype), frozen_params=frozen,
                         train_iter=fx.ArrayIterator(cfg.batch_size), prompt_init=prompt_lib.from_array(initial),
                         verbose=False)
    # The trainer's final state as it saved it (restored without a target: the dtypes on disk).
    saved = ocp.StandardCheckpointer().restore(os.path.join(workdir, "checkpoints", str(STEPS), "state"))
    results[dtype] = (result, saved)
  return initial, results


def _losses(result: train.TrainResult) -> np.ndarray:
  return np.array([h["train/loss"] for h in result.train_history])


def test_prompt_and_optimizer_state_stay_float32_under_bf16_activations(runs):
  _, results = runs
  result, saved = results["bfloat16"]
  assert result.prompt.dtype == np.float32
  assert saved["trainable"].dtype == np.float32
  float_leaves = [x for x in jax.tree.leaves(saved["opt_state"]) if np.issubdtype(x.dtype, np.floating)]
  assert float_leaves, "expected Adafactor's second-moment leaves in the saved optimizer state"
  assert {str(x.dtype) for x in float_leaves} == {"float32"}
  assert any(x.shape == result.prompt.shape for x in float_leaves)  # the prompt's moment, full precision


def test_bf16_losses_match_fp32(runs):
  _, results = runs
  fp32, bf16 = _losses(results["float32"][0]), _losses(results["bfloat16"][0])
  assert len(fp32) == len(bf16) == STEPS
  assert not np.array_equal(fp32, bf16), "bf16 run gave bit-identical losses: activations were not bf16"
  np.testing.assert_allclose(bf16, fp32, rtol=LOSS_RTOL)


def test_bf16_final_prompt_close_to_fp32(runs):
  initial, results = runs
  moved_fp32 = results["float32"][0].prompt - initial
  moved_bf16 = results["bfloat16"][0].prompt - initial
  assert np.linalg.norm(moved_fp32) > 0 and np.linalg.norm(moved_bf16) > 0
  cosine = np.sum(moved_fp32 * moved_bf16) / (np.linalg.norm(moved_fp32) * np.linalg.norm(moved_bf16))
  assert cosine >= MIN_COSINE, cosine
