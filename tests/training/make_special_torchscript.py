#!/usr/bin/python3
"""Writes TorchScript models that misbehave in one way each, for the inference bad-input tests.

usage: make_special_torchscript.py OUT INPUTS KIND
KIND:
  nan_when_far    NaN for rows whose first input (distance) is over 2000, else 0.25
  throws_alone    raises unless given exactly 2 rows (passes the import check, fails warm-up)
  slow_when_far   burns ~0.4 s of matrix products for rows with distance over 2000, else 0.75
  by_distance     distance / 4000, clamped to [0, 1] (a score a test can compute by hand)
  sure_late       0.99 for every row (a confidently wrong canary: most flights are on time)
"""
import sys

import torch


class NanWhenFar(torch.nn.Module):
    def forward(self, x):
        far = x[:, 0] > 2000
        return torch.where(far, torch.full_like(x[:, 0], float("nan")), torch.full_like(x[:, 0], 0.25))


class ThrowsAlone(torch.nn.Module):
    def forward(self, x):
        if x.shape[0] != 2:
            raise RuntimeError("this model only scores pairs")
        return torch.full_like(x[:, 0], 0.5)


class SlowWhenFar(torch.nn.Module):
    def forward(self, x):
        a = torch.ones(256, 256)
        if bool((x[:, 0] > 2000).any()):
            for _ in range(60):
                a = torch.matmul(a, torch.ones(256, 256)) / 256.0
        # a is all ones: the result is 0.75, and the loop cannot be optimised away
        return torch.full_like(x[:, 0], 0.75) * a[0, 0]


class ByDistance(torch.nn.Module):
    def forward(self, x):
        return torch.clamp(x[:, 0] / 4000.0, 0.0, 1.0)


class SureLate(torch.nn.Module):
    def forward(self, x):
        return torch.full_like(x[:, 0], 0.99)


kinds = {"nan_when_far": NanWhenFar, "throws_alone": ThrowsAlone, "slow_when_far": SlowWhenFar,
         "by_distance": ByDistance, "sure_late": SureLate}
torch.jit.script(kinds[sys.argv[3]]()).save(sys.argv[1])
