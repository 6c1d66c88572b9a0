/* The vocabulary of a layer's tensors: one table of the seven projections (their names in
 * every vocabulary the project reads or writes, whether they belong to the MLP or to
 * attention, the widths they map between, their place in a GGUF file) and the one pair of
 * functions that writes and reads a layer tensor's name. Whatever names a projection or a
 * layer's tensor, in the model, the patch formats, the search or the command line, asks
 * here. */
#include <stdio.h>
#include <string.h>

#include "xorpatch/model.h"

static const xp_proj_info projs[XP_N_PROJ] = {
    [XP_PROJ_GATE] =
        {{"ffn_gate", "gate_proj", "ffn_gate.weight", "gate"}, true, XP_DIM_EMBD, XP_DIM_FF, 4},
    [XP_PROJ_UP] = {{"ffn_up", "up_proj", "ffn_up.weight", "up"}, true, XP_DIM_EMBD, XP_DIM_FF, 5},
    [XP_PROJ_DOWN] =
        {{"ffn_down", "down_proj", "ffn_down.weight", "down"}, true, XP_DIM_FF, XP_DIM_EMBD, 6},
    [XP_PROJ_Q] = {{"attn_q", "q_proj", "attn_q.weight", "q"}, false, XP_DIM_EMBD, XP_DIM_Q, 0},
    [XP_PROJ_K] = {{"attn_k", "k_proj", "attn_k.weight", "k"}, false, XP_DIM_EMBD, XP_DIM_KV, 1},
    [XP_PROJ_V] = {{"attn_v", "v_proj", "attn_v.weight", "v"}, false, XP_DIM_EMBD, XP_DIM_KV, 2},
    [XP_PROJ_O] =
        {{"attn_output", "o_proj", "attn_output.weight", "o"}, false, XP_DIM_Q, XP_DIM_EMBD, 3},
};

const xp_proj_info *xp_proj_info_of(int proj)
{
    return proj >= 0 && proj < XP_N_PROJ ? &projs[proj] : NULL;
}

int xp_proj_at_file_order(int order)
{
    for (int i = 0; i < XP_N_PROJ; i++)
        if (projs[i].file_order == order)
            return i;
    return -1;
}

int xp_proj_find(const char *name, int naming)
{
    for (int i = 0; name && naming >= 0 && naming < XP_N_NAMINGS && i < XP_N_PROJ; i++)
        if (strcmp(projs[i].name[naming], name) == 0)
            return i;
    return -1;
}

const char *xp_proj_name(int proj)
{
    return xp_proj_info_of(proj) ? projs[proj].name[XP_NAMING_CLI] : "?";
}

const char *xp_proj_tensor(int proj)
{
    return xp_proj_info_of(proj) ? projs[proj].name[XP_NAMING_GGUF] : "?";
}

int xp_proj_from_name(const char *name) { return xp_proj_find(name, XP_NAMING_CLI); }

static int64_t dim(const xp_shape *s, int d)
{
    switch (d) {
    case XP_DIM_EMBD: return s->n_embd;
    case XP_DIM_FF: return s->n_ff;
    case XP_DIM_Q: return (int64_t)s->n_head * s->head_dim;
    default: return (int64_t)s->n_head_kv * s->head_dim;
    }
}

void xp_proj_shape(const xp_shape *s, int proj, int64_t *ne0, int64_t *ne1)
{
    *ne0 = dim(s, projs[proj].in);
    *ne1 = dim(s, projs[proj].out);
}

int xp_tensor_name(char *out, size_t size, uint32_t layer, const char *name)
{
    return snprintf(out, size, "blk.%u.%s.weight", layer, name);
}

int xp_tensor_name_parse(const char *name, uint32_t *layer)
{
    if (strncmp(name, "blk.", 4) != 0)
        return -1;
    const char *p = name + 4;
    uint64_t l = 0;
    if (*p < '0' || *p > '9' || (p[0] == '0' && p[1] >= '0' && p[1] <= '9'))
        return -1;
    while (*p >= '0' && *p <= '9') {
        l = l * 10 + (uint64_t)(*p++ - '0');
        if (l > UINT32_MAX)
            return -1;
    }
    if (*p++ != '.')
        return -1;
    for (int i = 0; i < XP_N_PROJ; i++) {
        const char *gguf = projs[i].name[XP_NAMING_GGUF];
        size_t n = strlen(gguf);
        if (strncmp(p, gguf, n) == 0 && strcmp(p + n, ".weight") == 0) {
            *layer = (uint32_t)l;
            return i;
        }
    }
    return -1;
}
