/* PNG grids (core/image.h): the layout read back with libpng, and no file on failure. */
#include <criterion/criterion.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/image.h"
#include "core/log.h"

static char tmp[256];
static void make_tmp(void)
{
    snprintf(tmp, sizeof tmp, "/tmp/fl_test_image.XXXXXX");
    cr_assert_not_null(mkdtemp(tmp));
}
static void remove_tmp(void)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    cr_expect_eq(system(cmd), 0);
}
TestSuite(image, .init = make_tmp, .fini = remove_tmp);

/* Reads an RGB PNG into a new buffer. */
static uint8_t *read_png(const char *path, int *w, int *h)
{
    png_image im;
    memset(&im, 0, sizeof im);
    im.version = PNG_IMAGE_VERSION;
    cr_assert(png_image_begin_read_from_file(&im, path), "%s: %s", path, im.message);
    im.format = PNG_FORMAT_RGB;
    uint8_t *buf = malloc(PNG_IMAGE_SIZE(im));
    cr_assert(png_image_finish_read(&im, NULL, buf, 0, NULL), "%s", im.message);
    *w = (int)im.width;
    *h = (int)im.height;
    return buf;
}

Test(image, grid_layout_scale_and_separator)
{
    enum { N = 5, C = 3, H = 4, W = 3 };
    float img[N * C * H * W];
    for (int t = 0; t < N; t++)
        for (int k = 0; k < C; k++)
            for (int i = 0; i < H * W; i++) img[(t * C + k) * H * W + i] = (float)(t * 0.2 + 0.1 * k);
    img[0] = 2.0f;     /* clamped to 255 */
    img[1] = -1.0f;    /* clamped to 0 */
    fl_grid_opts o = fl_grid_defaults();
    o.cols = 3;
    o.scale = 2;
    o.sep = 1;
    char p[300];
    snprintf(p, sizeof p, "%s/grid.png", tmp);
    cr_assert_eq(fl_png_grid_write(p, img, N, C, H, W, &o), 0, "%s", fl_error());
    int w, h;
    uint8_t *px = read_png(p, &w, &h);
    cr_expect_eq(w, 3 * 6 + 4);
    cr_expect_eq(h, 2 * 8 + 3);
    /* separator at (0, 0); tile 0 pixel (0, 0) scaled to 2 × 2 at (1, 1) */
    cr_expect_eq(px[0], 128);
    cr_expect_eq(px[(1 * w + 1) * 3], 255);
    cr_expect_eq(px[(2 * w + 2) * 3], 255);
    cr_expect_eq(px[(1 * w + 3) * 3], 0, "pixel 1 of tile 0");
    /* tile 4 (row 1, col 1), channel R = 0.8 */
    int x0 = 1 + 1 * 7, y0 = 1 + 1 * 9;
    cr_expect_eq(px[(y0 * w + x0) * 3], 204);
    /* the empty sixth tile has the separator color */
    int x5 = 1 + 2 * 7, y5 = 1 + 1 * 9;
    cr_expect_eq(px[(y5 * w + x5) * 3], 128);
    free(px);
}

Test(image, gray_tiles_and_tensors)
{
    ct_scope *s = ct_scope_begin();
    ct_tensor *t = ct_full(CT_SHAPE(2, 1, 5, 5), 0.5, CT_F64);
    char p[300];
    snprintf(p, sizeof p, "%s/gray.png", tmp);
    fl_grid_opts o = fl_grid_defaults();
    cr_assert_eq(fl_png_grid_write_tensor(p, t, &o), 0, "%s", fl_error());
    int w, h;
    uint8_t *px = read_png(p, &w, &h);
    cr_expect_eq(w, 2 * 10 + 3 * 2);
    cr_expect_eq(h, 10 + 2 * 2);
    cr_expect_eq(px[(2 * w + 2) * 3], 128);
    cr_expect_eq(px[(2 * w + 2) * 3 + 2], 128);
    free(px);
    ct_scope_end(s);
}

Test(image, failure_leaves_no_file)
{
    float img[3 * 4 * 4] = {0};
    char p[300];
    snprintf(p, sizeof p, "%s/missing/dir/grid.png", tmp);
    cr_expect_eq(fl_png_grid_write(p, img, 1, 3, 4, 4, NULL), -1);
    cr_expect(strstr(fl_error(), p), "message: %s", fl_error());
    snprintf(p, sizeof p, "%s/bad.png", tmp);
    cr_expect_eq(fl_png_grid_write(p, img, 1, 2, 4, 4, NULL), -1, "two channels accepted");
    cr_expect_neq(access(p, F_OK), 0, "a failed write left %s", p);
}
