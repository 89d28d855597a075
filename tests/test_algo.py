"""Hand-computed checks of the ProRL objective (prorl.algo). Expected values are worked out in comments."""

import math

import pytest
import torch

from prorl import algo
from prorl.algo import aggregate_loss, group_advantages, kl_penalty, policy_loss


# ---------------------------------------------------------------- group_advantages

def test_group_advantages_hand_computed():
    # group 1: [1, 0, 0] mean 1/3; unbiased std = sqrt(((2/3)^2 + 2*(1/3)^2)/2) = sqrt(1/3) = 0.57735
    #   advantages: (2/3)/0.57735 = 1.1547, (-1/3)/0.57735 = -0.57735
    # group 2: [0.5, 1.0, 0.0] mean 0.5, std = sqrt((0 + 0.25 + 0.25)/2) = 0.5 -> [0, 1, -1]
    rewards = torch.tensor([1.0, 0.0, 0.0, 0.5, 1.0, 0.0])
    adv = group_advantages(rewards, 3, eps=0.0)
    expected = torch.tensor([1.1547005, -0.5773503, -0.5773503, 0.0, 1.0, -1.0])
    torch.testing.assert_close(adv, expected, rtol=1e-6, atol=1e-6)


def test_equal_rewards_in_a_group_give_zero_advantage():
    adv = group_advantages(torch.tensor([0.7, 0.7, 0.7, 0.7, 1.0, 0.0, 1.0, 0.0]), 4)
    assert torch.equal(adv[:4], torch.zeros(4))
    assert (adv[4:] != 0).all()


def test_dr_grpo_advantages_are_centred_not_scaled():
    adv = group_advantages(torch.tensor([1.0, 0.0, 0.0, 0.0]), 4, scale_by_std=False)
    torch.testing.assert_close(adv, torch.tensor([0.75, -0.25, -0.25, -0.25]), rtol=1e-6, atol=0)


def test_group_advantages_rejects_a_partial_group():
    with pytest.raises(ValueError, match="group_size=4"):
        group_advantages(torch.zeros(6), 4)


# ---------------------------------------------------------------- policy_loss

def test_policy_loss_hand_computed_with_decoupled_bounds():
    # ratios e^(lp - old): [1.5, 0.5, 1.1] ; advantages per sequence: +2 (row 0), -1 (row 1)
    ratio = torch.tensor([[1.5, 0.5, 1.1], [1.5, 0.5, 1.1]])
    logprobs = torch.log(ratio)
    old = torch.zeros(2, 3)
    adv = torch.tensor([2.0, -1.0])
    mask = torch.ones(2, 3)
    loss, m = policy_loss(logprobs, old, adv, mask, clip_low=0.2, clip_high=0.4)
    # row 0 (A=+2): min(1.5*2, 1.4*2)=2.8 ; min(0.5*2, 0.8*2)=1.0 ; min(2.2, 2.2)=2.2  -> negated
    # row 1 (A=-1): min(-1.5, -1.4)=-1.5 ; min(-0.5, -0.8)=-0.8 ; min(-1.1,-1.1)=-1.1 -> negated
    expected = torch.tensor([[-2.8, -1.0, -2.2], [1.5, 0.8, 1.1]])
    torch.testing.assert_close(loss, expected, rtol=1e-6, atol=1e-6)
    # clip-high binds once (row 0 token 0); clip-low binds once (row 1 token 1): each 1/6 of tokens
    assert math.isclose(float(m["clip_frac_high"]), 1 / 6, rel_tol=1e-6)
    assert math.isclose(float(m["clip_frac_low"]), 1 / 6, rel_tol=1e-6)


def test_clip_high_binds_only_for_positive_advantages():
    logprobs = torch.log(torch.tensor([[1.6], [1.6]]))  # ratio 1.6 > 1 + 0.4
    loss, m = policy_loss(logprobs, torch.zeros(2, 1), torch.tensor([1.0, -1.0]), torch.ones(2, 1))
    # A=+1: clipped to 1.4 ; A=-1: min(-1.6, -1.4) = -1.6, unclipped (pessimistic bound)
    torch.testing.assert_close(loss, torch.tensor([[-1.4], [1.6]]), rtol=1e-6, atol=1e-6)
    assert float(m["clip_frac_high"]) == 0.5  # only the positive-advantage token


def test_clipped_tokens_have_no_gradient_and_unclipped_do():
    logprobs = torch.log(torch.tensor([[1.6, 1.2]])).requires_grad_(True)
    loss, _ = policy_loss(logprobs, torch.zeros(1, 2), torch.tensor([1.0]), torch.ones(1, 2))
    loss.sum().backward()
    # d(-ratio*A)/d logprob = -ratio*A -> token 1: -1.2 ; token 0 clipped: 0
    torch.testing.assert_close(logprobs.grad, torch.tensor([[0.0, -1.2]]), rtol=1e-6, atol=1e-6)


def test_cispo_keeps_the_gradient_of_clipped_tokens_hand_computed():
    # ratios [1.6, 0.5], A = +1 and -1 rows; weight = sg(min(ratio, 1.4)) = [1.4, 0.5]
    ratio = torch.tensor([[1.6, 0.5], [1.6, 0.5]])
    logprobs = torch.log(ratio).requires_grad_(True)
    loss, m = policy_loss(logprobs, torch.zeros(2, 2), torch.tensor([1.0, -1.0]), torch.ones(2, 2), clip_low=0.2,
                          clip_high=0.4, kind="cispo")
    lp = torch.log(ratio)
    expected = torch.tensor([[-1.4, -0.5], [1.4, 0.5]]) * lp  # -w * A * logprob
    torch.testing.assert_close(loss.detach(), expected, rtol=1e-6, atol=1e-6)
    loss.sum().backward()
    # d/d logprob = -w * A: the clipped token (ratio 1.6) keeps gradient -1.4 where PPO gives it 0
    torch.testing.assert_close(logprobs.grad, torch.tensor([[-1.4, -0.5], [1.4, 0.5]]), rtol=1e-6, atol=1e-6)
    assert float(m["clip_frac_high"]) == 0.5 and float(m["clip_frac_low"]) == 0.0  # both ratio-1.6 tokens


def test_gspo_uses_one_length_normalised_ratio_per_sequence_hand_computed():
    # row 0: log-ratios [log 1.5, log 0.5], mean -0.1438 -> s = sqrt(0.75) = 0.8660, inside [0.8, 1.4]
    # row 1: log-ratios [log 2, log 2, (masked) log 9] -> s = 2 > 1.4 with A > 0: the whole sequence clipped
    logprobs = torch.log(torch.tensor([[1.5, 0.5, 1.0], [2.0, 2.0, 9.0]])).requires_grad_(True)
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0]])
    loss, m = policy_loss(logprobs, torch.zeros(2, 3), torch.tensor([1.0, 1.0]), mask, clip_low=0.2, clip_high=0.4,
                          kind="gspo")
    s0 = math.sqrt(0.75)
    torch.testing.assert_close(loss.detach(), torch.tensor([[-s0, -s0, 0.0], [-1.4, -1.4, 0.0]]), rtol=1e-6,
                               atol=1e-6)
    loss.sum().backward()
    # token form: each token's gradient is -s_i * A through its own log-prob; a clipped sequence gets none
    torch.testing.assert_close(logprobs.grad, torch.tensor([[-s0, -s0, 0.0], [0.0, 0.0, 0.0]]), rtol=1e-6,
                               atol=1e-6)
    assert float(m["clip_frac_high"]) == 0.5 and math.isclose(float(m["ratio_mean"]), (2 * s0 + 4) / 4, rel_tol=1e-6)


def test_gspo_gradient_is_the_sequence_objectives():
    """With seq-mean-token-mean, the token form's gradient equals that of -min(s A, clip(s) A), s = exp(mean log-ratio)."""
    g = torch.Generator().manual_seed(0)
    lp = (torch.randn(3, 4, generator=g) * 0.05).double().requires_grad_(True)
    old = torch.zeros(3, 4, dtype=torch.float64)
    adv = torch.tensor([1.0, -0.5, 2.0], dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]], dtype=torch.float64)
    loss, _ = policy_loss(lp, old, adv, mask, clip_low=0.2, clip_high=0.4, kind="gspo")
    aggregate_loss(loss, mask, "seq-mean-token-mean").backward()
    got = lp.grad.clone()
    lp.grad = None
    s = torch.exp(((lp - old) * mask).sum(-1) / mask.sum(-1))  # [B]
    direct = -torch.minimum(s * adv, s.clamp(0.8, 1.4) * adv)
    direct.mean().backward()
    torch.testing.assert_close(got, lp.grad, rtol=1e-12, atol=1e-12)


def test_clip_cov_drops_the_tokens_inside_the_covariance_band_hand_computed():
    # One row of 4 tokens, old = new (ratio 1, nothing PPO-clips). A per token = [2, 2, -2, -2] (mean 0);
    # logprobs [-0.5, -2.5, -0.5, -2.5] (mean -1.5): cov = A * (lp + 1.5) = [2, -2, -2, 2].
    # Band (1, 5): tokens 0 and 3 are candidates; fraction 0.5 of 4 valid tokens -> 2 selected: both.
    lp = torch.tensor([[-0.5, -2.5, -0.5, -2.5]], requires_grad=True)
    adv = torch.tensor([[2.0, 2.0, -2.0, -2.0]])
    loss, m = policy_loss(lp, lp.detach(), adv, torch.ones(1, 4), kind="clip_cov", cov_fraction=0.5,
                          cov_bounds=(1.0, 5.0), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(loss.detach(), torch.tensor([[0.0, -2.0, 2.0, 0.0]]))  # -ratio * A, 0 where dropped
    loss.sum().backward()
    torch.testing.assert_close(lp.grad, torch.tensor([[0.0, -2.0, 2.0, 0.0]]))  # d(-ratio A)/dlp = -A, 0 if dropped
    assert float(m["cov_frac"]) == 0.5
    # fraction 0.25 -> 1 token, drawn at random among the two candidates; a band that excludes cov 2 drops none
    one, m1 = policy_loss(lp.detach(), lp.detach(), adv, torch.ones(1, 4), kind="clip_cov", cov_fraction=0.25,
                          generator=torch.Generator().manual_seed(0))
    assert float(m1["cov_frac"]) == 0.25 and int((one == 0).sum()) == 1 and float(one[0, 1]) == -2.0
    none, m2 = policy_loss(lp.detach(), lp.detach(), adv, torch.ones(1, 4), kind="clip_cov", cov_fraction=0.5,
                           cov_bounds=(2.5, 5.0), generator=torch.Generator().manual_seed(0))
    assert float(m2["cov_frac"]) == 0.0 and torch.equal(none, torch.tensor([[-2.0, -2.0, 2.0, 2.0]]))


def test_kl_cov_penalises_the_largest_covariance_tokens_hand_computed():
    # Same tokens as above (cov [2, -2, -2, 2]), now with a log-ratio of 0.1 on every token (ratio e^0.1).
    # fraction 0.25 -> the single largest cov: a tie between 0 and 3, topk takes one; coef 3 adds 3 * 0.1.
    lp = torch.tensor([[-0.5, -2.5, -0.5, -2.5]], requires_grad=True)
    old = lp.detach() - 0.1
    adv = torch.tensor([[2.0, 2.0, -2.0, -2.0]])
    loss, m = policy_loss(lp, old, adv, torch.ones(1, 4), kind="kl_cov", cov_fraction=0.25, kl_cov_coef=3.0)
    r = math.exp(0.1)
    base = torch.tensor([[-2 * r, -2 * r, 2 * r, 2 * r]])  # -ratio * A, no clipping at all
    extra = loss.detach() - base
    assert float(m["cov_frac"]) == 0.25
    assert torch.allclose(extra.sum(), torch.tensor(0.3)) and int((extra.abs() > 1e-6).sum()) == 1
    hit = int(torch.nonzero(extra.abs() > 1e-6)[0, 1])
    assert hit in (0, 3)
    loss.sum().backward()
    want = -r * adv[0] + torch.tensor([3.0 if i == hit else 0.0 for i in range(4)])  # d|log-ratio|/dlp = +1
    torch.testing.assert_close(lp.grad[0], want)


def test_unknown_policy_loss_is_an_error_and_the_config_names_agree():
    from prorl.algo import POLICY_LOSSES
    from prorl.config import POLICY_LOSSES as CONFIG_NAMES

    assert POLICY_LOSSES == CONFIG_NAMES
    with pytest.raises(ValueError, match="unknown policy loss"):
        policy_loss(torch.zeros(1, 1), torch.zeros(1, 1), torch.ones(1), torch.ones(1, 1), kind="nope")


def test_masked_token_contributes_nothing():
    logprobs = torch.tensor([[-0.1, -5.0]], requires_grad=True)
    loss, m = policy_loss(logprobs, torch.zeros(1, 2), torch.tensor([1.0]), torch.tensor([[1.0, 0.0]]))
    assert float(loss.detach()[0, 1]) == 0.0
    aggregate_loss(loss, torch.tensor([[1.0, 0.0]])).backward()
    assert float(logprobs.grad[0, 1]) == 0.0
    assert float(logprobs.grad[0, 0]) != 0.0
    assert float(m["ratio_mean"]) == pytest.approx(math.exp(-0.1), rel=1e-6)


# ---------------------------------------------------------------- kl_penalty

@pytest.mark.parametrize(
    "kind, expected",
    [
        # log r = ref - lp = log 0.5 = -0.693147
        ("k1", 0.6931472),  # -log r
        ("k2", 0.2402265),  # 0.5 * 0.480453
        ("k3", 0.1931472),  # 0.5 - 1 + 0.693147
    ],
)
def test_kl_estimators_hand_computed(kind, expected):
    value = kl_penalty(torch.tensor([0.0]), torch.log(torch.tensor([0.5])), kind)
    assert float(value) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("kind", ["k1", "k2", "k3"])
def test_kl_and_its_gradient_are_zero_when_policy_equals_reference(kind):
    logprobs = torch.tensor([[-0.3, -2.0, -1.1]], requires_grad=True)
    kl = kl_penalty(logprobs, logprobs.detach().clone(), kind)
    assert torch.equal(kl, torch.zeros_like(kl))
    if kind != "k1":  # k1's per-sample gradient is a constant -1 (zero only in expectation)
        kl.sum().backward()
        assert torch.equal(logprobs.grad, torch.zeros_like(logprobs))


def test_k3_is_never_negative():
    lp = torch.linspace(-5, 0, 11)
    ref = torch.linspace(0, -5, 11)
    assert (kl_penalty(lp, ref, "k3") >= 0).all()


def test_unknown_kl_kind_is_an_error():
    with pytest.raises(ValueError, match="k4"):
        kl_penalty(torch.zeros(1), torch.zeros(1), "k4")


# ---------------------------------------------------------------- aggregate_loss

def test_aggregation_modes_hand_computed():
    loss = torch.tensor([[2.0, 4.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    # token-mean: (2+4+4)/6 = 1.6667 ; seq-mean-token-mean: (3 + 1)/2 = 2 ; sum-norm: 10/(2*4) = 1.25
    assert float(aggregate_loss(loss, mask, "token-mean")) == pytest.approx(10 / 6, rel=1e-6)
    assert float(aggregate_loss(loss, mask, "seq-mean-token-mean")) == pytest.approx(2.0, rel=1e-6)
    assert float(aggregate_loss(loss, mask, "seq-mean-token-sum-norm")) == pytest.approx(1.25, rel=1e-6)
    # with an explicit horizon of 8: 10/(2*8)
    assert float(aggregate_loss(loss, mask, "seq-mean-token-sum-norm", max_response_length=8)) == pytest.approx(
        0.625, rel=1e-6
    )


def test_unknown_aggregation_is_an_error():
    with pytest.raises(ValueError, match="token-sum"):
        aggregate_loss(torch.zeros(1, 1), torch.ones(1, 1), "token-sum")


@pytest.mark.parametrize("mode", ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"])
@pytest.mark.parametrize("splits", [[6], [3, 3], [1, 2, 3], [1, 1, 1, 1, 1, 1]])
def test_step_gradient_does_not_depend_on_micro_batch_split(mode, splits):
    torch.manual_seed(0)
    B, T = 6, 5
    logprobs = torch.randn(B, T) * 0.1 - 1.0
    old = logprobs + torch.randn(B, T) * 0.2
    ref = logprobs + torch.randn(B, T) * 0.2
    adv = torch.randn(B)
    lengths = torch.tensor([5, 1, 3, 4, 2, 5])
    mask = (torch.arange(T)[None, :] < lengths[:, None]).float()  # ragged responses
    num_tokens = mask.sum()  # counted once for the whole step, before splitting
    beta = 0.1

    def step_grad(parts):
        param = logprobs.clone().requires_grad_(True)
        start = 0
        for size in parts:
            sl = slice(start, start + size)
            pg, _ = policy_loss(param[sl], old[sl], adv[sl], mask[sl])
            kl = kl_penalty(param[sl], ref[sl], "k3")
            kwargs = dict(num_tokens=num_tokens, num_sequences=B, max_response_length=T)
            loss = aggregate_loss(pg, mask[sl], mode, **kwargs) + beta * aggregate_loss(kl, mask[sl], mode, **kwargs)
            loss.backward()
            start += size
        return param.grad

    torch.testing.assert_close(step_grad(splits), step_grad([B]), rtol=1e-6, atol=1e-7)


def test_token_mean_without_global_count_would_depend_on_split():
    # Guard that the test above can fail: a per-micro-batch denominator changes the gradient.
    loss = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]], requires_grad=True)
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    whole = torch.autograd.grad(aggregate_loss(loss, mask), loss)[0]
    per_mb = torch.cat([torch.autograd.grad(aggregate_loss(loss[i : i + 1], mask[i : i + 1]), loss)[0][i : i + 1] for i in range(2)])
    assert not torch.allclose(whole, per_mb)


def test_advantage_estimators_by_name():
    rewards = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 0.0])
    torch.testing.assert_close(algo.advantages(rewards, 3, "grpo"), algo.group_advantages(rewards, 3))
    centred = torch.tensor([1 / 3, -2 / 3, 1 / 3, 2 / 3, -1 / 3, -1 / 3])  # r - group mean, groups of 3
    torch.testing.assert_close(algo.advantages(rewards, 3, "drgrpo"), centred)
    # REINFORCE++-baseline: the same centring, then one std over the batch (unbiased, of the centred values).
    torch.testing.assert_close(algo.advantages(rewards, 3, "rloo-batch-std"), centred / (centred.std() + 1e-6))
    assert set(algo.ADVANTAGES) == {"grpo", "drgrpo", "rloo-batch-std"}
    with pytest.raises(ValueError, match="unknown advantage estimator 'ppo'"):
        algo.advantages(rewards, 3, "ppo")


# ---------------------------------------------------------------- rollout correction (importance weights)

def _ratios(*rows):
    """(old, sampler) log-probs whose per-token ratios old/sampler are ``rows`` (sampler fixed at 0.25)."""
    sampler = torch.full((len(rows), len(rows[0])), 0.25).log()
    return sampler + torch.tensor(rows).log(), sampler


def test_rollout_correction_names_agree_with_config_and_unknown_is_an_error():
    from prorl.algo import ROLLOUT_CORRECTIONS, rollout_correction
    from prorl.config import ROLLOUT_CORRECTIONS as CONFIG_NAMES

    assert ROLLOUT_CORRECTIONS == CONFIG_NAMES
    with pytest.raises(ValueError, match="unknown rollout correction"):
        rollout_correction(torch.zeros(1, 1), torch.zeros(1, 1), torch.ones(1, 1), "tis")


def test_token_tis_truncates_each_token_hand_computed():
    from prorl.algo import rollout_correction

    old, sampler = _ratios([3.0, 1.5, 0.2, 9.0])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])  # the 9 is padding: weight 0, counted nowhere
    w, m = rollout_correction(old, sampler, mask, "token_tis", (0.5, 2.0))
    torch.testing.assert_close(w, torch.tensor([[2.0, 1.5, 0.5, 0.0]]))
    assert float(m["truncated_frac"]) == pytest.approx(2 / 3) and float(m["masked_frac"]) == 0.0
    assert float(m["weight_max"]) == pytest.approx(2.0) and float(m["weight_p50"]) == pytest.approx(1.5)
    # default bounds: [0, 2] (no lower truncation)
    w, _ = rollout_correction(old, sampler, mask, "token_tis")
    torch.testing.assert_close(w, torch.tensor([[2.0, 1.5, 0.2, 0.0]]))


def test_sequence_modes_use_the_product_of_the_sequence_ratios_hand_computed():
    from prorl.algo import rollout_correction

    # sequence 0: 2 * 1.5 = 3 ; sequence 1: 0.5 * 2 * (padding) = 1 ; sequence 2: 1.25 * 1.2 = 1.5
    old, sampler = _ratios([2.0, 1.5, 1.0], [0.5, 2.0, 7.0], [1.25, 1.2, 1.0])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    w, m = rollout_correction(old, sampler, mask, "seq_tis", (0.0, 2.0))
    torch.testing.assert_close(w, torch.tensor([[2.0, 2.0, 2.0], [1.0, 1.0, 0.0], [1.5, 1.5, 1.5]]))
    assert float(m["truncated_frac"]) == pytest.approx(3 / 8)  # sequence 0's three tokens
    w, m = rollout_correction(old, sampler, mask, "seq_mask", (0.0, 2.0))
    torch.testing.assert_close(w, torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 0.0], [1.5, 1.5, 1.5]]))
    assert float(m["masked_frac"]) == pytest.approx(3 / 8) and float(m["truncated_frac"]) == 0.0


def test_icepop_drops_tokens_outside_the_range_hand_computed():
    from prorl.algo import rollout_correction

    old, sampler = _ratios([0.4, 1.0, 4.0, 6.0])
    w, m = rollout_correction(old, sampler, torch.ones(1, 4), "icepop")  # default [0.5, 5]
    torch.testing.assert_close(w, torch.tensor([[0.0, 1.0, 4.0, 0.0]]))
    assert float(m["masked_frac"]) == pytest.approx(0.5)


def test_mismatch_kl_is_k3_of_the_ratios_in_every_mode_and_off_is_ones():
    from prorl.algo import rollout_correction

    old, sampler = _ratios([2.0, 0.5, 1.0])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    expected = ((2.0 - 1 - math.log(2.0)) + (0.5 - 1 - math.log(0.5))) / 2
    for mode in ("off", "token_tis", "seq_mask"):
        w, m = rollout_correction(old, sampler, mask, mode)
        assert float(m["mismatch_kl"]) == pytest.approx(expected, rel=1e-6)
    w, _ = rollout_correction(old, sampler, mask, "off")
    torch.testing.assert_close(w, mask)
    _, same = rollout_correction(sampler, sampler, mask, "off")
    assert float(same["mismatch_kl"]) == 0.0


def test_a_long_sequence_ratio_stays_finite():
    from prorl.algo import rollout_correction

    old = torch.full((1, 4000), 0.1)  # log-ratio 0.1 per token: the sequence ratio is e^400
    for mode, expected in (("seq_mask", 0.0), ("seq_tis", 2.0)):
        w, m = rollout_correction(old, torch.zeros(1, 4000), torch.ones(1, 4000), mode)
        assert torch.isfinite(w).all() and float(w.max()) == expected
        assert all(math.isfinite(float(v)) for v in m.values())


def test_cosine_length_reward_hand_computed():
    from prorl.algo import cosine_length_reward

    # quarter way: shape (1 + cos(pi/4)) / 2 = 0.853553
    assert cosine_length_reward(1.0, 25, 100) == pytest.approx(0.5 + 0.5 * 0.8535534, rel=1e-6)
    assert cosine_length_reward(1.0, 250, 100) == cosine_length_reward(1.0, 100, 100) == 0.5  # past the end: the end
    # a partial score mixes the two curves: 0.5 * 0.75 + 0.5 * (-0.5) at half length
    assert cosine_length_reward(0.5, 50, 100, wrong=(-1.0, 0.0)) == pytest.approx(0.125)
    assert cosine_length_reward(0.0, 0, 100) == 0.0


def test_length_penalty_schedule():
    from prorl.algo import length_penalty_on

    assert [length_penalty_on(s, [1, 2]) for s in range(1, 7)] == [True, False, False, True, False, False]
    assert all(length_penalty_on(s, [3, 0]) for s in range(1, 10)) and length_penalty_on(5, [])


def test_weight_quantiles_equal_torch_quantile_and_take_a_paper_sized_batch():
    from prorl.algo import _quantiles, rollout_correction

    values = torch.rand(1001, generator=torch.Generator().manual_seed(0))
    for q, got in zip((0.0, 0.37, 0.5, 0.99, 1.0), _quantiles(values, (0.0, 0.37, 0.5, 0.99, 1.0))):
        assert float(got) == pytest.approx(float(torch.quantile(values, q)), rel=1e-6)
    # 256 prompts x 16 samples x 8k tokens is over torch.quantile's 2**24-element limit: the metrics still come out
    n = 2**24 + 7
    old = torch.zeros(1, n)
    _, m = rollout_correction(old, old - 0.5, torch.ones(1, n), "token_tis")
    assert float(m["weight_p50"]) == pytest.approx(math.exp(0.5), rel=1e-6)
