"""The NF fiber model of fiberlab written in plain PyTorch, timed the same way as
benchmarks/perf/bench_nf.c times ours (same libtorch, same sizes): conditional Glow
couplings with ActNorm and fixed orthogonal mixing, Adam, one-cycle LR, clipping.
Prints one JSON line per batch size. Run by bench_nf; usable alone:
    /usr/bin/python3 bench_nf.py --threads 2 --batch 64 256 --steps 200 100
"""
import argparse
import json
import math
import time

import torch


class ActNorm(torch.nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.bias = torch.nn.Parameter(torch.zeros(dim))
        self.logs = torch.nn.Parameter(torch.zeros(dim))
        self.register_buffer("initialized", torch.tensor(0.0))

    def forward(self, x):
        if self.initialized.item() == 0 and torch.is_grad_enabled():
            with torch.no_grad():
                self.bias.copy_(-x.mean(0))
                self.logs.copy_(-torch.log(x.std(0, unbiased=False) + 1e-6))
                self.initialized.fill_(1)
        return (x + self.bias) * torch.exp(self.logs), self.logs.sum().expand(x.shape[0])


def mlp(n_in, n_out, hidden, layers):
    mods = [torch.nn.Linear(n_in, hidden), torch.nn.SiLU()]
    for _ in range(layers):
        mods += [torch.nn.Linear(hidden, hidden), torch.nn.SiLU()]
    last = torch.nn.Linear(hidden, n_out)
    torch.nn.init.zeros_(last.weight)
    torch.nn.init.zeros_(last.bias)
    return torch.nn.Sequential(*mods, last)


class Coupling(torch.nn.Module):
    def __init__(self, dim, cond, hidden, layers, clamp):
        super().__init__()
        self.d1, self.d2, self.clamp = dim // 2, dim - dim // 2, clamp
        self.net1 = mlp(self.d1 + cond, 2 * self.d2, hidden, layers)
        self.net2 = mlp(self.d2 + cond, 2 * self.d1, hidden, layers)

    def soft(self, s):
        return self.clamp * 2 / math.pi * torch.atan(s / self.clamp)

    def forward(self, x, c):
        x1, x2 = x[:, : self.d1], x[:, self.d1 :]
        h = self.net1(torch.cat([x1, c], 1))
        s1, t1 = self.soft(h[:, : self.d2]), h[:, self.d2 :]
        y2 = x2 * torch.exp(s1) + t1
        h = self.net2(torch.cat([y2, c], 1))
        s2, t2 = self.soft(h[:, : self.d1]), h[:, self.d1 :]
        y1 = x1 * torch.exp(s2) + t2
        return torch.cat([y1, y2], 1), s1.sum(1) + s2.sum(1)


class Orthogonal(torch.nn.Module):
    def __init__(self, dim):
        super().__init__()
        q, _ = torch.linalg.qr(torch.randn(dim, dim, dtype=torch.float64))
        self.register_buffer("q", q.float())

    def forward(self, x):
        return torch.nn.functional.linear(x, self.q), torch.zeros(x.shape[0])


class NF(torch.nn.Module):
    def __init__(self, dim, cond, blocks, hidden, layers, clamp):
        super().__init__()
        self.dim = dim
        mods = []
        for _ in range(blocks):
            mods += [ActNorm(dim), Coupling(dim, cond, hidden, layers, clamp), Orthogonal(dim)]
        self.blocks = torch.nn.ModuleList(mods)

    def nll(self, u, z):
        logdet = torch.zeros(u.shape[0])
        h = u
        for b in self.blocks:
            h, ld = b(h, z) if isinstance(b, Coupling) else b(h)
            logdet = logdet + ld
        return (0.5 * h.square().sum(1) + 0.5 * self.dim * math.log(2 * math.pi) - logdet).mean()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, nargs="+", default=[64, 256])
    ap.add_argument("--steps", type=int, nargs="+", default=[200, 100])
    ap.add_argument("--dim", type=int, default=54)
    ap.add_argument("--cond", type=int, default=48)
    ap.add_argument("--blocks", type=int, default=8)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=10)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    pool = 8192
    u_all, z_all = torch.randn(pool, a.dim), torch.randn(pool, a.cond)
    for batch, steps in zip(a.batch, a.steps):
        model = NF(a.dim, a.cond, a.blocks, a.hidden, a.layers, 2.0)
        n_params = sum(p.numel() for p in model.parameters())
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-3, total_steps=steps + a.warmup,
                                                    cycle_momentum=False)
        pos = 0
        t0 = None
        for step in range(steps + a.warmup):
            if step == a.warmup:
                t0 = time.perf_counter()
            if pos + batch > pool:
                pos = 0
            u, z = u_all[pos : pos + batch], z_all[pos : pos + batch]
            pos += batch
            loss = model.nll(u, z)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
            opt.step()
            sched.step()
        dt = time.perf_counter() - t0
        print(json.dumps({"batch": batch, "steps": steps, "seconds": dt,
                          "steps_per_s": steps / dt, "params": n_params,
                          "final_loss": loss.item()}), flush=True)


if __name__ == "__main__":
    main()
