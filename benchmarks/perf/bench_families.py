"""The seven fiber-model families of fiberlab (NF, MLF, DNF, FFF, FIF, DIFF, FM) written
in plain PyTorch, timed the way benchmarks/perf/bench_families.c times ours (same
libtorch, the default sizes of each family's keys, the loop's Adam, one-cycle LR and
clipping). One training run per call; prints one JSON line with steps/s, the trainable
parameter count and the peak RSS. Run by bench_families; usable alone:
    /usr/bin/python3 bench_families.py --family diff --batch 64 --steps 100 --lam 1 --fsteps 4 [--ckpt]

--family ndtm times NDTM sampling (ndtm/ndtm.c) with the latent or the pixel prior
(--prior) on the C side's weights and inputs (bench_families --ndtm-inputs DIR writes
them; "steps_per_s" is then samples per second):
    /usr/bin/python3 bench_families.py --family ndtm --prior pixel --batch 64 --ndtm-steps 20 \
        --threads 1 --weights DIR/weights.h5 --pixel DIR/pixel.h5 --inputs DIR/inputs.h5
Ndtm is also the reference of tests/test_ndtm_pytorch.c (tests/fixtures/check_ndtm_twin.py).

The fiber-loss term (λ > 0) goes through a stand-in for the trained VAE decoder and
subject that bench_families.c builds identically: the VAE's conv decoder and the
subject's conv encoder at their default sizes (vae.*, subject.* keys; the subject sees the
colored image), with frozen, untrained weights. The network architectures mirror
architectures/inn.c, nn.c, freeform.c, timenet.c and conv.c; the losses mirror
trainers/{nf,mlf,dnf,fff,fif,diff,fm}.c and trainers/fiber.c's objective."""
import argparse
import json
import math
import re
import resource
import sys
import time

import torch
import torch.autograd.forward_ad as fwAD
import torch.utils.checkpoint

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from unet_twin import unet_from_spec  # noqa: E402

DIM, COND = 54, 48


def rss_kb():
    """The current resident set, in KiB (Linux /proc)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


# ---- the coupling INN (architectures/inn.c), with its inverse -------------------------

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



def actnorm_inverse(b, y):
    return y * torch.exp(-b.logs) - b.bias


def coupling_inverse(b, y, c):
    y1, y2 = y[:, : b.d1], y[:, b.d1 :]
    h = b.net2(torch.cat([y2, c], 1))
    s2, t2 = b.soft(h[:, : b.d1]), h[:, b.d1 :]
    x1 = (y1 - t2) * torch.exp(-s2)
    h = b.net1(torch.cat([x1, c], 1))
    s1, t1 = b.soft(h[:, : b.d2]), h[:, b.d2 :]
    x2 = (y2 - t1) * torch.exp(-s1)
    return torch.cat([x1, x2], 1)


class INN(torch.nn.Module):
    """n_steps × [ActNorm, coupling, orthogonal mixing] on dim given cond."""

    def __init__(self, dim, cond, n_steps, hidden=256, layers=2, clamp=2.0):
        super().__init__()
        mods = []
        for _ in range(n_steps):
            mods += [ActNorm(dim), Coupling(dim, cond, hidden, layers, clamp), Orthogonal(dim)]
        self.blocks = torch.nn.ModuleList(mods)

    def forward(self, x, c):
        h, total = x, None
        for b in self.blocks:
            h, ld = b(h, c) if isinstance(b, Coupling) else b(h)
            total = ld if total is None else total + ld
        return h, total

    def inverse(self, y, c):
        h = y
        for b in reversed(self.blocks):
            if isinstance(b, Coupling):
                h = coupling_inverse(b, h, c)
            elif isinstance(b, ActNorm):
                h = actnorm_inverse(b, h)
            else:
                h = torch.matmul(h, b.q)
        return h


LOG2PI = math.log(2 * math.pi)


class NF(torch.nn.Module):
    """trainers/nf.c: 8 steps on D given z; sampled by the inverse of base noise."""

    def __init__(self, blocks=8):
        super().__init__()
        self.flow = INN(DIM, COND, blocks)

    def loss(self, u, z):
        e, logdet = self.flow(u, z)
        return (e.square().sum(1) * 0.5 + 0.5 * DIM * LOG2PI - logdet).mean()

    def sample(self, z, fsteps):
        return self.flow.inverse(torch.randn(z.shape[0], DIM), z)


class MLF(torch.nn.Module):
    """trainers/mlf.c: 8 steps on D, split at latent 6, 4 detail steps given [h_c, z]."""

    def __init__(self, latent=6, blocks=8, detail_blocks=4, coarse_weight=10.0):
        super().__init__()
        self.d, self.w = latent, coarse_weight
        self.flow = INN(DIM, COND, blocks)
        self.details = INN(DIM - latent, latent + COND, detail_blocks)

    def loss(self, u, z):
        d = self.d
        h, ld1 = self.flow(u, z)
        h_c, h_d = h[:, :d], h[:, d:]
        e_d, ld2 = self.details(h_d, torch.cat([h_c, z], 1))
        base = torch.cat([h_c, e_d], 1)
        logdet = ld1 + ld2
        h_c, e_d = base[:, :d], base[:, d:]
        sq = h_c.square().sum(1) + e_d.square().sum(1)
        nll = (sq * 0.5 + 0.5 * DIM * LOG2PI - logdet).mean()
        u_hat = self.decode(h_c, z)
        coarse = (u_hat - u).square().sum(1).mean()
        return nll + self.w * coarse

    def decode(self, h_c, z):
        e_d = torch.zeros(h_c.shape[0], DIM - self.d)
        h_d = self.details.inverse(e_d, torch.cat([h_c, z], 1))
        return self.flow.inverse(torch.cat([h_c, h_d], 1), z)

    def sample(self, z, fsteps):
        return self.decode(torch.randn(z.shape[0], self.d), z)


class DNF(torch.nn.Module):
    """trainers/dnf.c: σ-inflated u through 8 steps; h_m of 6, decoded with h_⊥ = 0."""

    def __init__(self, latent=6, blocks=8, sigma=0.1, rec_weight=10.0):
        super().__init__()
        self.d, self.sigma, self.w = latent, sigma, rec_weight
        self.flow = INN(DIM, COND, blocks)

    def loss(self, u, z):
        D, d = DIM, self.d
        u_t = u + self.sigma * torch.randn_like(u)
        h, logdet = self.flow(u_t, z)
        h_m, h_p = h[:, :d], h[:, d:]
        sq = h_m.square().sum(1) + h_p.square().sum(1) / (self.sigma * self.sigma)
        nll = (sq * 0.5 + (0.5 * D * LOG2PI + (D - d) * math.log(self.sigma)) - logdet).mean()
        rec = (self.decode(h_m, z) - u).square().sum(1).mean()
        return nll + self.w * rec

    def decode(self, h_m, z):
        return self.flow.inverse(torch.cat([h_m, torch.zeros(h_m.shape[0], DIM - self.d)], 1), z)

    def sample(self, z, fsteps):
        return self.decode(torch.randn(z.shape[0], self.d), z)


# ---- residual MLPs (architectures/nn.c) ----------------------------------------------

class ResMLP(torch.nn.Module):
    """in -> hidden (act), n_blocks × [n_layers × (linear, act)] with a skip, -> out."""

    def __init__(self, n_in, n_out, hidden, n_blocks, n_layers):
        super().__init__()
        self.inp = torch.nn.Linear(n_in, hidden)
        self.layers = torch.nn.ModuleList(torch.nn.Linear(hidden, hidden)
                                          for _ in range(n_blocks * n_layers))
        self.n_blocks, self.n_layers = n_blocks, n_layers
        self.out = torch.nn.Linear(hidden, n_out)
        self.act = torch.nn.functional.silu

    def forward(self, x):
        h = self.act(self.inp(x))
        for b in range(self.n_blocks):
            r = h
            for l in range(self.n_layers):
                r = self.act(self.layers[b * self.n_layers + l](r))
            h = h + r
        return self.out(h)


class FreeForm(torch.nn.Module):
    """trainers/fff.c (latent = D) and fif.c (latent 3) on architectures/freeform.c: the
    surrogate with vᵀ f′ by a create_graph VJP and g′ v by forward-mode AD."""

    def __init__(self, latent, hidden=128, blocks=2, layers=2, beta=10.0):
        super().__init__()
        self.d, self.beta = latent, beta
        self.enc = ResMLP(DIM + COND, latent, hidden, blocks, layers)
        self.dec = ResMLP(latent + COND, DIM, hidden, blocks, layers)

    def loss(self, u, z):
        x = u.detach().requires_grad_(True)
        h = self.enc(torch.cat([x, z], 1))
        v = torch.randn_like(h)
        with fwAD.dual_level():
            y = self.dec(torch.cat([fwAD.make_dual(h, v), z], 1))
            primal, tangent = fwAD.unpack_dual(y)
            u_rec, gv = primal.clone(), tangent.clone()
        vf = torch.autograd.grad(h, x, v, create_graph=True)[0]
        surr = (vf * gv.detach()).sum(1)
        rec = (u - u_rec).square().sum(1)
        nll_z = h.square().sum(1) * 0.5 + 0.5 * self.d * LOG2PI
        return (nll_z + self.beta * rec - surr).mean()

    def sample(self, z, fsteps):
        return self.dec(torch.cat([torch.randn(z.shape[0], self.d), z], 1))


# ---- the iterative families (architectures/timenet.c, trainers/diff.c, fm.c) ----------

class TimeNet(torch.nn.Module):
    def __init__(self, hidden=128, blocks=3, layers=2, embed=8, cond=COND):
        super().__init__()
        self.embed = embed
        self.mlp = ResMLP(DIM + cond + embed, DIM, hidden, blocks, layers)

    def forward(self, x, t, z):
        half = self.embed // 2
        w = torch.exp(torch.arange(half).to(t.dtype) * (-math.log(10000.0) / half))
        a = (t * 1000.0) * w.unsqueeze(0)
        return self.mlp(torch.cat([x, z, torch.cat([torch.sin(a), torch.cos(a)], 1)], 1))


def checkpointed(fn, *args):
    """fn(*args) under torch.utils.checkpoint in its reentrant form, as ctorch's
    ct_checkpoint: with a scalar that requires grad among the inputs, so that a step whose
    input is noise still trains the network inside it."""
    dummy = torch.zeros((), requires_grad=True)
    return torch.utils.checkpoint.checkpoint(lambda d, *a: fn(*a), dummy, *args,
                                             use_reentrant=True)


class DIFF(torch.nn.Module):
    """DDPM ε-prediction, linear β 1e-4 … 0.02 over T = 1000; DDIM η = 0 sampling."""

    def __init__(self, T=1000, beta_max=0.02):
        super().__init__()
        self.T = T
        abar, a = [1.0], 1.0
        for t in range(1, T + 1):
            beta = 1e-4 + (beta_max - 1e-4) * (t - 1) / (T - 1)
            a *= 1 - beta
            abar.append(a)
        self.abar = abar
        self.register_buffer("abar_t", torch.tensor(abar[1:], dtype=torch.float64).float())
        self.net = TimeNet()

    def loss(self, u, z):
        t = torch.randint(self.T, (u.shape[0],))
        ab = self.abar_t.index_select(0, t).unsqueeze(1)
        eps = torch.randn_like(u)
        x_t = torch.sqrt(ab) * u + torch.sqrt(1 - ab) * eps
        tt = (t.to(u.dtype).unsqueeze(1) + 1) * (1.0 / self.T)
        return torch.nn.functional.mse_loss(self.net(x_t, tt, z), eps)

    def tau(self, i, S):
        return (i * self.T + S // 2) // S

    def step(self, x, z, i, S):
        t, tp = self.tau(i, S), self.tau(i - 1, S)
        a, ap = self.abar[t], self.abar[tp]
        eps = self.net(x, torch.full((x.shape[0], 1), t / self.T), z)
        x0 = (x - math.sqrt(1 - a) * eps) * (1 / math.sqrt(a))
        return x0 * math.sqrt(ap) + math.sqrt(max(1 - ap, 0)) * eps

    def sample(self, z, S, ckpt=False):
        x = torch.randn(z.shape[0], DIM) * 1.0
        for i in range(S, 0, -1):
            x = checkpointed(self.step, x, z, i, S) if ckpt else self.step(x, z, i, S)
        return x


class FM(torch.nn.Module):
    """Flow matching on the linear path; the midpoint solver from t = 0 to 1."""

    def __init__(self):
        super().__init__()
        self.net = TimeNet()

    def loss(self, u, z):
        x0 = torch.randn_like(u)
        t = torch.rand(u.shape[0], 1)
        target = u - x0
        x_t = x0 + t * target
        return torch.nn.functional.mse_loss(self.net(x_t, t, z), target)

    def v(self, x, t, z):
        return self.net(x, torch.full((x.shape[0], 1), t), z)

    def step(self, x, z, t, dt):
        k1 = self.v(x, t, z)
        return x + dt * self.v(x + (dt / 2) * k1, t + dt / 2, z)

    def sample(self, z, n, ckpt=False):
        x = torch.randn(z.shape[0], DIM) * 1.0
        dt = 1.0 / n
        for i in range(n):
            x = checkpointed(self.step, x, z, i * dt, dt) if ckpt else self.step(x, z, i * dt, dt)
        return x


# ---- the fiber-loss stand-in (architectures/conv.c at the vae.* and subject.* defaults) --

class ConvDecoder(torch.nn.Module):
    """(B, 54) -> hidden 256 -> 64·7·7 -> ConvT 64→32 (14) -> ConvT 32→3 (28): logits."""

    def __init__(self):
        super().__init__()
        self.hidden = torch.nn.Linear(DIM, 256)
        self.inp = torch.nn.Linear(256, 64 * 7 * 7)
        self.up1 = torch.nn.ConvTranspose2d(64, 32, 3, 2, 1, output_padding=1)
        self.up0 = torch.nn.ConvTranspose2d(32, 3, 3, 2, 1, output_padding=1)

    def forward(self, u):
        act = torch.nn.functional.silu
        h = act(self.inp(act(self.hidden(u)))).reshape(-1, 64, 7, 7)
        return self.up0(act(self.up1(h)))


class ConvEncoder(torch.nn.Module):
    """(B, 3, 28, 28) -> Conv 3→32 (14) -> Conv 32→64 (7) -> linear 64·7·7 -> 48."""

    def __init__(self):
        super().__init__()
        self.down0 = torch.nn.Conv2d(3, 32, 3, 2, 1)
        self.down1 = torch.nn.Conv2d(32, 64, 3, 2, 1)
        self.out = torch.nn.Linear(64 * 7 * 7, COND)

    def forward(self, x):
        act = torch.nn.functional.silu
        return self.out(torch.flatten(act(self.down1(act(self.down0(x)))), 1))


def fiber_loss_mean(z_hat, z):
    """core/fiber.c: mean over the batch of sqrt(mean_d (z_hat − z)²), 0 at distance 0."""
    m = (z_hat - z).square().mean(1)
    zero = m == torch.zeros_like(m)
    safe = torch.where(zero, torch.ones_like(m), m)
    return torch.where(zero, torch.zeros_like(m), torch.sqrt(safe)).mean()


# ---- NDTM (ndtm/ndtm.c, DESIGN.md §4) with the latent and the pixel prior ---------------

class NdtmOpts:
    """The defaults of the ndtm.* keys (ndtm/ndtm.c's schema), the static target."""

    def __init__(self, steps=100):
        self.steps, self.inner, self.u_lr = steps, 6, 0.002
        self.w_score, self.w_control, self.w_terminal = 0.0, 3e-4, 1.0
        self.squared, self.eta = False, 0.25
        self.gamma_max, self.ramp_start, self.ramp_end = 1.0, 500, 300

    def gamma(self, t):
        """The cosine γ_t: 0 for t ≥ ramp_start, γ for t ≤ ramp_end, the ramp between."""
        if t >= self.ramp_start:
            return 0.0
        if t <= self.ramp_end:
            return self.gamma_max
        x = (self.ramp_start - t) / (self.ramp_start - self.ramp_end)
        return self.gamma_max * 0.5 * (1 - math.cos(math.pi * x))


class LatentPrior(torch.nn.Module):
    """The latent prior: an unconditional ε-network (TimeNet without condition, the
    prior.* default sizes) on linear β 1e-4 … 0.02, T = 1000; eps takes the 1-based t."""

    def __init__(self, T=1000, beta_max=0.02):
        super().__init__()
        self.T, self.beta_max = T, beta_max
        self.abar = DIFF(T, beta_max).abar  # ᾱ_0 … ᾱ_T, Python floats (float64)
        self.net = TimeNet(cond=0)

    def eps(self, x, t):
        b = x.shape[0]
        return self.net(x, torch.full((b, 1), t / self.T, dtype=x.dtype), x.new_zeros(b, 0))


class PixelPrior(torch.nn.Module):
    """The pixel prior (trainers/prior.c, prior.space = pixel): the UNet (unet_twin.py) on
    the images scaled to [−1, 1], flattened to (B, 3·28·28), in the v-parametrisation
    ε = √(1 − ᾱ_t) x_t + √ᾱ_t · net(x_t, t/T), on the same schedule; eps takes the 1-based t.
    Its states map to images as (x + 1)/2, and NDTM clamps its x̂0 to [−1, 1]."""

    clamp = 1.0

    def __init__(self, net, T=1000, beta_max=0.02):
        super().__init__()
        self.T, self.beta_max = T, beta_max
        self.abar = DIFF(T, beta_max).abar
        self.net = net

    def eps(self, x, t):
        b, ab = x.shape[0], self.abar[t]
        img = x.reshape(b, 3, 28, 28)
        v = self.net(img, torch.full((b, 1), t / self.T, dtype=x.dtype))
        return (img * math.sqrt(1 - ab) + math.sqrt(ab) * v).reshape(b, -1)

    @staticmethod
    def decode(x):
        return ((x + 1) * 0.5).reshape(-1, 3, 28, 28)


def vae_decode(decoder):
    """The latent prior's map to images: the VAE decoder's sigmoid image."""
    return lambda u: torch.sigmoid(decoder(u))


class Ndtm:
    """The guided sampler: DDIM on the leading grid t = T − T/S, …, 0 (0-based) and, at each
    step with γ_t ≠ 0, N Adam steps (torch.optim.Adam) on the control u of
    x_c = x_t + γ_t u, each sample's gradient rescaled to a norm of at most 1 and the
    learning rate u_lr (1 − i/S) at step i. decode maps the prior's states to images
    (vae_decode(decoder), PixelPrior.decode); x̂0 is clamped to [−clamp, clamp] when
    clamp > 0 (the pixel prior's 1)."""

    def __init__(self, prior, decode, subject, o, clamp=0.0):
        self.prior, self.decode, self.subject, self.o, self.clamp = prior, decode, subject, o, clamp
        self.rescaled = 0  # per-sample gradients whose norm was above 1

    def time(self, i):
        S, T = self.o.steps, self.prior.T
        return -1 if i >= S else ((S - i - 1) * T) // S

    def tweedie(self, x, eps, a):
        x0 = (x - math.sqrt(1 - a) * eps) / math.sqrt(a)
        return x0.clamp(-self.clamp, self.clamp) if self.clamp > 0 else x0

    def cost(self, x_t, t, eps_t, u, z, gamma):
        """C(u) per sample (B,) at 0-based t; the terminal norm not squared by default."""
        o, a = self.o, self.prior.abar[t + 1]
        gu = gamma * u
        x_c = x_t + gu
        eps_c = self.prior.eps(x_c, t + 1)
        zf = self.subject(self.decode(self.tweedie(x_c, eps_c, a)))
        term = (z - zf).square().sum(1) if o.squared else torch.linalg.vector_norm(z - zf, dim=1)
        c = o.w_terminal * term
        if o.w_control > 0:
            c = c + o.w_control * gu.square().sum(1)
        if o.w_score > 0:
            c = c + o.w_score * (eps_t - eps_c).square().sum(1)
        return c

    def control(self, x_t, t, z, gamma, lr):
        o = self.o
        with torch.no_grad():
            eps_t = self.prior.eps(x_t, t + 1) if o.w_score > 0 else None
        u = torch.zeros_like(x_t, requires_grad=True)
        opt = torch.optim.Adam([u], lr=lr)
        for _ in range(o.inner):
            with torch.enable_grad():
                (g,) = torch.autograd.grad(self.cost(x_t, t, eps_t, u, z, gamma).sum(), u)
            n = g.norm(dim=1, keepdim=True)
            self.rescaled += int((n > 1).sum())
            u.grad = g * (1 / (n + 1e-6)).clamp(max=1)
            opt.step()
        return u.detach()

    @torch.no_grad()
    def sample(self, x_T, z, noises=None):
        """x_T (B, D) -> x_0 (B, D) for the representations z (B, d) of the targets;
        noises: the DDIM noise of each step with σ > 0 in order (else torch.randn)."""
        o, abar, x, k = self.o, self.prior.abar, x_T, 0
        for i in range(o.steps):
            t, s = self.time(i), self.time(i + 1)
            a, a_s = abar[t + 1], abar[s + 1]
            sigma = o.eta * math.sqrt((1 - a_s) / (1 - a) * (1 - a / a_s))
            noise = None
            if sigma > 0:
                noise = noises[k] if noises is not None else torch.randn_like(x)
                k += 1
            gamma, x_c = o.gamma(t), x
            if gamma != 0 and o.inner > 0:
                lr = o.u_lr * (1 - i / o.steps)
                x_c = x + gamma * self.control(x, t, z, gamma, lr)
            eps = self.prior.eps(x_c, t + 1)
            x = math.sqrt(a_s) * self.tweedie(x_c, eps, a) + math.sqrt(max(1 - a_s - sigma * sigma, 0)) * eps
            if noise is not None:
                x = x + sigma * noise
        self.noise_used = k
        return x


def load_c_weights(path, modules):
    """Loads a ctorch parameter archive (ct_params_save: an HDF5 file, one dataset per C
    name) into {C prefix: torch module}; C names "<prefix>.in.weight", ".h<i>.", ".out."
    of architectures/nn.c's MLP map to ResMLP's inp, layers.<i>, out; strict: every
    tensor of each module must be in the file with its shape, and nothing else."""
    import h5py

    with h5py.File(path, "r") as f:
        names = list(f.keys())
        seen = set()
        for prefix, module in modules.items():
            state = {}
            for n in names:
                if not n.startswith(prefix + "."):
                    continue
                key = n[len(prefix) + 1:]
                key = re.sub(r"^in\.", "inp.", key)
                key = re.sub(r"^h(\d+)\.", r"layers.\1.", key)
                state[key] = torch.from_numpy(f[n][()])
                seen.add(n)
            module.load_state_dict(state, strict=True)
        if seen != set(names):
            raise ValueError("%s: entries of no module: %s" % (path, sorted(set(names) - seen)))


def ndtm_models(weights=None, dtype=torch.float32):
    """The prior, the VAE-decoder and the subject stand-ins (frozen, in dtype), with the C
    side's weights when weights names its archive (the C names prior.eps, vae.dec,
    subject.enc)."""
    prior, decoder, subject = LatentPrior().to(dtype), ConvDecoder().to(dtype), ConvEncoder().to(dtype)
    if weights:
        load_c_weights(weights, {"prior.eps": prior.net.mlp, "vae.dec": decoder, "subject.enc": subject})
    for m in (prior, decoder, subject):
        m.requires_grad_(False)
    return prior, decoder, subject


def pixel_prior(path, dtype=torch.float32):
    """The pixel prior of the C side's archive (fl_unet_spec_put's "spec/*" and the UNet's
    parameters "params/prior.eps.*"), frozen, in dtype."""
    import h5py

    with h5py.File(path, "r") as f:
        spec = {"spec/" + k: v[()] for k, v in f["spec"].items()}
        prefix = "params/prior.eps."
        state = {}
        f.visititems(lambda n, o: state.__setitem__(n[len(prefix):], torch.from_numpy(o[()]))
                     if isinstance(o, h5py.Dataset) and n.startswith(prefix) else None)
    prior = PixelPrior(unet_from_spec(spec).to(dtype))
    prior.net.load_state_dict(state, strict=True)
    return prior.requires_grad_(False)


def ndtm_main(a):
    """Times NDTM sampling with a.prior at batch a.batch with a.ndtm_steps DDIM steps: one
    untimed warm-up sample of 2 fully guided steps, then a.reps timed samples; x_T and the
    target images are the first rows of the inputs archive."""
    import h5py

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    prior, decoder, subject = ndtm_models(a.weights)
    models, decode, clamp, key = (prior, decoder, subject), vae_decode(decoder), 0.0, "x_T"
    if a.prior == "pixel":
        prior = pixel_prior(a.pixel)
        models, decode, clamp, key = (prior, subject), PixelPrior.decode, PixelPrior.clamp, "x_T_pixel"
    n_params = sum(p.numel() for m in models for p in m.parameters())
    with h5py.File(a.inputs, "r") as f:
        x_T = torch.from_numpy(f[key][: a.batch])
        img = torch.from_numpy(f["targets"][: a.batch])
    with torch.no_grad():
        z = subject(img)
    warm = NdtmOpts(2)
    warm.ramp_start, warm.ramp_end = 2000, 1000
    rss0 = rss_kb()
    Ndtm(prior, decode, subject, warm, clamp).sample(x_T, z)
    sampler = Ndtm(prior, decode, subject, NdtmOpts(a.ndtm_steps), clamp)
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(a.reps):
        x0 = sampler.sample(x_T, z)
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    n = a.reps * a.batch
    print(json.dumps({"family": "ndtm", "prior": a.prior, "batch": a.batch, "steps": a.ndtm_steps, "seconds": dt,
                      "steps_per_s": n / dt, "params": n_params, "peak_rss_kb": peak,
                      "rss0_kb": rss0, "x0_mean_abs": x0.abs().mean().item(),
                      "cpu_seconds": cpu}), flush=True)


FAMILIES = {
    "nf": NF,
    "mlf": MLF,
    "dnf": DNF,
    "fff": lambda: FreeForm(DIM),
    "fif": lambda: FreeForm(3),
    "diff": DIFF,
    "fm": FM,
}
DEFAULT_FSTEPS = {"diff": 50, "fm": 20}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--family", required=True, choices=sorted(FAMILIES) + ["ndtm"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--lam", type=float, default=0.0)
    ap.add_argument("--fsteps", type=int, default=0)
    ap.add_argument("--ckpt", action="store_true",
                    help="checkpoint each sampler step (diff.checkpoint / fm.checkpoint)")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--ndtm-steps", type=int, default=100, help="ndtm: DDIM steps")
    ap.add_argument("--reps", type=int, default=1, help="ndtm: timed samples")
    ap.add_argument("--prior", choices=("latent", "pixel"), default="latent", help="ndtm: the prior")
    ap.add_argument("--weights", help="ndtm: the C side's parameter archive (latent prior, stand-ins)")
    ap.add_argument("--pixel", help="ndtm: the C side's pixel prior (UNet spec and parameters)")
    ap.add_argument("--inputs", help="ndtm: the archive of x_T (B, 54), x_T_pixel (B, 2352) and "
                    "targets (B, 3, 28, 28)")
    a = ap.parse_args()
    if a.family == "ndtm" and a.prior == "pixel" and not a.pixel:
        ap.error("--prior pixel needs --pixel FILE (bench_families --ndtm-inputs DIR writes DIR/pixel.h5)")
    if a.family == "ndtm":
        return ndtm_main(a)
    if a.ckpt and a.family not in ("diff", "fm"):
        ap.error("--ckpt: only diff and fm have a checkpointed sampler")
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    pool = 8192
    u_all, z_all = torch.randn(pool, DIM), torch.randn(pool, COND)
    model = FAMILIES[a.family]()
    n_params = sum(p.numel() for p in model.parameters())
    decoder = encoder = None
    if a.lam > 0:
        decoder, encoder = ConvDecoder().requires_grad_(False), ConvEncoder().requires_grad_(False)
    fsteps = a.fsteps or DEFAULT_FSTEPS.get(a.family, 0)
    opt = torch.optim.Adam(model.parameters(), lr=a.lr)
    total = a.steps + a.warmup
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=a.lr, total_steps=total,
                                                cycle_momentum=False)
    pos, t0, rss0 = 0, None, rss_kb()  # before the first step, as bench_families.c
    for step in range(total):
        if step == a.warmup:
            t0 = time.perf_counter()
        if pos + a.batch > pool:
            pos = 0
        u, z = u_all[pos : pos + a.batch], z_all[pos : pos + a.batch]
        pos += a.batch
        loss = model.loss(u, z)
        if a.lam > 0:  # trainers/fiber.c objective: λ · fiber loss of differentiable samples
            u_hat = model.sample(z, fsteps, ckpt=True) if a.ckpt else model.sample(z, fsteps)
            x_hat = torch.sigmoid(decoder(u_hat))
            loss = loss + a.lam * fiber_loss_mean(encoder(x_hat), z)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        opt.step()
        sched.step()
    dt = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"family": a.family, "batch": a.batch, "steps": a.steps, "seconds": dt,
                      "steps_per_s": a.steps / dt, "params": n_params, "peak_rss_kb": peak,
                      "rss0_kb": rss0, "final_loss": loss.item()}), flush=True)


if __name__ == "__main__":
    main()
