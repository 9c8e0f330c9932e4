/* PNG image grids (libpng): rows × cols tiles of gray or RGB images in [0, 1], with a
 * separator between tiles and optional nearest-neighbour upscaling — sample grids,
 * "target then samples" rows. Written atomically ("<path>.tmp.<pid>", then renamed),
 * so a failed write leaves no file. */
#ifndef FL_IMAGE_H
#define FL_IMAGE_H

#include <stdint.h>

#include "ctorch/ct.h"

typedef struct {
    int cols;          /* tiles per row (> 0); rows = ceil(n / cols) */
    int scale;         /* each pixel becomes scale × scale (≥ 1) */
    int sep;           /* separator width in output pixels (0..16) */
    uint8_t sep_rgb[3];/* separator and empty-tile color */
} fl_grid_opts;
/* cols 8, scale 2, sep 2, a mid gray separator. */
fl_grid_opts fl_grid_defaults(void);

/* Writes n tiles img (n, c, h, w), c = 1 (gray) or 3 (RGB), values clamped to [0, 1]
 * (NaN shows as 0), tile i at row i / cols, column i % cols. -1 and "PATH: what". */
int fl_png_grid_write(const char *path, const float *img, int64_t n, int c, int h, int w,
                      const fl_grid_opts *o);
/* The same from a tensor (n, c, h, w) of any float dtype and device. */
int fl_png_grid_write_tensor(const char *path, const ct_tensor *img, const fl_grid_opts *o);

#endif
