#!/usr/bin/env python3
"""Fixtures for tests/test_optimizer.c: AdamW + clip_grad_norm_ + warmup LambdaLR
+ EMA, computed by PyTorch itself (torch.optim.AdamW, torch.nn.utils.clip_grad_norm_,
torch.optim.lr_scheduler.LambdaLR, torch.optim.swa_utils.AveragedModel with the
decay ramp of torchtnt's use_lit=True, as the reference's SWAParams use).

Writes tests/fixtures/train/adamw.safetensors:
  w0.NAME                 initial weights
  grad.STEP.NAME          the raw gradient given at update STEP (before clipping)
  weight.STEP.NAME        weights after update STEP
  ema.STEP.NAME           EMA weights after update STEP
  lr                      F64 [STEPS] learning rate used by each update
  norm                    F64 [STEPS] total grad norm returned by clip_grad_norm_
Run: python3 tools/make_train_fixtures.py
"""
import functools
import os

import torch
from safetensors.torch import save_file
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

STEPS = 6
WARMUP = 2
LR = 1e-2
EMA_DECAY = 0.9999


def constant_lr_with_warmup(step, warmup_steps):
    return float(step) / float(max(1, warmup_steps)) if step < warmup_steps else 1.0


def main():
    torch.manual_seed(0)
    model = torch.nn.ParameterDict({
        "a_weight": torch.nn.Parameter(torch.randn(3, 4)),
        "b_bias": torch.nn.Parameter(torch.randn(5)),
    })
    out = {f"w0.{k}": v.detach().clone() for k, v in model.items()}
    opt = torch.optim.AdamW(model.parameters(), lr=LR, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, functools.partial(constant_lr_with_warmup, warmup_steps=WARMUP))
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(EMA_DECAY))
    lrs, norms = [], []
    for step in range(STEPS):
        # alternate small and large gradients so clipping is both off and on
        scale = 0.1 if step % 2 == 0 else 3.0
        for k, p in model.items():
            p.grad = torch.randn_like(p) * scale
            out[f"grad.{step}.{k}"] = p.grad.detach().clone()
        norms.append(float(torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)))
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
        n = step + 1  # torchtnt use_lit: decay = min(decay, (1+n)/(10+n)), n counts updates
        ema.multi_avg_fn = get_ema_multi_avg_fn(min(EMA_DECAY, (1 + n) / (10 + n)))
        ema.update_parameters(model)
        for k, p in model.items():
            out[f"weight.{step}.{k}"] = p.detach().clone()
            out[f"ema.{step}.{k}"] = ema.module[k].detach().clone()
    out["lr"] = torch.tensor(lrs, dtype=torch.float64)
    out["norm"] = torch.tensor(norms, dtype=torch.float64)
    path = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "train", "adamw.safetensors")
    save_file({k: v.contiguous() for k, v in out.items()}, path)
    print("wrote", os.path.normpath(path))


if __name__ == "__main__":
    main()
