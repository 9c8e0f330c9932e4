/* The built-in fiber-model families, the one list every other list derives from
 * (model.family's choices, the schema's sections and roles, `config --doc`, messages):
 * X(name, summary), the family defined in trainers/<name>.c as fl_family_<name> with
 * its keys fl_keys_<name>[] (the <name>.* section). Add a family here and nowhere else. */
#ifndef FL_FAMILIES_H
#define FL_FAMILIES_H

#define FL_FAMILIES(X) \
    X(nf, "conditional normalizing flow (affine coupling INN)") \
    X(mlf, "multilevel (split) conditional INN with a coarse latent and zero-padded decoding") \
    X(dnf, "denoising normalizing flow (Horvat & Pfister 2021), decoded with h_⊥ = 0") \
    X(diff, "conditional diffusion (DDPM training, DDIM sampling)") \
    X(fm, "conditional flow matching (linear path, Euler/midpoint ODE sampling)") \
    X(fff, "free-form flow (Draxler et al. 2024): free encoder/decoder, Hutchinson volume term") \
    X(fif, "free-form injective flow (Sorrenson et al. 2023): a d-dim manifold, decoded h ~ N(0, I_d)")

/* "nf|…": the names, as a string constant */
#define FL_FAMILY_NAME_BAR_(id, summary) "|" #id
#define FL_FAMILY_NAMES (FL_FAMILIES(FL_FAMILY_NAME_BAR_) + 1)

#endif
