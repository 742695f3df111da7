"""The batch and random numbers of a step are functions of the step alone (what exact resume rests on)."""

from __future__ import annotations

import torch

from or_synth.training.batches import epoch_batch, epoch_batches, step_generator


def test_each_epoch_is_a_seeded_permutation_of_the_items():
    steps_per_epoch = 10 // 3  # the remainder of an epoch is dropped
    first = torch.cat([epoch_batch(10, 3, step, seed=0) for step in range(steps_per_epoch)])
    assert len(first) == 9 and len(set(first.tolist())) == 9  # no item twice in an epoch
    second = torch.cat(
        [epoch_batch(10, 3, step, seed=0) for step in range(steps_per_epoch, 2 * steps_per_epoch)]
    )
    assert not torch.equal(first, second)  # each epoch its own order
    assert torch.equal(epoch_batch(10, 3, 4, seed=0), epoch_batch(10, 3, 4, seed=0))
    assert not torch.equal(epoch_batch(10, 3, 4, seed=0), epoch_batch(10, 3, 4, seed=1))


def test_a_dataset_smaller_than_the_batch_repeats_its_permutation():
    batch = epoch_batch(3, 8, 0, seed=0)
    assert len(batch) == 8 and set(batch.tolist()) == {0, 1, 2}


def test_epoch_batches_are_the_batches_of_the_remaining_steps():
    batches = list(epoch_batches(10, 3, seed=2, start=4, steps=7))
    assert batches == [epoch_batch(10, 3, step, 2).tolist() for step in (4, 5, 6)]


def test_step_generator_draws_the_same_numbers_whatever_ran_before():
    torch.rand(5)  # the global RNG moves; the step's generator does not care
    first = torch.rand(4, generator=step_generator(0, 7))
    assert torch.equal(first, torch.rand(4, generator=step_generator(0, 7)))
    assert not torch.equal(first, torch.rand(4, generator=step_generator(0, 8)))
    assert not torch.equal(first, torch.rand(4, generator=step_generator(0, 7, stream=1)))
