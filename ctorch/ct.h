/* ctorch: the C API over libtorch that all of fiberlab is written against.
 * Opaque handles, one reference each; scopes free the temporaries of a forward pass
 * together; no C++ exception crosses this boundary (see DESIGN.md §6, STYLE.md). */
#ifndef CT_H
#define CT_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------------
 * Handles. Each is one reference; the caller of a function that returns one owns it
 * and releases it with the matching *_free (all *_free(NULL) are no-ops), unless the
 * handle was created inside a scope (see below), which then owns it.
 * ------------------------------------------------------------------------------- */
typedef struct ct_tensor ct_tensor;   /* one reference to a libtorch tensor */
typedef struct ct_scope ct_scope;     /* a region whose tensors are freed together */
typedef struct ct_params ct_params;   /* ordered, named set of parameters and buffers */
typedef struct ct_optim ct_optim;     /* Adam / AdamW with parameter groups */
typedef struct ct_archive ct_archive; /* a named-tensor file, read or being written */
typedef struct ct_script ct_script;   /* a TorchScript module loaded from a file */
typedef struct ct_gen ct_gen;         /* a seeded random generator */

typedef enum {
    CT_OK = 0,
    CT_ERR_ARG,   /* bad argument: NULL handle, shape or dtype mismatch */
    CT_ERR_TORCH, /* libtorch raised an error */
    CT_ERR_IO,    /* file missing, unreadable, unwritable */
    CT_ERR_FORMAT,/* file present but corrupt or of another format */
    CT_STATUS_COUNT
} ct_status;

typedef enum { CT_F32 = 0, CT_F64, CT_I64, CT_I32, CT_U8, CT_BOOL, CT_DTYPE_COUNT } ct_dtype;
typedef enum { CT_CPU = 0, CT_CUDA, CT_DEVICE_KIND_COUNT } ct_device_kind;
typedef struct { ct_device_kind kind; int index; } ct_device;

#define CT_MAX_DIMS 8
typedef struct { int ndim; int64_t d[CT_MAX_DIMS]; } ct_shape;
/* CT_SHAPE(B, D) -> a ct_shape of two dims; up to CT_MAX_DIMS. */
#define CT_NARGS_(...) CT_NARGS_I_(__VA_ARGS__, 8, 7, 6, 5, 4, 3, 2, 1, 0)
#define CT_NARGS_I_(a, b, c, d, e, f, g, h, n, ...) n
#define CT_SHAPE(...) ((ct_shape){CT_NARGS_(__VA_ARGS__), {__VA_ARGS__}})
#define CT_SCALAR_SHAPE ((ct_shape){0, {0}})

/* ---------------------------------------------------------------------------------
 * Errors. A failing call returns NULL (or a non-zero ct_status) and leaves a message
 * in a thread-local slot. An op given a NULL input returns NULL and keeps the earlier
 * message, so a forward pass can check once at its end. A getter (ct_size, ct_item,
 * ct_params_find, …) that fails always leaves a message of its own naming itself and
 * the cause; given a NULL handle it keeps the earlier message after its own, as
 * "ct_size: NULL tensor (earlier error: ct_narrow: …)".
 * ------------------------------------------------------------------------------- */
const char *ct_last_error(void);   /* borrowed; "" when none; valid until the next error */
void ct_clear_error(void);
void ct_set_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Live handles of every kind (tensors, params, optimizers, scripts, archives, scopes,
 * generators) in the process: tests check it is back to its start value. */
long ct_live_handles(void);

/* ---------------------------------------------------------------------------------
 * Scopes. Tensors created while a scope is open belong to the innermost one and are
 * freed by ct_scope_end. ct_scope_keep moves a tensor to the enclosing scope (or, at
 * the outermost scope, hands it to the caller) and returns it. ct_free on a scoped
 * tensor frees it early. Scopes nest and are per thread.
 * ------------------------------------------------------------------------------- */
ct_scope *ct_scope_begin(void);
ct_tensor *ct_scope_keep(ct_scope *s, ct_tensor *t);  /* returns t; NULL stays NULL */
ct_tensor *ct_unscope(ct_tensor *t); /* caller owns t from now on, whatever scope it was in */
void ct_scope_end(ct_scope *s);      /* s must be the innermost open scope */

/* ---------------------------------------------------------------------------------
 * Global state: seeding, threads, devices, grad mode.
 * ------------------------------------------------------------------------------- */
void ct_manual_seed(uint64_t seed);   /* libtorch's default generator */
void ct_set_num_threads(int n);
int ct_get_num_threads(void);
const char *ct_torch_version(void);   /* static string, e.g. "1.13.1" */
bool ct_cuda_available(void);
int ct_cuda_device_count(void);
/* Parses "cpu", "cuda", "cuda:1"; CT_ERR_ARG on anything else. */
ct_status ct_device_parse(const char *s, ct_device *out);
void ct_device_name(ct_device d, char *buf, size_t n);
ct_device ct_default_device(void);     /* where creation functions put tensors */
void ct_set_default_device(ct_device d);
bool ct_grad_enabled(void);
bool ct_set_grad_enabled(bool on);     /* returns the previous mode, to restore */
const char *ct_dtype_name(ct_dtype d);
/* The floating dtype models create their parameters in (CT_F32 unless changed; tests
 * of invertibility and log-determinants switch to CT_F64). Returns the previous one. */
ct_dtype ct_float_dtype(void);
ct_dtype ct_set_float_dtype(ct_dtype dt);
/* libtorch's (legacy, CPU) profiler between begin and end: every ATen op and autograd
 * node run on this thread or the engine's, written at end as a Chrome trace to path
 * (benchmarks/perf/profile_ops.py sums it per op). One at a time; CT_ERR_ARG when one
 * is running (begin) or none is (end). */
ct_status ct_profile_begin(const char *path);
ct_status ct_profile_end(void);

/* ---------------------------------------------------------------------------------
 * Generators.
 * ------------------------------------------------------------------------------- */
ct_gen *ct_gen_new(uint64_t seed);                 /* caller frees; CPU generator */
/* A generator that draws on device d (caller frees): random tensors made with it are
 * drawn there, then placed on the default device (ct_gen_new draws on the CPU and
 * copies). A CPU d is ct_gen_new. NULL and a message naming the device when d is not
 * there (CUDA without CUDA, an index past the last GPU). CUDA and CPU streams of one
 * seed differ. */
ct_gen *ct_gen_new_on(uint64_t seed, ct_device d);
ct_device ct_gen_device(const ct_gen *g);  /* {CT_DEVICE_KIND_COUNT, -1} on NULL */
void ct_gen_free(ct_gen *g);
/* The generator's full state as a U8 tensor (caller owns / scope owns). */
ct_tensor *ct_gen_get_state(const ct_gen *g);
ct_status ct_gen_set_state(ct_gen *g, const ct_tensor *state);

/* ---------------------------------------------------------------------------------
 * Tensor creation. Results are new handles (scope-owned inside a scope), on the
 * default device unless said otherwise. gen may be NULL (default generator).
 * ------------------------------------------------------------------------------- */
void ct_free(ct_tensor *t);
ct_tensor *ct_ref(const ct_tensor *t); /* a second handle to the same tensor */
ct_tensor *ct_zeros(ct_shape s, ct_dtype dt);
ct_tensor *ct_ones(ct_shape s, ct_dtype dt);
ct_tensor *ct_full(ct_shape s, double value, ct_dtype dt);
ct_tensor *ct_scalar(double value, ct_dtype dt);  /* 0-dim */
ct_tensor *ct_eye(int64_t n, ct_dtype dt);
ct_tensor *ct_arange(int64_t n, ct_dtype dt);     /* 0, 1, …, n-1 */
ct_tensor *ct_linspace(double a, double b, int64_t n, ct_dtype dt);
ct_tensor *ct_randn(ct_shape s, ct_dtype dt, ct_gen *gen);
ct_tensor *ct_rand(ct_shape s, ct_dtype dt, ct_gen *gen);      /* U[0,1) */
ct_tensor *ct_randint(int64_t high, ct_shape s, ct_gen *gen);  /* I64 in [0, high) */
ct_tensor *ct_randperm(int64_t n, ct_gen *gen);                /* I64 */
ct_tensor *ct_zeros_like(const ct_tensor *t);
ct_tensor *ct_ones_like(const ct_tensor *t);
ct_tensor *ct_randn_like(const ct_tensor *t, ct_gen *gen);
/* Copies n = prod(shape) elements of dtype dt from host memory. */
ct_tensor *ct_from_data(const void *data, ct_shape s, ct_dtype dt);
/* Copies the tensor (any device, any layout) into host memory of nbytes;
 * CT_ERR_ARG if nbytes differs from numel * element size. */
ct_status ct_to_data(const ct_tensor *t, void *data, size_t nbytes);
double ct_item(const ct_tensor *t);   /* one-element tensor -> double; NAN on error */

/* ---------------------------------------------------------------------------------
 * Properties and conversions.
 * ------------------------------------------------------------------------------- */
/* On failure each returns the value in its comment and a message naming itself. */
int ct_ndim(const ct_tensor *t);       /* -1 on NULL */
/* negative dim counts from the end; -1 on NULL or a dim out of range */
int64_t ct_size(const ct_tensor *t, int dim);
ct_shape ct_shape_of(const ct_tensor *t);  /* ndim -1 on NULL or over CT_MAX_DIMS dims */
int64_t ct_numel(const ct_tensor *t);      /* -1 on NULL */
ct_dtype ct_dtype_of(const ct_tensor *t);  /* CT_DTYPE_COUNT on NULL or another dtype */
ct_device ct_device_of(const ct_tensor *t); /* {CT_DEVICE_KIND_COUNT, -1} on NULL */
size_t ct_dtype_size(ct_dtype dt);
bool ct_requires_grad(const ct_tensor *t); /* false (and a message) on NULL */
ct_status ct_set_requires_grad(ct_tensor *t, bool on);
bool ct_is_defined(const ct_tensor *t);
/* "(2, 3) f32 cpu" into buf, for messages. */
void ct_describe(const ct_tensor *t, char *buf, size_t n);

ct_tensor *ct_to_dtype(const ct_tensor *t, ct_dtype dt);
/* NULL and a message naming the device when d is not there (see ct_gen_new_on). */
ct_tensor *ct_to_device(const ct_tensor *t, ct_device d);
ct_tensor *ct_detach(const ct_tensor *t);
ct_tensor *ct_clone(const ct_tensor *t);
ct_tensor *ct_contiguous(const ct_tensor *t);
/* The same values in the channels-last (NHWC) memory layout; t (B, C, H, W). Convolutions
 * and ct_group_norm keep that layout, ct_contiguous returns to NCHW. */
ct_tensor *ct_to_channels_last(const ct_tensor *t);
/* True when t is 4-D and laid out channels-last and not also NCHW-contiguous. */
bool ct_is_channels_last(const ct_tensor *t);

/* ---------------------------------------------------------------------------------
 * Elementwise ops (broadcasting like PyTorch). New tensors.
 * ------------------------------------------------------------------------------- */
ct_tensor *ct_add(const ct_tensor *a, const ct_tensor *b);
ct_tensor *ct_sub(const ct_tensor *a, const ct_tensor *b);
ct_tensor *ct_mul(const ct_tensor *a, const ct_tensor *b);
ct_tensor *ct_div(const ct_tensor *a, const ct_tensor *b);
ct_tensor *ct_pow(const ct_tensor *a, const ct_tensor *b);
ct_tensor *ct_maximum(const ct_tensor *a, const ct_tensor *b);
ct_tensor *ct_minimum(const ct_tensor *a, const ct_tensor *b);
ct_tensor *ct_remainder(const ct_tensor *a, const ct_tensor *b); /* Python-style mod */
ct_tensor *ct_atan2(const ct_tensor *a, const ct_tensor *b);
ct_tensor *ct_adds(const ct_tensor *a, double s);     /* a + s */
ct_tensor *ct_muls(const ct_tensor *a, double s);     /* a * s */
ct_tensor *ct_pows(const ct_tensor *a, double p);     /* a ^ p */
ct_tensor *ct_rsubs(const ct_tensor *a, double s);    /* s - a */
ct_tensor *ct_remainders(const ct_tensor *a, double m);
ct_tensor *ct_clamp(const ct_tensor *a, double lo, double hi);
ct_tensor *ct_clamp_min(const ct_tensor *a, double lo);
/* a + alpha * b: the fused form of an update */
ct_tensor *ct_axpy(const ct_tensor *a, double alpha, const ct_tensor *b);

ct_tensor *ct_neg(const ct_tensor *a);
ct_tensor *ct_exp(const ct_tensor *a);
ct_tensor *ct_log(const ct_tensor *a);
ct_tensor *ct_log1p(const ct_tensor *a);
ct_tensor *ct_expm1(const ct_tensor *a);
ct_tensor *ct_sqrt(const ct_tensor *a);
ct_tensor *ct_rsqrt(const ct_tensor *a);
ct_tensor *ct_square(const ct_tensor *a);
ct_tensor *ct_abs(const ct_tensor *a);
ct_tensor *ct_sign(const ct_tensor *a);
ct_tensor *ct_sin(const ct_tensor *a);
ct_tensor *ct_cos(const ct_tensor *a);
ct_tensor *ct_tanh(const ct_tensor *a);
ct_tensor *ct_atan(const ct_tensor *a);
ct_tensor *ct_sigmoid(const ct_tensor *a);
ct_tensor *ct_floor(const ct_tensor *a);
ct_tensor *ct_reciprocal(const ct_tensor *a);
ct_tensor *ct_isfinite(const ct_tensor *a);           /* BOOL */

/* Comparisons give BOOL tensors; where selects a where cond, else b. */
ct_tensor *ct_lt(const ct_tensor *a, const ct_tensor *b);
ct_tensor *ct_gt(const ct_tensor *a, const ct_tensor *b);
ct_tensor *ct_lts(const ct_tensor *a, double s);
ct_tensor *ct_gts(const ct_tensor *a, double s);
ct_tensor *ct_eq(const ct_tensor *a, const ct_tensor *b);
ct_tensor *ct_where(const ct_tensor *cond, const ct_tensor *a, const ct_tensor *b);

/* ---------------------------------------------------------------------------------
 * Reductions. dim may be negative. keepdim keeps a size-1 dim.
 * ------------------------------------------------------------------------------- */
ct_tensor *ct_sum(const ct_tensor *a);                        /* 0-dim */
ct_tensor *ct_mean(const ct_tensor *a);
ct_tensor *ct_max_all(const ct_tensor *a);
ct_tensor *ct_min_all(const ct_tensor *a);
ct_tensor *ct_sum_dim(const ct_tensor *a, int dim, bool keepdim);
ct_tensor *ct_mean_dim(const ct_tensor *a, int dim, bool keepdim);
ct_tensor *ct_std_dim(const ct_tensor *a, int dim, bool unbiased, bool keepdim);
ct_tensor *ct_var_dim(const ct_tensor *a, int dim, bool unbiased, bool keepdim);
ct_tensor *ct_max_dim(const ct_tensor *a, int dim, bool keepdim);    /* values */
ct_tensor *ct_min_dim(const ct_tensor *a, int dim, bool keepdim);    /* values */
ct_tensor *ct_argmax(const ct_tensor *a, int dim, bool keepdim);     /* I64 */
ct_tensor *ct_argmin(const ct_tensor *a, int dim, bool keepdim);     /* I64 */
ct_tensor *ct_logsumexp(const ct_tensor *a, int dim, bool keepdim);
ct_tensor *ct_argsort(const ct_tensor *a, int dim);                  /* I64, ascending */
ct_tensor *ct_norm(const ct_tensor *a);                       /* Frobenius, 0-dim */
ct_tensor *ct_norm_dim(const ct_tensor *a, int dim, bool keepdim);   /* 2-norm */
/* Sum over all dims but the first: (B, ...) -> (B,). */
ct_tensor *ct_sum_rows(const ct_tensor *a);

/* ---------------------------------------------------------------------------------
 * Shape, indexing, joining. Views share storage with their input (like PyTorch).
 * ------------------------------------------------------------------------------- */
ct_tensor *ct_reshape(const ct_tensor *a, ct_shape s);        /* one dim may be -1 */
ct_tensor *ct_flatten(const ct_tensor *a, int start_dim);     /* (B, ...) -> (B, prod) at 1 */
ct_tensor *ct_transpose(const ct_tensor *a, int d0, int d1);
ct_tensor *ct_permute(const ct_tensor *a, ct_shape order);
ct_tensor *ct_unsqueeze(const ct_tensor *a, int dim);
ct_tensor *ct_squeeze(const ct_tensor *a, int dim);
ct_tensor *ct_expand(const ct_tensor *a, ct_shape s);          /* -1 keeps a dim */
ct_tensor *ct_repeat(const ct_tensor *a, ct_shape reps);
ct_tensor *ct_repeat_interleave(const ct_tensor *a, int64_t reps, int dim);
ct_tensor *ct_narrow(const ct_tensor *a, int dim, int64_t start, int64_t len);
ct_tensor *ct_select(const ct_tensor *a, int dim, int64_t index); /* drops dim */
ct_tensor *ct_index_select(const ct_tensor *a, int dim, const ct_tensor *idx);
ct_tensor *ct_gather(const ct_tensor *a, int dim, const ct_tensor *idx);
ct_tensor *ct_masked_select(const ct_tensor *a, const ct_tensor *mask);
ct_tensor *ct_cat(const ct_tensor *const *ts, int n, int dim);
ct_tensor *ct_cat2(const ct_tensor *a, const ct_tensor *b, int dim);
/* torch.split_with_sizes: x cut along dim into n views of sizes[i] (which must add up
 * to x's size there), written to out[0..n); one autograd node takes all their gradients
 * back (where n narrows would each scatter into a zero tensor of x's size). On failure
 * every out[i] is NULL, with a message. */
ct_status ct_split(const ct_tensor *x, int dim, const int64_t *sizes, int n, ct_tensor **out);
ct_tensor *ct_stack(const ct_tensor *const *ts, int n, int dim);
ct_tensor *ct_flip(const ct_tensor *a, int dim);
ct_tensor *ct_roll(const ct_tensor *a, int64_t shift, int dim);
/* In place: copies src into dst (broadcasting); dst keeps its identity. */
ct_status ct_copy_(ct_tensor *dst, const ct_tensor *src);
ct_status ct_fill_(ct_tensor *dst, double value);
ct_status ct_zero_(ct_tensor *t);
/* In place: dst[index along dim] = src (no autograd; for buffers). */
ct_status ct_index_copy_(ct_tensor *dst, int dim, const ct_tensor *idx, const ct_tensor *src);

/* ---------------------------------------------------------------------------------
 * Linear algebra.
 * ------------------------------------------------------------------------------- */
ct_tensor *ct_matmul(const ct_tensor *a, const ct_tensor *b);
ct_tensor *ct_mm(const ct_tensor *a, const ct_tensor *b);
ct_tensor *ct_bmm(const ct_tensor *a, const ct_tensor *b);
ct_tensor *ct_outer(const ct_tensor *a, const ct_tensor *b);
ct_tensor *ct_inverse(const ct_tensor *a);
ct_tensor *ct_slogdet_abs(const ct_tensor *a);   /* log|det a|, batched over leading dims */
ct_tensor *ct_qr_q(const ct_tensor *a);          /* Q of the reduced QR */
ct_tensor *ct_matrix_exp(const ct_tensor *a);
/* (N,D),(M,D)->(N,M) L2 distances. First derivatives only (no forward-mode derivative
 * nor double backward in libtorch 1.13): no JVP goes through it. */
ct_tensor *ct_cdist(const ct_tensor *a, const ct_tensor *b);

/* ---------------------------------------------------------------------------------
 * Functional nn ops, mirroring torch.nn.functional.
 * ------------------------------------------------------------------------------- */
/* y = x w^T + b; x (.., in), w (out, in), b (out) or NULL. */
ct_tensor *ct_linear(const ct_tensor *x, const ct_tensor *w, const ct_tensor *b);
/* x (B, C, H, W), w (O, C/groups, kh, kw), b (O) or NULL. */
ct_tensor *ct_conv2d(const ct_tensor *x, const ct_tensor *w, const ct_tensor *b,
                     int stride, int padding, int groups);
/* w (C, O/groups, kh, kw). */
ct_tensor *ct_conv_transpose2d(const ct_tensor *x, const ct_tensor *w, const ct_tensor *b,
                               int stride, int padding, int output_padding, int groups);
/* x (B, C, H, W), w and b (C) or NULL. On a channels-last CPU tensor (float32/float64)
 * one fused node with its own loops (the layout's output); otherwise at::group_norm. */
ct_tensor *ct_group_norm(const ct_tensor *x, int groups, const ct_tensor *w,
                         const ct_tensor *b, double eps);
/* SiLU(group_norm(x + shift)), shift (B, C) added to every pixel of its channel, or NULL.
 * On a channels-last CPU tensor with shift NULL or (B, C) of x's dtype, one fused node
 * (the three ops in two passes over the data, forward and backward); otherwise the
 * composition of ATen ops. */
ct_tensor *ct_group_norm_silu(const ct_tensor *x, const ct_tensor *shift, int groups,
                              const ct_tensor *w, const ct_tensor *b, double eps);
/* Normalizes over the last dim; w, b of that size or NULL. */
ct_tensor *ct_layer_norm(const ct_tensor *x, const ct_tensor *w, const ct_tensor *b,
                         double eps);
ct_tensor *ct_relu(const ct_tensor *x);
ct_tensor *ct_leaky_relu(const ct_tensor *x, double slope);
ct_tensor *ct_silu(const ct_tensor *x);
ct_tensor *ct_gelu(const ct_tensor *x);
/* The affine coupling of an invertible network as one fused op (one autograd node, one
 * pass over the data on the CPU): h = [s, t] (B, 2d) from the coupling's subnetwork,
 * σ(s) = clamp·(2/π)·atan(s/clamp) (the soft clamp; the identity for clamp <= 0);
 * forward y = x ⊙ exp(σ(s)) + t with *logdet = Σⱼ σ(s)ⱼ (B,); inverse (x is then the
 * output y) (y − t) ⊙ exp(−σ(s)) with *logdet = −Σⱼ σ(s)ⱼ. x (B, d). Differentiable
 * twice and in forward mode (those run the same formulas as ATen ops); logdet may be
 * NULL. tests/test_ctorch_autograd.c checks it against the composed chain. */
ct_tensor *ct_affine_coupling(const ct_tensor *x, const ct_tensor *h, double clamp, bool inverse,
                              ct_tensor **logdet);
/* The monotone rational-quadratic spline transform of neural spline flows (Durkan et
 * al. 2019), elementwise with linear tails: on [−bound, bound] a spline of `bins` bins,
 * the identity outside. h (B, d·(3·bins − 1)) holds per dimension, in this order, the
 * unnormalised bin widths (bins), heights (bins) and derivatives at the interior knots
 * (bins − 1); widths and heights go through a softmax (each at least 1e-3 of the
 * interval), derivatives through a softplus shifted so that h = 0 gives derivative 1 —
 * and with it the identity. The end derivatives are 1 (the tails join smoothly). Forward
 * y = s(x) with *logdet = Σⱼ log s'(xⱼ) (B,); inverse (x is then y) s⁻¹(y), the root of
 * the quadratic, with *logdet = −Σⱼ log s'(s⁻¹(yⱼ)). Composed of ATen ops: differentiable
 * to any order, on any device; logdet may be NULL. tests/test_inn.c checks inverse and
 * log-determinant against the autograd Jacobian. */
ct_tensor *ct_rq_spline(const ct_tensor *x, const ct_tensor *h, int bins, double bound, bool inverse,
                        ct_tensor **logdet);
/* ActNorm as one fused op: y = (x + bias) ⊙ exp(logs) per column with *logdet = Σ logs
 * for every row (B,); inverse (x is then y) y ⊙ exp(−logs) − bias with *logdet = −Σ logs.
 * x (B, D), bias and logs (D). Differentiable twice and in forward mode, like
 * ct_affine_coupling; logdet may be NULL. */
ct_tensor *ct_actnorm(const ct_tensor *x, const ct_tensor *bias, const ct_tensor *logs,
                      bool inverse, ct_tensor **logdet);
/* A plain MLP as one autograd node: a_0 = x (B, in), h_i = a_i W_iᵀ + b_i for i = 0 … n−1,
 * a_{i+1} = act(h_i) for i < n − 1, result h_{n−1}. ws[i] (out_i, in_i); bs[i] (out_i), or
 * bs[0] (B, out_0) (a per-row bias: e.g. another input's share of the first layer). It
 * runs the ATen kernels of the composed chain (ct_linear, the activation; their backward
 * as autograd computes it), so values and gradients equal the chain's bit for bit with
 * 1 node instead of 3n − 1. A backward that builds a graph, forward mode, and no grad
 * mode run the chain op by op. LEAKY_RELU's slope is 0.01. */
typedef enum { CT_ACT_SILU = 0, CT_ACT_RELU, CT_ACT_TANH, CT_ACT_GELU, CT_ACT_LEAKY_RELU, CT_ACT_COUNT } ct_act;
ct_tensor *ct_mlp(const ct_tensor *x, const ct_tensor *const *ws, const ct_tensor *const *bs, int n,
                  ct_act act);
ct_tensor *ct_softplus(const ct_tensor *x);
ct_tensor *ct_elu(const ct_tensor *x);
ct_tensor *ct_softmax(const ct_tensor *x, int dim);
ct_tensor *ct_log_softmax(const ct_tensor *x, int dim);
ct_tensor *ct_dropout(const ct_tensor *x, double p, bool train);
ct_tensor *ct_avg_pool2d(const ct_tensor *x, int k, int stride);
ct_tensor *ct_max_pool2d(const ct_tensor *x, int k, int stride);
ct_tensor *ct_adaptive_avg_pool2d(const ct_tensor *x, int oh, int ow);
ct_tensor *ct_upsample_nearest2d(const ct_tensor *x, int scale);
ct_tensor *ct_upsample_bilinear2d(const ct_tensor *x, int oh, int ow);
/* Resamples images x (B, C, H, W) at the affine grids theta (B, 2, 3), bilinear,
 * zeros outside (torch.nn.functional.affine_grid + grid_sample, align_corners=False).
 * First derivatives only: libtorch 1.13 has neither a forward-mode derivative nor a
 * double backward for it, so no JVP of any kind goes through it. */
ct_tensor *ct_affine_warp(const ct_tensor *x, const ct_tensor *theta);
/* mean over the batch of -log softmax(logits)[target]; target I64 (B,). */
ct_tensor *ct_cross_entropy(const ct_tensor *logits, const ct_tensor *target);
ct_tensor *ct_mse(const ct_tensor *a, const ct_tensor *b);    /* mean squared error */

/* ---------------------------------------------------------------------------------
 * Autograd.
 * ------------------------------------------------------------------------------- */
/* Accumulates d loss / d leaf into the .grad of every leaf that requires grad.
 * loss must have one element. retain_graph keeps the graph for another pass. */
ct_status ct_backward(const ct_tensor *loss, bool retain_graph);
ct_tensor *ct_grad_of(const ct_tensor *leaf);  /* its .grad, NULL (no error) if none */
ct_status ct_zero_grad(ct_tensor *leaf);       /* sets .grad to undefined */
/* torch.autograd.grad: gradients of sum_i <outputs[i], grad_outputs[i]> (grad_outputs
 * may be NULL for scalar outputs) w.r.t. inputs. Writes n_in new handles into grads;
 * an input the outputs do not depend on gets zeros when allow_unused, else an error.
 * create_graph makes the result differentiable again (the double-VJP trick). */
ct_status ct_grad(const ct_tensor *const *outputs, const ct_tensor *const *grad_outputs,
                  int n_out, const ct_tensor *const *inputs, int n_in, ct_tensor **grads,
                  bool retain_graph, bool create_graph, bool allow_unused);
/* One output, one input: vᵀ ∂y/∂x. */
ct_tensor *ct_vjp(const ct_tensor *y, const ct_tensor *x, const ct_tensor *v,
                  bool create_graph);
/* (∂y/∂x) v by the double-VJP trick: two reverse passes; works for every op that has
 * a double backward (in ct.h all but ct_cdist and ct_affine_warp).
 * y must come from x with a graph; create_graph keeps the result differentiable. */
ct_tensor *ct_jvp_double_vjp(const ct_tensor *y, const ct_tensor *x, const ct_tensor *v,
                             bool create_graph);

/* Activation checkpointing (torch.utils.checkpoint, the reentrant form): y = fn(ctx,
 * inputs, n) run with grad mode off, so that none of its intermediate tensors is kept;
 * the graph gets one node that saves only the inputs and a copy of ctx, and whose
 * backward runs fn again with grad mode on (on detached inputs that require grad where
 * the originals do) and backpropagates the incoming gradient through that recomputed
 * graph. The gradients of what fn uses besides its inputs (the parameters of a network
 * it calls) are accumulated into their .grad by that inner pass, exactly as without
 * checkpointing; the inputs' gradients flow on to the outer graph. The node is made
 * whenever grad mode is on, even when no input requires grad (a step whose input is
 * noise still trains the network inside it).
 *   fn must compute the same result from the same inputs both times: draw random
 * numbers outside it and pass them as inputs. ctx's ctx_size bytes are copied (fn gets a
 * pointer to the copy, aligned for any type; NULL when ctx_size is 0); pointers inside
 * them, like the network's, must stay valid until the backward pass has run or the graph
 * is freed. Tensors fn needs must come as inputs (borrowed; none NULL), not through ctx:
 * the caller may free its handles before backward. fn's result and temporaries live in
 * a scope ct_checkpoint opens around each call: fn returns one tensor (new, or one of
 * the inputs) and keeps none.
 *   Only ct_backward can go through the node (as in PyTorch, not ct_grad / ct_vjp, whose
 * pass would leak gradients into .grad; their pass fails with a message). With grad
 * mode off ct_checkpoint is one call of fn. Returns y as a new handle (scope-owned
 * inside a scope), or NULL and fn's message after "ct_checkpoint: " (ct_backward's then,
 * when the recomputation fails). */
typedef ct_tensor *(*ct_step_fn)(const void *ctx, const ct_tensor *const *inputs, int n);
ct_tensor *ct_checkpoint(ct_step_fn fn, const void *ctx, size_t ctx_size,
                         const ct_tensor *const *inputs, int n);
/* How many times, in this process, a ct_checkpoint node has run its fn again in a
 * backward pass (for tests and benchmarks: that the recomputation happens). */
long ct_checkpoint_recomputes(void);

/* Forward-mode AD (libtorch's dual numbers). Enter a level, make x dual with a
 * tangent, run the function, read the output's tangent, exit the level. Ops that
 * have no forward derivative in libtorch 1.13 fail with a message: of ct.h's, only
 * ct_cdist and ct_affine_warp (tests/test_ctorch_autograd.c checks the others).
 * ct_jvp_fwad does all of it and always exits the level; prefer it.
 * There is one level at a time (libtorch 1.13 has no nesting, and its levels are
 * process-wide): ct_fwad_enter while one is active refuses, returning -1 with a
 * message naming the active level, which stays active until ct_fwad_exit. */
int64_t ct_fwad_enter(void);   /* the level, or -1 and a message */
void ct_fwad_exit(int64_t level);  /* level < 0: no-op; a wrong level: a message */
int64_t ct_fwad_active_level(void);  /* the level ctorch entered and not exited, or -1 */
/* J v of y = fn(ctx, x) by forward mode: enters a level, makes x dual with tangent v
 * (same shape), calls fn, reads the tangent of its result, and exits the level on
 * every path (fn returning NULL, libtorch raising, a level already active). Returns J v
 * as a new handle (scope-owned inside a scope; zeros when y does not depend on x);
 * *y_out (y_out may be NULL) gets y as a new handle the same way, differentiable in
 * reverse mode where x is. fn's own tensors live in a scope that ct_jvp_fwad ends
 * before it returns: fn must return a tensor, not keep any. NULL and the message of
 * what failed (fn's, or "ct_jvp_fwad: …") on error, *y_out NULL then. */
ct_tensor *ct_jvp_fwad(ct_tensor *(*fn)(void *ctx, const ct_tensor *x), void *ctx,
                       const ct_tensor *x, const ct_tensor *v, ct_tensor **y_out);
ct_tensor *ct_fwad_make_dual(const ct_tensor *primal, const ct_tensor *tangent,
                             int64_t level);
ct_tensor *ct_fwad_tangent(const ct_tensor *dual, int64_t level); /* zeros if none */
ct_tensor *ct_fwad_primal(const ct_tensor *dual, int64_t level);

/* ---------------------------------------------------------------------------------
 * Parameter sets: ordered, named tensors. Parameters are leaves that require grad;
 * buffers are saved with them but not trained. The set owns what is added and frees
 * it in ct_params_free; the handles returned are borrowed (valid while the set is).
 * ------------------------------------------------------------------------------- */
ct_params *ct_params_new(void);
void ct_params_free(ct_params *p);
/* Takes ownership of init (unscoping it), makes it a leaf requiring grad, returns it
 * (borrowed). NULL init or a duplicate name: NULL and an error; init is consumed
 * (freed) then too, so a failed add leaks nothing. */
ct_tensor *ct_params_add(ct_params *p, const char *name, ct_tensor *init);
ct_tensor *ct_params_add_buffer(ct_params *p, const char *name, ct_tensor *init);
/* Getters: on a NULL set or an index out of range they return 0 / NULL / false and a
 * message naming themselves. */
int ct_params_count(const ct_params *p);            /* parameters and buffers */
ct_tensor *ct_params_at(const ct_params *p, int i); /* borrowed */
const char *ct_params_name(const ct_params *p, int i); /* borrowed */
bool ct_params_is_buffer(const ct_params *p, int i);
/* borrowed, or NULL and a message naming the missing name */
ct_tensor *ct_params_find(const ct_params *p, const char *name);
int64_t ct_params_numel(const ct_params *p);        /* trainable elements */
void ct_params_zero_grad(ct_params *p);
/* Scales gradients so their global 2-norm is at most max_norm (max_norm <= 0: only
 * measures); returns the norm before clipping, NAN when any gradient is not finite. */
double ct_params_clip_grad_norm(ct_params *p, double max_norm);
/* Freezes or unfreezes every parameter (requires_grad). */
void ct_params_set_trainable(ct_params *p, bool on);
/* Moves every parameter and buffer (with its gradient) to d. The handles stay the same
 * (the set's and an optimizer's keep working); each holds a new tensor, so ct_ref
 * copies taken before keep the old one. Entries already on d are left alone. All or
 * nothing; CT_ERR_ARG and a message naming d when d is not there. */
ct_status ct_params_to_device(ct_params *p, ct_device d);
/* Copies values (not identity) from src into dst: same names and shapes required. */
ct_status ct_params_copy_values(ct_params *dst, const ct_params *src);
/* A new set holding a detached copy of every parameter and buffer of p, by name and
 * kind, on p's devices, that no optimizer sees (an EMA's start). Caller frees; NULL and
 * a message on failure. */
ct_params *ct_params_clone(const ct_params *p);
/* Exponential moving average, in place and without autograd: for every parameter
 * ema ← decay·ema + (1 − decay)·src; buffers are copied from src. Both sets must hold
 * the same names, each of the same shape, dtype and kind (parameter or buffer), else
 * CT_ERR_ARG naming the first that differs and nothing changes. decay in [0, 1]. src
 * may be on another device. Borrows both sets. */
ct_status ct_params_ema_update(ct_params *ema, const ct_params *src, double decay);
/* Save all parameters and buffers to an archive file (atomically), and load them
 * back into an existing set: every name must be present with the same shape and
 * dtype, else an error naming it and nothing is changed. */
ct_status ct_params_save(const ct_params *p, const char *path);
ct_status ct_params_load(ct_params *p, const char *path);
ct_status ct_params_put(const ct_params *p, ct_archive *a, const char *prefix);
ct_status ct_params_get(ct_params *p, const ct_archive *a, const char *prefix);

/* ---------------------------------------------------------------------------------
 * Optimizers: Adam and AdamW (the torch.optim formulas, no amsgrad). Groups share a
 * rule but have their own lr and weight decay. The optimizer borrows the sets.
 * ------------------------------------------------------------------------------- */
typedef enum { CT_ADAM = 0, CT_ADAMW, CT_OPTIM_KIND_COUNT } ct_optim_kind;
typedef struct {
    double lr, beta1, beta2, eps, weight_decay;
} ct_adam_opts;
ct_adam_opts ct_adam_defaults(void);  /* lr 1e-3, betas (0.9, 0.999), eps 1e-8, wd 0 */
ct_optim *ct_optim_new(ct_optim_kind kind);
void ct_optim_free(ct_optim *o);
/* Adds every trainable parameter of p as one group; returns the group index, or -1
 * and an error for options torch.optim would reject (lr, eps, weight decay < 0,
 * betas outside [0, 1), NaN). */
int ct_optim_add_group(ct_optim *o, const ct_params *p, ct_adam_opts opts);
int ct_optim_groups(const ct_optim *o);
ct_status ct_optim_set_lr(ct_optim *o, int group, double lr);  /* group -1: all */
double ct_optim_get_lr(const ct_optim *o, int group);
ct_status ct_optim_step(ct_optim *o);
/* Clips and steps in one: the global 2-norm of the gradients goes to *grad_norm (may
 * be NULL); when it is not finite nothing is updated (the caller skips the step), else
 * the gradients are scaled by max_norm / (norm + 1e-6) when norm > max_norm > 0 (as
 * torch.nn.utils.clip_grad_norm_) inside the update, which is one fused pass per
 * contiguous CPU parameter. */
ct_status ct_optim_step_clipped(ct_optim *o, double max_norm, double *grad_norm);
void ct_optim_zero_grad(ct_optim *o);
int64_t ct_optim_steps_taken(const ct_optim *o);
/* Moves the optimizer state (the Adam moments) to d. Not needed for training: a step
 * moves the moments of each parameter to wherever the parameter now is (after
 * ct_params_to_device); this moves them all at once, e.g. to free a GPU. All or
 * nothing; CT_ERR_ARG and a message naming d when d is not there. */
ct_status ct_optim_to_device(ct_optim *o, ct_device d);
ct_status ct_optim_put(const ct_optim *o, ct_archive *a, const char *prefix);
ct_status ct_optim_get(ct_optim *o, const ct_archive *a, const char *prefix);
ct_status ct_optim_save(const ct_optim *o, const char *path);
ct_status ct_optim_load(ct_optim *o, const char *path);

/* ---------------------------------------------------------------------------------
 * Archives: a file of named tensors (and scalars stored as 0-dim tensors) that Python
 * reads with h5py: an HDF5 file with one dataset per entry, dtype, shape and order
 * kept, behind a 512-byte header with a CRC-32 of the whole file (layout in
 * ct_archive.cpp and docs/runs.md). Written atomically: to "<path>.tmp.<pid>",
 * fsync'd, renamed over path.
 * ------------------------------------------------------------------------------- */
ct_archive *ct_archive_new(void);                 /* empty, for writing */
void ct_archive_free(ct_archive *a);
/* Stores a host copy of t under name (replacing an earlier one). A name is an HDF5
 * path: "/" makes groups ("params/nf.block0.w"), no part is empty or ".", and no
 * entry is a group of another ("a" and "a/b"); CT_ERR_ARG otherwise. */
ct_status ct_archive_put(ct_archive *a, const char *name, const ct_tensor *t);
ct_status ct_archive_put_f64(ct_archive *a, const char *name, double v);
ct_status ct_archive_put_i64(ct_archive *a, const char *name, int64_t v);
ct_status ct_archive_write(const ct_archive *a, const char *path);
/* Reads and verifies a whole file; NULL with a message naming path on failure (a
 * corrupt file, another format, an HDF5 file not written by ct_archive_write). */
ct_archive *ct_archive_read(const char *path);
int ct_archive_count(const ct_archive *a);
const char *ct_archive_name(const ct_archive *a, int i);   /* borrowed */
bool ct_archive_has(const ct_archive *a, const char *name);
/* A new tensor (CPU) with the stored value; NULL and an error if absent. */
ct_tensor *ct_archive_get(const ct_archive *a, const char *name);
ct_status ct_archive_get_f64(const ct_archive *a, const char *name, double *v);
ct_status ct_archive_get_i64(const ct_archive *a, const char *name, int64_t *v);

/* ---------------------------------------------------------------------------------
 * TorchScript modules (torch.jit.save from Python). Loaded in eval mode with their
 * parameters frozen; gradients flow to the inputs.
 * ------------------------------------------------------------------------------- */
ct_script *ct_script_load(const char *path, ct_device d);  /* caller frees */
void ct_script_free(ct_script *m);
/* Whether the module has a method of that name (forward, or one marked
 * @torch.jit.export); false on NULL. */
bool ct_script_has_method(const ct_script *m, const char *name);
/* Calls method (NULL: "forward") with n_in tensors (borrowed; inputs may be NULL when
 * n_in is 0). Where the method's signature has a float, int or bool argument, the
 * input there must have one element and is passed as that scalar. The result, a
 * tensor or a tuple or list of tensors (nested ones flattened in order), goes into
 * outputs[0 .. *n_out) as new handles (scope-owned inside a scope). On failure the
 * status is non-zero, every outputs[i < max_out] is NULL and the message names the
 * method: no such method, a result that is not tensors, libtorch's own error (wrong
 * argument count or shape), or more than max_out tensors, in which case *n_out says
 * how many there were (else *n_out is 0). */
ct_status ct_script_call(ct_script *m, const char *method, const ct_tensor *const *inputs,
                         int n_in, ct_tensor **outputs, int max_out, int *n_out);
/* forward with one tensor and one tensor back: ct_script_call with messages naming
 * ct_script_forward. */
ct_tensor *ct_script_forward(ct_script *m, const ct_tensor *x);

/* ---------------------------------------------------------------------------------
 * Misc.
 * ------------------------------------------------------------------------------- */
/* Largest |a - b| over all elements (as double); NAN on error or shape mismatch. */
double ct_max_abs_diff(const ct_tensor *a, const ct_tensor *b);
/* Writes a short human summary of tensor values (first few) for test failures. */
void ct_print(const char *label, const ct_tensor *t);

#ifdef __cplusplus
}
#endif
#endif
