import math

import numpy as np
import pytest
import torch

from dho.errors import ConfigError, DataError
from dho.inference import DEFAULT_ALPHAS, DEFAULT_BETAS, accuracy, combine_heads, search_alpha_beta

torch.set_num_threads(1)


def test_default_grids():
    assert DEFAULT_ALPHAS[:3] == (0.0, 0.05, 0.1) and DEFAULT_ALPHAS[-1] == 1.0 and len(DEFAULT_ALPHAS) == 21
    assert 0.15 in DEFAULT_ALPHAS and 0.35 in DEFAULT_ALPHAS  # exact decimal values
    assert DEFAULT_BETAS == (0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 4.0)


def test_combine_heads_hand_computed():
    ce = torch.tensor([[0.0, 0.0]])                 # softmax -> [.5, .5]
    kd = torch.tensor([[math.log(3.0), 0.0]])       # beta 1 -> [.75, .25]; beta .5 -> [.9, .1]
    assert torch.allclose(combine_heads(ce, kd, 0.2, 1.0), torch.tensor([[0.7, 0.3]]))
    assert torch.allclose(combine_heads(ce, kd, 0.5, 0.5), torch.tensor([[0.7, 0.3]]))
    assert torch.allclose(combine_heads(ce, kd, 1.0, 4.0), torch.tensor([[0.5, 0.5]]))
    # numpy input works the same
    out = combine_heads(ce.numpy(), kd.numpy(), 0.2, 1.0)
    assert torch.allclose(out, torch.tensor([[0.7, 0.3]]))


def test_accuracy_percent():
    logits = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 1.0], [0.0, 3.0]])
    assert accuracy(logits, np.array([0, 1, 1, 0])) == pytest.approx(50.0)
    assert accuracy(torch.tensor(logits), torch.tensor([0, 1, 0, 1])) == pytest.approx(100.0)
    with pytest.raises(DataError, match="expected 4 labels"):
        accuracy(logits, [0, 1])


def test_search_finds_smallest_winning_alpha_at_first_beta():
    # label 1; CE head sure of 1, KD head sure of 0 -> correct only when alpha > 0.5
    ce = torch.tensor([[0.0, 20.0]])
    kd = torch.tensor([[20.0, 0.0]])
    acc, alpha, beta = search_alpha_beta(ce, kd, torch.tensor([1]))
    assert (acc, alpha, beta) == (100.0, 0.55, 0.5)


def test_search_walks_beta_outer_alpha_inner():
    # label 1; p_ce(1) = sigmoid(1) = .731; p_kd(1) = 1 / (1 + e^(2/beta)): .119 (beta 1), .378 (beta 4)
    # correct iff alpha > (.5 - p_kd) / (.731 - p_kd): alpha > .62 (beta 1), alpha > .35 (beta 4)
    ce = np.array([[0.0, 1.0]], dtype=np.float32)
    kd = np.array([[2.0, 0.0]], dtype=np.float32)
    acc, alpha, beta = search_alpha_beta(ce, kd, np.array([1]), alphas=[0.4, 0.7], betas=[1.0, 4.0])
    # (0.4, 1) wrong; (0.7, 1), (0.4, 4), (0.7, 4) right: beta-outer order gives (0.7, 1.0) first
    assert (acc, alpha, beta) == (100.0, 0.7, 1.0)


def test_search_all_tied_returns_first_pair_of_given_grid():
    ce = torch.tensor([[3.0, 0.0], [0.0, 3.0]])
    acc, alpha, beta = search_alpha_beta(ce, ce.clone(), [0, 1], alphas=[0.3, 0.7], betas=[2.0, 1.0])
    assert (acc, alpha, beta) == (100.0, 0.3, 2.0)


def test_search_reversed_alphas_break_ties_like_the_authors_code():
    # both heads right on both images: every pair ties. The card's alpha weighs the CE head;
    # the authors' loop weighs the KD head and keeps its first (smallest) KD weight.
    ce = torch.tensor([[3.0, 0.0], [0.0, 3.0]])
    assert search_alpha_beta(ce, ce.clone(), [0, 1])[1:] == (0.0, 0.5)
    assert search_alpha_beta(ce, ce.clone(), [0, 1], alphas=DEFAULT_ALPHAS[::-1])[1:] == (1.0, 0.5)


def test_search_equals_brute_force_over_combine_heads():
    gen = torch.Generator().manual_seed(0)
    n, c = 300, 5
    ce = torch.randint(-2, 3, (n, c), generator=gen).float()  # coarse logits: many ties in accuracy
    kd = torch.randn(n, c, generator=gen) * 3
    labels = torch.randint(0, c, (n,), generator=gen)
    best = (-1.0, None, None)
    for b in DEFAULT_BETAS:
        for a in DEFAULT_ALPHAS:
            acc = accuracy(combine_heads(ce, kd, a, b), labels)
            if acc > best[0]:
                best = (acc, a, b)
    assert search_alpha_beta(ce, kd, labels) == best


def test_search_bad_inputs():
    ce = torch.zeros(2, 3)
    with pytest.raises(DataError, match="differ in shape"):
        search_alpha_beta(ce, torch.zeros(2, 4), [0, 1])
    with pytest.raises(ConfigError, match="alpha = 1.5"):
        search_alpha_beta(ce, ce, [0, 1], alphas=[1.5])
    with pytest.raises(ConfigError, match="beta = 0"):
        search_alpha_beta(ce, ce, [0, 1], betas=[0])
    with pytest.raises(DataError, match=r"shape \[N, C\]"):
        search_alpha_beta(torch.zeros(0, 3), torch.zeros(0, 3), [])
