/* An unconditional ε-prediction UNet ε(x, t) for images (B, C, H, W), the pixel-space
 * prior of NDTM (DESIGN.md §4): DDPM's UNet (Ho et al. 2020) without attention. The time
 * t ∈ [0, 1] (the step over T) goes through the sinusoidal embedding of timenet.h and a
 * two-layer MLP; residual blocks (GroupNorm, SiLU, 3 × 3 conv, the time embedding
 * projected and added, GroupNorm, SiLU, 3 × 3 conv, a 1 × 1 skip conv when the widths
 * differ) at each level; a stride-2 3 × 3 conv between levels on the way down (28 → 14
 * → 7), nearest upsampling and a 3 × 3 conv on the way up, and every activation of the
 * way down concatenated to the input of a block of the way up. Parameters go into a
 * ct_params set as "<name>.<part>.weight" (tests/fixtures/check_unet.py rebuilds the
 * network from those names). */
#ifndef FL_UNET_H
#define FL_UNET_H

#include "ctorch/ct.h"

#define FL_UNET_MAX_LEVELS 4
#define FL_UNET_MAX_BLOCKS 4

typedef struct {
    int channels;                    /* image channels, in and out (3) */
    int height, width;               /* divisible by 2^(levels − 1) (28 × 28: up to 3 levels) */
    int levels;                      /* resolutions, 1 … FL_UNET_MAX_LEVELS */
    int widths[FL_UNET_MAX_LEVELS];  /* channels of each level's blocks */
    int blocks;                      /* residual blocks per level down (up: blocks + 1), 1 … MAX */
    int groups;                      /* GroupNorm groups; divides every width */
    int embed;                       /* size of the sinusoidal time embedding (even) */
    int time_dim;                    /* width of the time MLP (DDPM: 4 · widths[0]) */
} fl_unet_spec;

typedef struct fl_unet fl_unet;

/* Checks a spec: -1 and a message starting with `name` when it cannot be built. */
int fl_unet_check(const fl_unet_spec *s, const char *name);
/* A UNet whose parameters ("<name>.…") go into ps, initialised like torch.nn (U(±1/√fan_in))
 * except the last conv of every block and the output conv, which start at zero (DDPM):
 * the network starts as ε = 0 with every block the identity. NULL and a message;
 * fl_unet_free. */
fl_unet *fl_unet_new(const fl_unet_spec *s, ct_params *ps, const char *name, ct_gen *g);
void fl_unet_free(fl_unet *u);   /* NULL is a no-op; the parameters belong to ps */
const fl_unet_spec *fl_unet_spec_of(const fl_unet *u);

/* x (B, C, H, W), t (B, 1) in [0, 1] -> ε (B, C, H, W). */
ct_tensor *fl_unet_forward(const fl_unet *u, const ct_tensor *x, const ct_tensor *t);
/* The spec into an archive as int64 entries "<prefix>channels", levels, blocks, groups,
 * embed, time_dim and width0 … width<levels − 1> (what the PyTorch twin,
 * benchmarks/perf/unet_twin.py, builds the network from). */
ct_status fl_unet_spec_put(const fl_unet_spec *s, ct_archive *a, const char *prefix);

#endif
