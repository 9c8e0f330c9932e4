"""The PyTorch twin of fiberlab's pixel UNet (architectures/unet.c), written with torch.nn
modules whose parameter names are the C names after "<name>." (load_state_dict(strict=True)
with the C weights). tests/fixtures/check_unet.py checks that it computes what fiberlab
computes; benchmarks/perf/bench_families.py builds the pixel prior of NDTM from it."""
import math

import torch
from torch import nn
from torch.nn import functional as F


def time_embedding(t, dim):
    """fl_time_embedding: [sin(1000 t w_k), cos(1000 t w_k)], w_k = 10000^(-k/half)."""
    half = dim // 2
    w = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=t.dtype) / half)
    a = 1000.0 * t * w[None, :]
    return torch.cat([torch.sin(a), torch.cos(a)], 1)


class ResBlock(nn.Module):
    def __init__(self, cin, cout, tdim, groups):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.temb = nn.Linear(tdim, cout)
        self.norm2 = nn.GroupNorm(groups, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x, a):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.temb(a)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return (self.skip(x) if self.skip is not None else x) + h


class UNet(nn.Module):
    def __init__(self, channels, levels, widths, blocks, groups, embed, tdim):
        super().__init__()
        self.levels, self.blocks, self.embed = levels, blocks, embed
        self.time0 = nn.Linear(embed, tdim)
        self.time1 = nn.Linear(tdim, tdim)
        self.conv_in = nn.Conv2d(channels, widths[0], 3, padding=1)
        kept = [widths[0]]
        ch = widths[0]
        for i in range(levels):
            level = nn.ModuleDict()
            for j in range(blocks):
                level[str(j)] = ResBlock(ch, widths[i], tdim, groups)
                ch = widths[i]
                kept.append(ch)
            if i < levels - 1:
                level["pool"] = nn.Conv2d(ch, ch, 3, stride=2, padding=1)
                kept.append(ch)
            setattr(self, f"down{i}", level)
        self.mid = nn.ModuleList([ResBlock(ch, ch, tdim, groups) for _ in range(2)])
        for i in reversed(range(levels)):
            level = nn.ModuleDict()
            for j in range(blocks + 1):
                level[str(j)] = ResBlock(ch + kept.pop(), widths[i], tdim, groups)
                ch = widths[i]
            if i > 0:
                level["upsample"] = nn.Conv2d(ch, ch, 3, padding=1)
            setattr(self, f"up{i}", level)
        self.norm_out = nn.GroupNorm(groups, ch)
        self.conv_out = nn.Conv2d(ch, channels, 3, padding=1)

    def forward(self, x, t):
        temb = self.time1(F.silu(self.time0(time_embedding(t, self.embed))))
        a = F.silu(temb)
        h = self.conv_in(x)
        kept = [h]
        for i in range(self.levels):
            level = getattr(self, f"down{i}")
            for j in range(self.blocks):
                h = level[str(j)](h, a)
                kept.append(h)
            if i < self.levels - 1:
                h = level["pool"](h)
                kept.append(h)
        for block in self.mid:
            h = block(h, a)
        for i in reversed(range(self.levels)):
            level = getattr(self, f"up{i}")
            for j in range(self.blocks + 1):
                h = level[str(j)](torch.cat([h, kept.pop()], 1), a)
            if i > 0:
                h = level["upsample"](F.interpolate(h, scale_factor=2, mode="nearest"))
        return self.conv_out(F.silu(self.norm_out(h)))


def unet_from_spec(spec, prefix="spec/"):
    """The UNet of an fl_unet_spec written by fl_unet_spec_put: spec maps "<prefix>levels",
    "<prefix>width0", … to integers (numpy or torch scalars)."""
    s = {k[len(prefix):]: int(v) for k, v in spec.items() if k.startswith(prefix)}
    widths = [s["width%d" % i] for i in range(s["levels"])]
    return UNet(s["channels"], s["levels"], widths, s["blocks"], s["groups"], s["embed"], s["time_dim"])
