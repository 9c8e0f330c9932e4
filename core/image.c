/* PNG grids with libpng; errors come back through setjmp as a message, never abort. */
#include "core/image.h"

#include <errno.h>
#include <math.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"

fl_grid_opts fl_grid_defaults(void)
{
    return (fl_grid_opts){.cols = 8, .scale = 2, .sep = 2, .sep_rgb = {128, 128, 128}};
}

static uint8_t to_byte(float v)
{
    if (!(v > 0)) return 0;   /* also NaN */
    if (v >= 1) return 255;
    return (uint8_t)lrintf(v * 255.0f);
}

static void on_png_error(png_structp png, png_const_charp msg)
{
    char *buf = png_get_error_ptr(png);
    snprintf(buf, 256, "%s", msg);
    png_longjmp(png, 1);
}
static void on_png_warning(png_structp png, png_const_charp msg) { (void)png, (void)msg; }

/* Writes rows of an RGB image; 0 or -1 with the libpng message in why. */
static int write_png(FILE *f, uint8_t *pixels, int W, int H, char why[256])
{
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, why, on_png_error, on_png_warning);
    if (!png) {
        snprintf(why, 256, "cannot start libpng");
        return -1;
    }
    png_infop info = png_create_info_struct(png);
    png_bytep *rows = malloc((size_t)H * sizeof *rows);
    volatile int rc = -1;
    if (info && rows && setjmp(png_jmpbuf(png)) == 0) {
        for (int y = 0; y < H; y++) rows[y] = pixels + (size_t)y * (size_t)W * 3;
        png_init_io(png, f);
        png_set_IHDR(png, info, (png_uint_32)W, (png_uint_32)H, 8, PNG_COLOR_TYPE_RGB,
                     PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
        png_write_info(png, info);
        png_write_image(png, rows);
        png_write_end(png, NULL);
        rc = 0;
    } else if (!info || !rows) {
        snprintf(why, 256, "out of memory");
    }
    png_destroy_write_struct(&png, info ? &info : NULL);
    free(rows);
    return rc;
}

int fl_png_grid_write(const char *path, const float *img, int64_t n, int c, int h, int w,
                      const fl_grid_opts *o)
{
    fl_grid_opts d = fl_grid_defaults();
    if (!o) o = &d;
    if (n <= 0 || (c != 1 && c != 3) || h <= 0 || w <= 0 || o->cols <= 0 || o->scale < 1 ||
        o->sep < 0 || o->sep > 16)
        return fl_fail("%s: bad grid: %lld tiles of %dx%dx%d, %d columns, scale %d, separator %d",
                       path, (long long)n, c, h, w, o->cols, o->scale, o->sep);
    int cols = n < o->cols ? (int)n : o->cols;
    int64_t rows = (n + cols - 1) / cols;
    int64_t tw = (int64_t)w * o->scale, th = (int64_t)h * o->scale;
    int64_t W = cols * tw + (cols + 1) * (int64_t)o->sep;
    int64_t H = rows * th + (rows + 1) * (int64_t)o->sep;
    if (W > 65535 || H > 65535) return fl_fail("%s: grid of %lldx%lld pixels is too large", path,
                                               (long long)W, (long long)H);
    uint8_t *px = malloc((size_t)W * (size_t)H * 3);
    if (!px) return fl_fail("%s: out of memory", path);
    for (int64_t i = 0; i < W * H; i++) memcpy(px + 3 * i, o->sep_rgb, 3);
    size_t plane = (size_t)h * (size_t)w;
    for (int64_t t = 0; t < n; t++) {
        const float *tile = img + (size_t)t * (size_t)c * plane;
        int64_t x0 = o->sep + (t % cols) * (tw + o->sep), y0 = o->sep + (t / cols) * (th + o->sep);
        for (int y = 0; y < th; y++) {
            uint8_t *row = px + ((size_t)(y0 + y) * (size_t)W + (size_t)x0) * 3;
            size_t sy = (size_t)(y / o->scale) * (size_t)w;
            for (int x = 0; x < tw; x++) {
                size_t s = sy + (size_t)(x / o->scale);
                for (int k = 0; k < 3; k++) row[3 * x + k] = to_byte(tile[(c == 3 ? (size_t)k * plane : 0) + s]);
            }
        }
    }
    char tmp[4200], why[256] = "";
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        free(px);
        return fl_fail("%s: cannot write: %s", path, strerror(errno));
    }
    int rc = write_png(f, px, (int)W, (int)H, why);
    free(px);
    if (fflush(f) != 0 || ferror(f)) {
        if (rc == 0) snprintf(why, sizeof why, "write error: %s", strerror(errno));
        rc = -1;
    }
    if (fclose(f) != 0 && rc == 0) {
        snprintf(why, sizeof why, "write error: %s", strerror(errno));
        rc = -1;
    }
    if (rc == 0 && rename(tmp, path) != 0) {
        snprintf(why, sizeof why, "cannot rename the temp file: %s", strerror(errno));
        rc = -1;
    }
    if (rc) {
        unlink(tmp);
        return fl_fail("%s: %s", path, why);
    }
    return 0;
}

int fl_png_grid_write_tensor(const char *path, const ct_tensor *img, const fl_grid_opts *o)
{
    if (!img) return fl_fail_ctx("%s", path);
    if (ct_ndim(img) != 4) {
        char d[128];
        ct_describe(img, d, sizeof d);
        return fl_fail("%s: expected images (n, c, h, w), got %s", path, d);
    }
    ct_shape s = ct_shape_of(img);
    ct_scope *sc = ct_scope_begin();
    ct_tensor *f = ct_to_dtype(ct_detach(img), CT_F32);
    size_t bytes = (size_t)ct_numel(img) * sizeof(float);
    float *buf = malloc(bytes ? bytes : 1);
    int rc = 0;
    if (!buf) rc = fl_fail("%s: out of memory", path);
    else if (!f || ct_to_data(f, buf, bytes) != CT_OK) rc = fl_fail_ctx("%s", path);
    ct_scope_end(sc);
    if (rc == 0) rc = fl_png_grid_write(path, buf, s.d[0], (int)s.d[1], (int)s.d[2], (int)s.d[3], o);
    free(buf);
    return rc;
}
