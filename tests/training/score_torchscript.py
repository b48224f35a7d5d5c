#!/usr/bin/python3
"""Scores rows with a TorchScript artifact, independently of Tessera (the inference parity test).

usage: score_torchscript.py MODEL.pt ROWS.csv
ROWS.csv: one row of float inputs per line, no header, empty cells missing (NaN).
Prints one probability per row, with 9 significant digits (float32 round-trips).
"""
import sys

import torch

model = torch.jit.load(sys.argv[1])
model.eval()
rows = []
with open(sys.argv[2]) as f:
    for line in f:
        line = line.rstrip("\n")
        if line:
            rows.append([float(c) if c else float("nan") for c in line.split(",")])
with torch.no_grad():
    for r in rows:  # one row at a time: the reference is the unbatched forward pass
        p = model(torch.tensor([r], dtype=torch.float32)).reshape(-1)
        print("%.9g" % p[0].item())
