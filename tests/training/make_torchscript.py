#!/usr/bin/python3
"""Writes a TorchScript model the way a PyTorch user would, for the import test.

usage: make_torchscript.py OUT INPUTS
The model: sigmoid(x . w + b) with w = 0.5 for every input and b = -1, NaN read as 0.
"""
import sys

import torch


class Model(torch.nn.Module):
    def __init__(self, n: int):
        super().__init__()
        self.linear = torch.nn.Linear(n, 1)
        with torch.no_grad():
            self.linear.weight.fill_(0.5)
            self.linear.bias.fill_(-1.0)

    def forward(self, x):
        x = torch.nan_to_num(x, nan=0.0)
        return torch.sigmoid(self.linear(x)).squeeze(-1)


torch.jit.script(Model(int(sys.argv[2]))).save(sys.argv[1])
