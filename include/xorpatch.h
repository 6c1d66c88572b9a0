/* xorpatch — the public C API of libxorpatch.
 *
 * xorpatch adapts true 1-bit language models (Qwen3 architecture, every weight one
 * sign bit in GGUF type Q1_0) by searching for sparse XOR patches over their binary
 * weights. This header is what another program links against: it includes the header of
 * every layer of the library, lowest first. Each layer's header, include/xorpatch/LAYER.h,
 * includes those of the layers it builds on, so a program may also include just the
 * layers it uses; scripts/check-layers.sh holds the order. Every function that can fail
 * returns 0 or a negative XP_E* code and fills an xp_err; nothing in the library prints
 * or exits. */
#ifndef XORPATCH_H
#define XORPATCH_H

#include "xorpatch/core.h"
#include "xorpatch/gguf.h"
#include "xorpatch/tok.h"
#include "xorpatch/model.h"
#include "xorpatch/patch.h"
#include "xorpatch/probe.h"
#include "xorpatch/train.h"
#include "xorpatch/search.h"
#include "xorpatch/eval.h"
#include "xorpatch/job.h"
#include "xorpatch/serve.h"

#endif
