"""Mask draws and the masked spectrogram modelling loss."""

from __future__ import annotations

import pytest
import torch

from axlstm.objectives import msm_loss, random_masking


@pytest.mark.parametrize("ratio", [0.0, 0.3, 0.5, 0.75])
def test_unstructured_mask_counts(ratio):
    draw = random_masking(4, (50, 5), ratio)
    n_masked = 250 - int(250 * (100 - ratio * 100) / 100)
    assert draw.mask.shape == (4, 250)
    assert (draw.mask.sum(1) == n_masked).all()
    # ids_restore inverts the noise sort: gathering sorted noise with it gives the noise back
    sorted_noise = draw.noise.sort(dim=1).values
    torch.testing.assert_close(torch.gather(sorted_noise, 1, draw.ids_restore), draw.noise)


def test_masks_differ_per_sample_and_follow_the_seed():
    torch.manual_seed(3)
    a = random_masking(2, (50, 5), 0.5)
    torch.manual_seed(3)
    b = random_masking(2, (50, 5), 0.5)
    assert torch.equal(a.mask, b.mask)
    assert not torch.equal(a.mask[0], a.mask[1])
    g = torch.Generator().manual_seed(3)
    c = random_masking(2, (50, 5), 0.5, generator=g)
    assert torch.equal(c.mask, a.mask)  # same stream as the default generator seeded alike


def test_timestep_mask_covers_whole_time_steps():
    draw = random_masking(3, (50, 5), 0.5, mode="timestep")
    grid = draw.mask.view(3, 50, 5)
    assert (grid.amin(-1) == grid.amax(-1)).all()  # all 5 bands of a step share the decision
    assert (grid[..., 0].sum(1) == 25).all()


def test_bad_masking_arguments():
    with pytest.raises(ValueError, match="masking mode"):
        random_masking(1, (50, 5), 0.5, mode="blocks")
    with pytest.raises(ValueError, match="ratio"):
        random_masking(1, (50, 5), 1.0)


def test_loss_scopes():
    pred = torch.zeros(1, 4, 2)
    target = torch.tensor([[[1.0, 1.0], [2.0, 2.0], [0.0, 0.0], [3.0, 3.0]]])
    mask = torch.tensor([[1.0, 0.0, 0.0, 1.0]])
    assert msm_loss(pred, target, mask, "all").item() == pytest.approx((1 + 4 + 0 + 9) / 4)
    assert msm_loss(pred, target, mask, "masked").item() == pytest.approx((1 + 9) / 2)
    with pytest.raises(ValueError, match="needs the mask"):
        msm_loss(pred, target, None, "masked")
    with pytest.raises(ValueError, match="scope"):
        msm_loss(pred, target, mask, "visible")
