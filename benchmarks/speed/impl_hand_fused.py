"""Hand-fused MMoE: the "what a careful person writes by hand" baseline.

* all inputs preloaded as tensors; batches are slices of a shuffled index;
* one embedding table for all 33 categorical features, per-feature offsets added once up
  front, so a batch needs one gather;
* the 8 experts are one weight ``[in, E, h]`` applied with one matmul (viewed as
  ``[in, E*h]``); the linear gates of both tasks ride in the same matmul;
* the gate mixture is one ``bmm``; the two towers are batched weights ``[T, 16, 8]`` and
  ``[T, 8, 1]`` applied with ``baddbmm``;
* Adam (lr 1e-3, torch defaults), batch 1024, no dropout, no weight decay, sum of the two
  tasks' mean BCE losses; no host synchronisation inside the loop.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

NAME = "hand_fused"
REQUIRES: tuple = ()
NOTES = "one gather, experts+gates in one matmul, towers batched (baddbmm); torch.optim.Adam defaults"

NUM_EXPERTS = 8
EXPERT_HIDDEN = 16
TOWER_HIDDEN = 8
EMB_DIM = 4
BATCH = 1024
LR = 1e-3


class FusedMMoE(nn.Module):
    def __init__(self, n_categories: int, n_cat: int, n_num: int, n_tasks: int = 2):
        super().__init__()
        self.n_tasks = n_tasks
        in_dim = n_cat * EMB_DIM + n_num
        self.emb = nn.Parameter(torch.randn(n_categories, EMB_DIM) * 0.05)
        bound = 1.0 / math.sqrt(in_dim)
        # experts [in, E, h] and gates [in, T, E] stored side by side as one [in, E*h + T*E]
        w_exp = torch.empty(in_dim, NUM_EXPERTS, EXPERT_HIDDEN).uniform_(-bound, bound)
        w_gate = torch.empty(in_dim, n_tasks, NUM_EXPERTS).uniform_(-bound, bound)
        self.w_in = nn.Parameter(torch.cat([w_exp.reshape(in_dim, -1), w_gate.reshape(in_dim, -1)], 1))
        self.b_in = nn.Parameter(torch.zeros(NUM_EXPERTS * EXPERT_HIDDEN + n_tasks * NUM_EXPERTS))
        b1 = 1.0 / math.sqrt(EXPERT_HIDDEN)
        b2 = 1.0 / math.sqrt(TOWER_HIDDEN)
        self.w_t1 = nn.Parameter(torch.empty(n_tasks, EXPERT_HIDDEN, TOWER_HIDDEN).uniform_(-b1, b1))
        self.b_t1 = nn.Parameter(torch.zeros(n_tasks, 1, TOWER_HIDDEN))
        self.w_t2 = nn.Parameter(torch.empty(n_tasks, TOWER_HIDDEN, 1).uniform_(-b2, b2))
        self.b_t2 = nn.Parameter(torch.zeros(n_tasks, 1, 1))

    def forward(self, cat: torch.Tensor, num: torch.Tensor) -> torch.Tensor:
        """cat: [B, 33] global codes (offsets added); num: [B, 7]. Returns logits [T, B]."""
        b = cat.shape[0]
        x = torch.cat([self.emb[cat].view(b, -1), num], 1)  # one gather -> [B, 139]
        z = torch.addmm(self.b_in, x, self.w_in)  # experts + gates, one matmul
        eh = NUM_EXPERTS * EXPERT_HIDDEN
        experts = torch.relu(z[:, :eh]).view(b, NUM_EXPERTS, EXPERT_HIDDEN)  # [B, E, h]
        gates = torch.softmax(z[:, eh:].view(b, self.n_tasks, NUM_EXPERTS), -1)  # [B, T, E]
        mixed = torch.bmm(gates, experts).transpose(0, 1)  # [T, B, h]
        t = torch.relu(torch.baddbmm(self.b_t1, mixed, self.w_t1))  # [T, B, 8]
        return torch.baddbmm(self.b_t2, t, self.w_t2).squeeze(-1)  # [T, B]


def _epoch(model, opt, cat, num, y_t, gen) -> float:
    n = cat.shape[0]
    perm = torch.randperm(n, generator=gen)
    total = torch.zeros(())
    t0 = time.perf_counter()
    for i in range(0, n, BATCH):
        idx = perm[i : i + BATCH]
        logits = model(cat[idx], num[idx])
        loss = F.binary_cross_entropy_with_logits(logits, y_t[:, idx], reduction="none").mean(1).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total += loss.detach()
    seconds = time.perf_counter() - t0
    total.item()
    return seconds


@torch.inference_mode()
def _predict(model, cat, num) -> np.ndarray:
    model.eval()
    n = cat.shape[0]
    out = torch.empty(model.n_tasks, n)
    for i in range(0, n, BATCH):
        out[:, i : i + BATCH] = torch.sigmoid(model(cat[i : i + BATCH], num[i : i + BATCH]))
    model.train()
    return out.T.numpy()


def run(data, epochs: int = 2) -> dict:
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    offsets = torch.from_numpy(data.offsets)
    # row-major tensors, the layout this loop gathers rows from (the arrays on disk are column-major)
    cat = (torch.from_numpy(data.train_cat) + offsets).contiguous()
    num = torch.from_numpy(data.train_num).contiguous()
    y_t = torch.from_numpy(data.train_y).T.contiguous()  # [T, N]
    test_cat = (torch.from_numpy(data.test_cat) + offsets).contiguous()
    test_num = torch.from_numpy(data.test_num).contiguous()

    model = FusedMMoE(int(data.cardinalities.sum()), cat.shape[1], num.shape[1], y_t.shape[0])
    opt = torch.optim.Adam(model.parameters(), lr=LR)

    epoch_seconds = [_epoch(model, opt, cat, num, y_t, gen) for _ in range(epochs)]

    predict_seconds = []
    for _ in range(2):
        t0 = time.perf_counter()
        pred = _predict(model, test_cat, test_num)
        predict_seconds.append(time.perf_counter() - t0)

    n = data.n_train
    return {
        "train_samples_per_s": n / epoch_seconds[-1],
        "train_samples_per_s_epoch1": n / epoch_seconds[0],
        "predict_samples_per_s": data.n_test / min(predict_seconds),
        "epoch_seconds": epoch_seconds,
        "predict_seconds": predict_seconds,
        "predictions": pred,
        "n_parameter_tensors": len(list(model.parameters())),
        "n_parameters": sum(p.numel() for p in model.parameters()),
    }
