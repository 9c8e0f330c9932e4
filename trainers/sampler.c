/* The sampler handle's one function. */
#include "trainers/sampler.h"

#include <stddef.h>

void fl_sampler_free(fl_sampler *s)
{
    if (s && s->free_ctx) s->free_ctx(s->ctx);
    if (s) s->ctx = NULL, s->free_ctx = NULL;
}
