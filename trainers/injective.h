/* The whole flows of the two injective families, MLF (trainers/mlf.c) and DNF
 * (trainers/dnf.c), for the code that checks them: the model is what the family's
 * create returns (fl_family_mlf.create, fl_family_dnf.create); z is the standardized
 * condition (B, C) the family sees. Every function returns a new tensor (NULL and
 * ct_last_error() on failure); logdet, when not NULL, gets log|det ∂out/∂u| (B,). */
#ifndef FL_INJECTIVE_H
#define FL_INJECTIVE_H

#include "ctorch/ct.h"

/* MLF: u (B, D) ↔ its base point [h_c, e_d] (B, D): h_c the coarse part (B, d), e_d the
 * details' base point (B, D − d), both with law N(0, I). */
ct_tensor *fl_mlf_forward(void *mlf, const ct_tensor *u, const ct_tensor *z, ct_tensor **logdet);
ct_tensor *fl_mlf_inverse(void *mlf, const ct_tensor *base, const ct_tensor *z);
/* The zero-padded decoding of h_c (B, d): fl_mlf_inverse([h_c, 0]) (B, D). */
ct_tensor *fl_mlf_decode(void *mlf, const ct_tensor *h_c, const ct_tensor *z);

/* DNF: u (B, D) ↔ h = [h_m, h_⊥] (B, D) under the bijection F, h_m of d dimensions. */
ct_tensor *fl_dnf_forward(void *dnf, const ct_tensor *u, const ct_tensor *z, ct_tensor **logdet);
ct_tensor *fl_dnf_inverse(void *dnf, const ct_tensor *h, const ct_tensor *z);
/* The manifold point of h_m (B, d): F⁻¹([h_m, 0]; z) (B, D). */
ct_tensor *fl_dnf_decode(void *dnf, const ct_tensor *h_m, const ct_tensor *z);

#endif
