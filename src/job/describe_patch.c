/* A patch described for a person or a program (job.h): where it came from, what it flips
 * per layer and projection, how many weights it touches, and what it costs to store in
 * each format. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "core/utf8.h"
#include "xorpatch/job.h"

/* Q1_0 weights of the whole model, for the share a patch touches (0 when unknown). */
uint64_t xp_model_file_weights(const char *model, const char *shape)
{
    uint64_t total = 0;
    if (model) {
        xp_gguf *g;
        if (xp_gguf_open(&g, model, NULL))
            return 0;
        for (size_t i = 0; i < g->n_tensors; i++)
            if (g->tensors[i].type == XP_TYPE_Q1_0)
                total += (uint64_t)g->tensors[i].ne[0] * (uint64_t)g->tensors[i].ne[1];
        xp_gguf_close(g);
    } else if (shape) {
        xp_shape s;
        if (xp_shape_preset(shape, &s, NULL))
            return 0;
        uint64_t q = (uint64_t)s.n_head * s.head_dim, kv = (uint64_t)s.n_head_kv * s.head_dim;
        total = s.n_vocab * s.n_embd * (s.tied_output ? 1 : 2) +
                (uint64_t)s.n_layer * (s.n_embd * (2 * q + 2 * kv) + 3ull * s.n_embd * s.n_ff);
    }
    return total;
}

/* Layer of a tensor "blk.L.P.weight" and its projection's place in a file's order
 * (attn_q first), which is the order of the columns; or -1. */
static int split(const char *name, unsigned *layer)
{
    int proj = xp_tensor_name_parse(name, layer);
    return proj < 0 ? -1 : xp_proj_info_of(proj)->file_order;
}

typedef struct sizes {
    size_t json, binary, compact, bankai;
} sizes;

static void measure(const xp_patch *p, sizes *z)
{
    uint8_t *buf;
    size_t len;
    memset(z, 0, sizeof *z);
    if (!xp_patch_serialize(p, XP_PATCH_JSON, &buf, &len, NULL))
        z->json = len, free(buf);
    if (!xp_patch_serialize(p, XP_PATCH_BINARY, &buf, &len, NULL))
        z->binary = len, free(buf);
    if (!xp_patch_serialize(p, XP_PATCH_BINARY_COMPACT, &buf, &len, NULL))
        z->compact = len, free(buf);
    z->bankai = 12 * p->n_flips;
}

void xp_patch_describe_print(FILE *out, xp_patch *p, uint64_t weights)
{
    xp_patch_stats s;
    xp_patch_total_stats(p, &s);
    char id[65] = "", a[32], b[32];
    xp_patch_flips_sha256(p, id, NULL);
    sizes z;
    measure(p, &z);
    fprintf(out, "patch         %s (%s, %s)\n", p->name ? p->name : "?",
            xp_patch_format_name(p->format), p->path ? p->path : "-");
    if (p->description && *p->description)
        fprintf(out, "description   %s\n", p->description);
    fprintf(out, "base          %s%s%s\n", p->base_sha256[0] ? p->base_sha256 : "no fingerprint",
            p->base_model ? "; " : "", p->base_model ? p->base_model : "");
    if (p->architecture)
        fprintf(out, "architecture  %s\n", p->architecture);
    if (p->tool || p->created)
        fprintf(out, "made by       %s%s%s\n", p->tool ? p->tool : "?", p->created ? ", " : "",
                p->created ? p->created : "");
    if (p->source)
        fprintf(out, "source        %s\n", p->source);
    if (p->search)
        fprintf(out, "search        %s\n", p->search);
    fprintf(out, "flips_sha256  %s\n", id);
    fprintf(out, "flips         %llu: %llu rows, %llu blocks, %llu scale bits, %llu masks",
            (unsigned long long)s.flips, (unsigned long long)s.rows, (unsigned long long)s.blocks,
            (unsigned long long)s.scale_bits, (unsigned long long)s.masks);
    if (s.row_groups)
        fprintf(out, ", %llu row groups (blocks named by row)", (unsigned long long)s.row_groups);
    fprintf(out, " on %zu tensors\n", p->n_tensors);
    if (p->n_listed != p->n_flips)
        fprintf(out,
                "overlaps      the file lists %zu flips: %zu merge or cancel within it "
                "(XOR), so it flips as %zu\n",
                p->n_listed, p->n_listed - p->n_flips, p->n_flips);
    if (s.bits_known && weights)
        fprintf(out, "bits          %s of %s 1-bit weights (%.6f%%)\n",
                xp_thousands(s.bits, a, sizeof a), xp_thousands(weights, b, sizeof b),
                100.0 * (double)s.bits / (double)weights);
    else if (s.bits_known && s.weights)
        fprintf(out, "bits          %s (%.6f%% of the touched tensors' weights)\n",
                xp_thousands(s.bits, a, sizeof a), 100.0 * (double)s.bits / (double)s.weights);
    else if (s.bits_known)
        fprintf(out,
                "bits          %s (their share of the weights is unknown without the layout: "
                "-m MODEL or --shape NAME)\n",
                xp_thousands(s.bits, a, sizeof a));
    else
        fprintf(out, "bits          unknown without the layout (-m MODEL or --shape NAME)\n");
    fprintf(out,
            "sizes         xorpatch JSON %zu B, binary %zu B (%.1f B/flip; %zu B with "
            "provenance), Bankai %zu B (12 B/flip)\n",
            z.json, z.compact, (double)z.compact / (double)(p->n_flips ? p->n_flips : 1), z.binary,
            z.bankai);

    /* per layer and projection: flips (bits) */
    fprintf(out, "\n%-8s", "layer");
    for (int k = 0; k < XP_N_PROJ; k++)
        fprintf(out, " %12s", xp_proj_tensor(xp_proj_at_file_order(k)));
    fprintf(out, " %14s\n", "bits");
    unsigned max_layer = 0;
    for (size_t t = 0; t < p->n_tensors; t++) {
        unsigned l;
        if (split(p->tensors[t].name, &l) >= 0 && l > max_layer)
            max_layer = l;
    }
    for (unsigned l = 0; l <= max_layer; l++) {
        uint64_t flips[XP_N_PROJ] = {0}, bits = 0;
        bool any = false, known = true;
        for (size_t t = 0; t < p->n_tensors; t++) {
            unsigned tl;
            int k = split(p->tensors[t].name, &tl);
            if (k < 0 || tl != l)
                continue;
            xp_patch_stats ts;
            xp_patch_tensor_stats(p, t, &ts);
            flips[k] += ts.flips, bits += ts.bits, known &= ts.bits_known, any = true;
        }
        if (!any)
            continue;
        fprintf(out, "%-8u", l);
        for (int k = 0; k < XP_N_PROJ; k++)
            fprintf(out, " %12s", flips[k] ? xp_thousands(flips[k], a, sizeof a) : ".");
        fprintf(out, " %14s\n", known ? xp_thousands(bits, b, sizeof b) : "?");
    }
    for (size_t t = 0; t < p->n_tensors; t++) {
        unsigned l;
        if (split(p->tensors[t].name, &l) >= 0)
            continue;
        xp_patch_stats ts;
        xp_patch_tensor_stats(p, t, &ts);
        fprintf(out, "%s: %llu flips, %s bits\n", p->tensors[t].name, (unsigned long long)ts.flips,
                ts.bits_known ? xp_thousands(ts.bits, b, sizeof b) : "?");
    }
}

cJSON *xp_patch_describe_json(xp_patch *p, uint64_t weights)
{
    xp_patch_stats s;
    xp_patch_total_stats(p, &s);
    char id[65] = "";
    xp_patch_flips_sha256(p, id, NULL);
    sizes z;
    measure(p, &z);
    cJSON *o = cJSON_CreateObject();
    xp_json_add_string(o, "name", p->name ? p->name : "");
    cJSON_AddStringToObject(o, "format", xp_patch_format_name(p->format));
    if (p->base_sha256[0])
        cJSON_AddStringToObject(o, "base_sha256", p->base_sha256);
    else
        cJSON_AddNullToObject(o, "base_sha256");
    cJSON_AddStringToObject(o, "flips_sha256", id);
    cJSON_AddNumberToObject(o, "flips", (double)s.flips);
    cJSON_AddNumberToObject(o, "flips_listed", (double)p->n_listed);
    cJSON_AddNumberToObject(o, "rows", (double)s.rows);
    cJSON_AddNumberToObject(o, "blocks", (double)s.blocks);
    cJSON_AddNumberToObject(o, "scale_bits", (double)s.scale_bits);
    cJSON_AddNumberToObject(o, "masks", (double)s.masks);
    cJSON_AddNumberToObject(o, "row_groups", (double)s.row_groups);
    if (s.bits_known)
        cJSON_AddNumberToObject(o, "bits", (double)s.bits);
    else
        cJSON_AddNullToObject(o, "bits");
    if (s.bits_known && weights)
        cJSON_AddNumberToObject(o, "weights_percent", 100.0 * (double)s.bits / (double)weights);
    else
        cJSON_AddNullToObject(o, "weights_percent");
    cJSON *zs = cJSON_AddObjectToObject(o, "sizes");
    cJSON_AddNumberToObject(zs, "json", (double)z.json);
    cJSON_AddNumberToObject(zs, "binary", (double)z.binary);
    cJSON_AddNumberToObject(zs, "binary_compact", (double)z.compact);
    cJSON_AddNumberToObject(zs, "bankai", (double)z.bankai);
    cJSON *layers = cJSON_AddArrayToObject(o, "layers");
    for (size_t t = 0; t < p->n_tensors; t++) {
        unsigned l;
        int k = split(p->tensors[t].name, &l);
        if (k < 0)
            continue;
        cJSON *e = NULL;
        for (cJSON *c = layers->child; c && !e; c = c->next)
            if ((unsigned)cJSON_GetObjectItem(c, "layer")->valueint == l)
                e = c;
        if (!e) {
            e = cJSON_CreateObject();
            cJSON_AddNumberToObject(e, "layer", l);
            cJSON_AddItemToArray(layers, e);
        }
        xp_patch_stats ts;
        xp_patch_tensor_stats(p, t, &ts);
        cJSON *pe = cJSON_AddObjectToObject(e, xp_proj_tensor(xp_proj_at_file_order(k)));
        cJSON_AddNumberToObject(pe, "flips", (double)ts.flips);
        if (ts.bits_known)
            cJSON_AddNumberToObject(pe, "bits", (double)ts.bits);
        else
            cJSON_AddNullToObject(pe, "bits");
    }
    return o;
}
