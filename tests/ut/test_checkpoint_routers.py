"""What the MoE routers decide, recorded while a model runs (vllm_sm7x.checkpoints.routers): the
k-th expert's weight and the k-th/(k+1)-th gap the end-to-end tests use to tell a router near-tie
from a wrong token."""
import pytest
import torch

from vllm_sm7x.checkpoints import GAP_PROMPTS, make_checkpoint
from vllm_sm7x.checkpoints.reference import float_reference_model, router_near_ties
from vllm_sm7x.checkpoints.routers import kth_expert_weights, relative_topk_gaps


def test_kth_weight_and_gap_of_hand_made_router_logits():
    logits = torch.tensor([[2.0, 1.0, 0.9, -1.0], [0.0, 0.0, 0.0, 0.0]])
    records = [(2, logits)]
    probabilities = logits[0].softmax(-1)
    assert kth_expert_weights(records)[0] == pytest.approx(float(probabilities[1] / probabilities[:2].sum()))
    assert kth_expert_weights(records)[1] == pytest.approx(0.5)  # a flat router: two equal shares
    gaps = relative_topk_gaps(records)
    assert gaps.shape == (1, 2)
    assert gaps[0, 0] == pytest.approx(0.1 / float(logits[0].std()))
    assert gaps[0, 1] == 0  # a full tie


@pytest.fixture(scope="module")
def moe_reference(tmp_path_factory):
    return float_reference_model(make_checkpoint("qwen36-35b-a3b-tiny", tmp_path_factory.mktemp("moe"), seed=0,
                                                 device="cpu", quantization=None))


def test_router_near_ties_count_positions_of_the_continuation(moe_reference):
    prompt, tokens = GAP_PROMPTS[0], [7, 8, 9, 10, 11, 12]
    assert router_near_ties(moe_reference, prompt, tokens, relative_gap=0.0) == set()
    assert router_near_ties(moe_reference, prompt, tokens, relative_gap=1e9) == set(range(len(tokens)))
    some = router_near_ties(moe_reference, prompt, tokens, relative_gap=0.3)
    assert some <= set(range(len(tokens)))


def test_a_model_without_routers_has_no_router_ties(tmp_path):
    dense = float_reference_model(make_checkpoint("qwen3-tiny", tmp_path, seed=0, device="cpu", quantization=None))
    assert router_near_ties(dense, GAP_PROMPTS[0], [5, 6, 7], relative_gap=1e9) == set()
