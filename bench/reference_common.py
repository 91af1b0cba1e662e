"""The PyTorch reference of `make bench`: the networks are swiftddpm.torch's ResidualMLP and
UNet (the package's PyTorch twins of ours, same parameter names, also used to export weights);
this module holds what the bench adds around them:

  LinearSchedule    Sources/DDPM/Schedule: beta linear, tables in float64 used as float32
  Recipe, Trainer   Sources/DDPM/Training/*.swift: L_simple with t ~ U{0..T-1}, eps ~ N(0, I),
                    AdamW (PyTorch's update order), global grad-norm clip, EMA of the weights,
                    label dropout for conditional models
  ddpm_sample       Sources/DDPM/Sampling/Sampler.swift + Solver+DDPM.swift:
                    DDPM ancestral sampling, sigma^2 = beta_t, no noise on the last step

Shapes: B = batch, T = timesteps, K = classes (label K = "no class").
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


# ---- Schedule ---------------------------------------------------------------------------

class LinearSchedule:
    """beta linear from beta_start to beta_end over T steps; tables in float64, used as float32
    (as NoiseSchedule: computed in Double, stored as Float)."""

    def __init__(self, T: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02):
        betas = torch.linspace(beta_start, beta_end, T, dtype=torch.float64)
        alphas = 1 - betas
        alpha_bar = torch.cumprod(alphas, 0)
        self.T = T
        self.betas = betas.float()                                      # (T,) beta_t
        self.sqrt_alpha_bar = alpha_bar.sqrt().float()                  # (T,) sqrt(abar_t)
        self.sqrt_one_minus_alpha_bar = (1 - alpha_bar).sqrt().float()  # (T,) sqrt(1 - abar_t)
        self.sqrt_recip_alpha = (1 / alphas.sqrt()).float()             # (T,) 1/sqrt(alpha_t), reverse mean
        self.eps_coef = (betas / (1 - alpha_bar).sqrt()).float()        # (T,) beta_t/sqrt(1-abar_t), reverse mean
        self.sigma = betas.sqrt().float()                               # (T,) sigma_t, sigma^2 = beta_t

    def add_noise(self, x0, eps, t):
        """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, row-wise t; any trailing shape."""
        shape = (-1,) + (1,) * (x0.dim() - 1)
        return self.sqrt_alpha_bar[t].view(shape) * x0 + self.sqrt_one_minus_alpha_bar[t].view(shape) * eps


# ---- Training recipe --------------------------------------------------------------------

@dataclass
class Recipe:
    learning_rate: float = 1e-3
    betas: tuple = (0.9, 0.999)
    adam_eps: float = 1e-8
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.995
    label_dropout: float = 0.1


class Trainer:
    """One train step = DDPM Algorithm 1 + clip + AdamW + EMA, as DiffusionModel.trainStep."""

    def __init__(self, net: nn.Module, schedule: LinearSchedule, recipe: Recipe = Recipe(),
                 num_classes: int = 0, seed: int = 0):
        self.net, self.schedule, self.recipe, self.num_classes = net, schedule, recipe, num_classes
        self.params = [p for p in net.parameters()]
        self.ema = [p.detach().clone() for p in self.params]
        self.ema_steps = 0  # updates so far, for the EMA warm-up
        self.opt = torch.optim.AdamW(self.params, lr=recipe.learning_rate, betas=recipe.betas,
                                     eps=recipe.adam_eps, weight_decay=recipe.weight_decay)
        self.gen = torch.Generator().manual_seed(seed)

    def train_step(self, x0: torch.Tensor, labels: torch.Tensor | None = None) -> float:
        B = x0.shape[0]
        t = torch.randint(0, self.schedule.T, (B,), generator=self.gen)        # t ~ U{0..T-1}
        eps = torch.randn(x0.shape, generator=self.gen)                         # eps ~ N(0, I)
        xt = self.schedule.add_noise(x0, eps, t)
        if self.num_classes > 0:  # label dropout: a row gets the null label K with probability p
            given = labels if labels is not None else torch.full((B,), self.num_classes, dtype=torch.int64)
            drop = torch.rand(B, generator=self.gen) < self.recipe.label_dropout
            labels = torch.where(drop, torch.full_like(given, self.num_classes), given)
        loss = F.mse_loss(self.net(xt, t, labels), eps)                         # L_simple
        self.opt.zero_grad(set_to_none=False)
        loss.backward()
        if self.recipe.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.params, self.recipe.grad_clip)
        self.opt.step()
        with torch.no_grad():  # ema <- d_n ema + (1 - d_n) theta, d_n = min(d, (1 + n)/(10 + n))
            keep = min(self.recipe.ema_decay, (1 + self.ema_steps) / (10 + self.ema_steps))
            self.ema_steps += 1
            if hasattr(torch, "_foreach_lerp_"):
                torch._foreach_lerp_(self.ema, self.params, 1 - keep)
            else:
                for e, p in zip(self.ema, self.params):
                    e.lerp_(p, 1 - keep)
        return loss.item()

    def ema_net(self) -> nn.Module:
        """A copy of the network holding the EMA weights (for sampling)."""
        net = copy.deepcopy(self.net)
        with torch.no_grad():
            for p, e in zip(net.parameters(), self.ema):
                p.copy_(e)
        return net


# ---- Sampling ---------------------------------------------------------------------------

@torch.no_grad()
def ddpm_sample(net: nn.Module, schedule: LinearSchedule, shape: tuple, labels=None, seed: int = 0,
                steps: int | None = None) -> torch.Tensor:
    """DDPM ancestral sampling (Algorithm 2) from x_T ~ N(0, I), t = T-1 .. 0:
    x_{t-1} = 1/sqrt(alpha_t) (x_t - beta_t/sqrt(1-abar_t) eps) + sigma_t z, sigma^2 = beta_t,
    z = 0 on the last step. `steps` < T runs only the first `steps` reverse steps (for quick
    timing; the result is then not a sample)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=gen)
    n = shape[0]
    T = schedule.T
    last = T - (steps if steps is not None else T)
    tvec = torch.empty(n, dtype=torch.int64)
    for t in range(T - 1, last - 1, -1):
        eps = net(x, tvec.fill_(t), labels)
        x = schedule.sqrt_recip_alpha[t] * (x - schedule.eps_coef[t] * eps)
        if t > 0:
            x = x + schedule.sigma[t] * torch.randn(shape, generator=gen)
    return x
