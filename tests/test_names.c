/* The tensor-name vocabulary: every projection's names in the four vocabularies (GGUF,
 * MLX as Bankai writes it, Neagari, the command line), pinned against the spellings the
 * files and the SPEC use; its role and widths against a named shape; and the pair that
 * writes and reads "blk.L.NAME.weight", which must round-trip every projection and layer
 * and refuse every name that is not exactly one, since the binary patch format and the
 * foreign codecs rely on a name having one spelling. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "xorpatch.h"

static const struct {
    int proj;
    const char *gguf, *mlx, *neagari, *cli;
    bool mlp;
    int in, out, file_order;
} want[] = {
    {XP_PROJ_GATE, "ffn_gate", "gate_proj", "ffn_gate.weight", "gate", true, XP_DIM_EMBD, XP_DIM_FF,
     4},
    {XP_PROJ_UP, "ffn_up", "up_proj", "ffn_up.weight", "up", true, XP_DIM_EMBD, XP_DIM_FF, 5},
    {XP_PROJ_DOWN, "ffn_down", "down_proj", "ffn_down.weight", "down", true, XP_DIM_FF, XP_DIM_EMBD,
     6},
    {XP_PROJ_Q, "attn_q", "q_proj", "attn_q.weight", "q", false, XP_DIM_EMBD, XP_DIM_Q, 0},
    {XP_PROJ_K, "attn_k", "k_proj", "attn_k.weight", "k", false, XP_DIM_EMBD, XP_DIM_KV, 1},
    {XP_PROJ_V, "attn_v", "v_proj", "attn_v.weight", "v", false, XP_DIM_EMBD, XP_DIM_KV, 2},
    {XP_PROJ_O, "attn_output", "o_proj", "attn_output.weight", "o", false, XP_DIM_Q, XP_DIM_EMBD,
     3},
};

Test(names, every_projection_in_every_vocabulary)
{
    cr_assert_eq(sizeof want / sizeof want[0], XP_N_PROJ);
    for (size_t i = 0; i < XP_N_PROJ; i++) {
        int p = want[i].proj;
        const xp_proj_info *in = xp_proj_info_of(p);
        cr_assert(in, "projection %d", p);
        const char *names[XP_N_NAMINGS] = {want[i].gguf, want[i].mlx, want[i].neagari, want[i].cli};
        for (int v = 0; v < XP_N_NAMINGS; v++) {
            cr_expect_str_eq(in->name[v], names[v], "projection %d, vocabulary %d", p, v);
            cr_expect_eq(xp_proj_find(names[v], v), p, "%s", names[v]);
            /* a name belongs to its own vocabulary only */
            for (int o = 0; o < XP_N_NAMINGS; o++)
                if (o != v)
                    cr_expect_eq(xp_proj_find(names[v], o), -1, "%s in vocabulary %d", names[v], o);
        }
        cr_expect_str_eq(xp_proj_name(p), want[i].cli);
        cr_expect_str_eq(xp_proj_tensor(p), want[i].gguf);
        cr_expect_eq(xp_proj_from_name(want[i].cli), p);
        cr_expect_eq(in->mlp, want[i].mlp, "%s", want[i].gguf);
        cr_expect_eq(in->in, want[i].in, "%s", want[i].gguf);
        cr_expect_eq(in->out, want[i].out, "%s", want[i].gguf);
        cr_expect_eq(in->file_order, want[i].file_order, "%s", want[i].gguf);
        cr_expect_eq(xp_proj_at_file_order(want[i].file_order), p);
    }
}

Test(names, unknown_projections_and_vocabularies)
{
    cr_expect_null(xp_proj_info_of(-1));
    cr_expect_null(xp_proj_info_of(XP_N_PROJ));
    cr_expect_str_eq(xp_proj_name(XP_N_PROJ), "?");
    cr_expect_str_eq(xp_proj_tensor(-1), "?");
    cr_expect_eq(xp_proj_from_name(NULL), -1);
    cr_expect_eq(xp_proj_from_name("Gate"), -1);
    cr_expect_eq(xp_proj_from_name(""), -1);
    cr_expect_eq(xp_proj_find("ffn_gate", XP_N_NAMINGS), -1);
    cr_expect_eq(xp_proj_find("ffn_gate", -1), -1);
    cr_expect_eq(xp_proj_find("ffn_norm", XP_NAMING_GGUF), -1);
    cr_expect_eq(xp_proj_at_file_order(-1), -1);
    cr_expect_eq(xp_proj_at_file_order(XP_N_PROJ), -1);
}

Test(names, shapes_follow_the_model_shape)
{
    xp_shape s;
    cr_assert_eq(xp_shape_preset("bonsai-8b", &s, NULL), XP_OK);
    const int64_t expect[XP_N_PROJ][2] = {
        [XP_PROJ_GATE] = {4096, 12288}, [XP_PROJ_UP] = {4096, 12288},
        [XP_PROJ_DOWN] = {12288, 4096}, [XP_PROJ_Q] = {4096, 4096},
        [XP_PROJ_K] = {4096, 1024},     [XP_PROJ_V] = {4096, 1024},
        [XP_PROJ_O] = {4096, 4096}};
    for (int p = 0; p < XP_N_PROJ; p++) {
        int64_t ne0, ne1;
        xp_proj_shape(&s, p, &ne0, &ne1);
        cr_expect_eq(ne0, expect[p][0], "%s", xp_proj_tensor(p));
        cr_expect_eq(ne1, expect[p][1], "%s", xp_proj_tensor(p));
    }
}

Test(names, format_and_parse_round_trip)
{
    const uint32_t layers[] = {0, 1, 9, 10, 35, 99999, 4294967295u};
    for (int p = 0; p < XP_N_PROJ; p++)
        for (size_t i = 0; i < sizeof layers / sizeof *layers; i++) {
            char name[XP_TENSOR_NAME_MAX], expect[XP_TENSOR_NAME_MAX];
            int n = xp_tensor_name(name, sizeof name, layers[i], xp_proj_tensor(p));
            snprintf(expect, sizeof expect, "blk.%u.%s.weight", layers[i], xp_proj_tensor(p));
            cr_expect_str_eq(name, expect);
            cr_expect_eq(n, (int)strlen(expect));
            uint32_t layer = 7;
            cr_expect_eq(xp_tensor_name_parse(name, &layer), p, "%s", name);
            cr_expect_eq(layer, layers[i], "%s", name);
        }
    char norm[XP_TENSOR_NAME_MAX];
    xp_tensor_name(norm, sizeof norm, 3, "attn_q_norm");
    cr_expect_str_eq(norm, "blk.3.attn_q_norm.weight");
    char small[8];
    cr_expect_eq(xp_tensor_name(small, sizeof small, 12, "ffn_up"), 20);
    cr_expect_str_eq(small, "blk.12.");
}

Test(names, malformed_names_are_refused)
{
    static const char *const bad[] = {
        "",
        "blk.",
        "blk.1",
        "blk.1.",
        "blk..ffn_gate.weight",
        "blk.01.ffn_gate.weight",
        "blk.00.ffn_gate.weight",
        "blk.+1.ffn_gate.weight",
        "blk.-1.ffn_gate.weight",
        "blk. 1.ffn_gate.weight",
        "blk.1 .ffn_gate.weight",
        "blk.1x.ffn_gate.weight",
        "blk.4294967296.ffn_gate.weight",
        "blk.99999999999999999999.ffn_gate.weight",
        "blk.1.ffn_gate",
        "blk.1.ffn_gate.",
        "blk.1.ffn_gate.weigh",
        "blk.1.ffn_gate.weightx",
        "blk.1.ffn_gate.weight.weight",
        "blk.1.ffn_gate.bias",
        "blk.1.ffn_gatex.weight",
        "blk.1.ffn_norm.weight",
        "blk.1.attn_norm.weight",
        "blk.1.attn_q_norm.weight",
        "blk.1.gate_proj.weight",
        "blk.1.gate.weight",
        "blk.1..ffn_gate.weight",
        "Blk.1.ffn_gate.weight",
        "blk1.ffn_gate.weight",
        "xblk.1.ffn_gate.weight",
        "token_embd.weight",
        "output.weight",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        uint32_t layer = 12345;
        cr_expect_eq(xp_tensor_name_parse(bad[i], &layer), -1, "'%s'", bad[i]);
        cr_expect_eq(layer, 12345, "'%s' wrote the layer", bad[i]);
    }
    uint32_t layer;
    cr_expect_eq(xp_tensor_name_parse("blk.0.attn_output.weight", &layer), XP_PROJ_O);
    cr_expect_eq(layer, 0);
}

/* The foreign codecs list the vocabulary in their messages. */
static void expect_refusal(const char *json, const char *message)
{
    xp_patch *p = NULL;
    xp_err err = {0};
    cr_expect_eq(xp_patch_parse(&p, json, strlen(json), "t.json", &err), XP_EFORMAT, "%s", json);
    cr_expect_str_eq(err.msg, message);
    xp_patch_free(p);
}

Test(names, foreign_formats_name_the_projections_they_take)
{
    expect_refusal("{\"version\":1,\"flips\":[{\"layer\":1,\"proj\":\"gate\",\"row\":3}]}",
                   "t.json: flips[0]: unknown projection \"gate\" (expected gate_proj, up_proj, "
                   "down_proj, q_proj, k_proj, v_proj or o_proj)");
    expect_refusal("{\"version\":2,\"flips\":[{\"layer\":1,\"proj\":\"q_proj\",\"group\":3}]}",
                   "t.json: flips[0]: unknown projection \"q_proj\" (expected ffn_gate.weight, "
                   "ffn_up.weight, ffn_down.weight, attn_q.weight, attn_k.weight, attn_v.weight "
                   "or attn_output.weight)");
    /* Bankai takes every spelling of a projection, Neagari the GGUF ones */
    const char *const bankai[] = {"up_proj", "ffn_up", "ffn_up.weight"};
    for (size_t i = 0; i < 3; i++) {
        char json[160];
        snprintf(json, sizeof json,
                 "{\"version\":%d,\"flips\":[{\"layer\":2,\"proj\":\"%s\",\"row\":5,\"group\":5}]}",
                 i == 0 ? 1 : 2, bankai[i]);
        xp_patch *p;
        xp_err err = {0};
        cr_assert_eq(xp_patch_parse(&p, json, strlen(json), "t.json", &err), XP_OK, "%s", err.msg);
        cr_expect_str_eq(p->tensors[0].name, "blk.2.ffn_up.weight");
        xp_patch_free(p);
    }
    xp_patch *p;
    xp_err err = {0};
    cr_assert_eq(xp_patch_new(&p, &err), XP_OK);
    cr_assert_eq(xp_patch_add_row(p, "blk.1.attn_norm.weight", 0, &err), XP_OK);
    cr_assert_eq(xp_patch_normalize(p, &err), XP_OK);
    uint8_t *buf;
    size_t len;
    cr_expect_eq(xp_patch_serialize(p, XP_PATCH_BANKAI_V1, &buf, &len, &err), XP_EINVAL);
    cr_expect_str_eq(err.msg, "<patch>: flip on 'blk.1.attn_norm.weight' does not fit "
                              "bankai_row_xor_v1, which names only "
                              "blk.N.{attn_q,attn_k,attn_v,attn_output,ffn_gate,ffn_up,ffn_down}"
                              ".weight");
    xp_patch_free(p);
}
