/* The real Bankai and Neagari patch files (../shared/fixtures/patches) read as they are,
 * and land on the right bytes of a bonsai-8b-shaped model: the bytes each flip must
 * change are computed here from the files' JSON and SPEC §3's rules alone (row: the 16
 * sign bytes of each of its blocks XOR 0xFF; v1 group: block row * (ne0/128) + group;
 * v2 group: block index in the tensor; scale: byte bit/8, bit bit%8 of the fp16), then
 * the whole 1.1 GB map is compared with file ⊕ those bytes. Also: every fixture converts
 * to every format it fits and back without changing its identity. */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <string.h>

#include "test_patch_util.h"

static const char *const BANKAI[] = {"calculus_corrected_baseline.json", "calculus_group_v1.json",
                                     "calculus_v1.json", "patch_math_v1.json"};
static const char *const NEAGARI[] = {"v2_patches", "v3_patches"};

typedef struct edit {
    uint64_t off;
    uint8_t x;
} edit;

typedef struct edits {
    edit *e;
    size_t n, cap;
} edits;

static void put(edits *ed, uint64_t off, uint8_t x)
{
    if (ed->n == ed->cap) {
        ed->cap = ed->cap ? 2 * ed->cap : 4096;
        ed->e = realloc(ed->e, ed->cap * sizeof *ed->e);
        cr_assert_not_null(ed->e);
    }
    ed->e[ed->n++] = (edit){off, x};
}

static int cmp_edit(const void *a, const void *b)
{
    const edit *x = a, *y = b;
    return x->off < y->off ? -1 : x->off > y->off;
}

/* MLX projection names as Bankai writes them, and GGUF's. */
static const char *gguf_proj(const char *mlx)
{
    static const char *const map[][2] = {{"gate_proj", "ffn_gate"}, {"up_proj", "ffn_up"},
                                         {"down_proj", "ffn_down"}, {"q_proj", "attn_q"},
                                         {"k_proj", "attn_k"},      {"v_proj", "attn_v"},
                                         {"o_proj", "attn_output"}};
    for (size_t i = 0; i < 7; i++)
        if (strcmp(mlx, map[i][0]) == 0)
            return map[i][1];
    cr_assert_fail("unexpected projection %s", mlx);
    return NULL;
}

static void flip_block(edits *ed, uint64_t base, uint64_t block)
{
    for (int j = 2; j < 18; j++)
        put(ed, base + block * 18 + (uint64_t)j, 0xff);
}

/* The byte edits of one fixture file, from its JSON. */
static size_t expect_file(edits *ed, const xp_gguf *g, const char *path, bool v2)
{
    char *text = xp_test_slurp(path);
    cr_assert_not_null(text, "%s", path);
    cJSON *root = cJSON_Parse(text);
    free(text);
    cr_assert_not_null(root, "%s", path);
    size_t n = 0;
    cJSON *f;
    cJSON_ArrayForEach(f, cJSON_GetObjectItem(root, "flips"))
    {
        int layer = cJSON_GetObjectItem(f, "layer")->valueint;
        const char *proj = cJSON_GetObjectItem(f, "proj")->valuestring;
        char name[96];
        if (v2)
            snprintf(name, sizeof name, "blk.%d.%s", layer, proj);
        else
            snprintf(name, sizeof name, "blk.%d.%s.weight", layer, gguf_proj(proj));
        const xp_gguf_tensor *t = xp_gguf_tensor_by_name(g, name);
        cr_assert_not_null(t, "%s: %s", path, name);
        uint64_t base = g->data_offset + t->offset, per = (uint64_t)t->ne[0] / 128;
        if (!v2) {
            uint64_t row = (uint64_t)cJSON_GetObjectItem(f, "row")->valuedouble;
            cJSON *group = cJSON_GetObjectItem(f, "group");
            if (group)
                flip_block(ed, base, row * per + (uint64_t)group->valuedouble);
            else
                for (uint64_t b = row * per; b < (row + 1) * per; b++)
                    flip_block(ed, base, b);
        } else {
            uint64_t block = (uint64_t)cJSON_GetObjectItem(f, "group")->valuedouble;
            if (strcmp(cJSON_GetObjectItem(f, "type")->valuestring, "scale") == 0) {
                int bit = cJSON_GetObjectItem(f, "bit")->valueint;
                put(ed, base + block * 18 + (uint64_t)bit / 8, (uint8_t)(1u << (bit % 8)));
            } else {
                flip_block(ed, base, block);
            }
        }
        n++;
    }
    cJSON_Delete(root);
    return n;
}

/* The whole map equals the file with the edits XORed in. */
static void compare_map(const xp_gguf *g, const char *path, edits *ed)
{
    qsort(ed->e, ed->n, sizeof *ed->e, cmp_edit);
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f);
    const size_t chunk = 8 << 20;
    uint8_t *buf = malloc(chunk);
    size_t k = 0;
    for (uint64_t off = 0; off < g->map_len; off += chunk) {
        size_t n = g->map_len - off < chunk ? (size_t)(g->map_len - off) : chunk;
        cr_assert_eq(fread(buf, 1, n, f), n);
        for (; k < ed->n && ed->e[k].off < off + n; k++)
            buf[ed->e[k].off - off] ^= ed->e[k].x;
        if (memcmp(buf, g->map + off, n) != 0) {
            size_t i = 0;
            while (buf[i] == g->map[off + i])
                i++;
            cr_assert_fail("byte %llu is %02x, expected %02x", (unsigned long long)(off + i),
                           g->map[off + i], buf[i]);
        }
    }
    free(buf);
    fclose(f);
}

/* The patch_*.json files of a directory. */
static size_t list_patches(const char *dir, char names[][4500], size_t max)
{
    DIR *d = opendir(dir);
    cr_assert_not_null(d, "%s", dir);
    size_t n = 0;
    for (struct dirent *e; (e = readdir(d)) && n < max;)
        if (strncmp(e->d_name, "patch_", 6) == 0)
            snprintf(names[n++], 4500, "%s/%s", dir, e->d_name);
    closedir(d);
    return n;
}

Test(patch_fixtures, every_file_reads_with_its_flips)
{
    XP_SHARED_PATH(root, "fixtures/patches");
    struct { const char *rel; int format; size_t flips, rows, blocks, scales, groups; } want[] = {
        {"bankai/calculus_corrected_baseline.json", XP_PATCH_BANKAI_V1, 78, 78, 0, 0, 0},
        {"bankai/calculus_group_v1.json", XP_PATCH_BANKAI_V1, 6, 0, 0, 0, 6},
        {"bankai/calculus_v1.json", XP_PATCH_BANKAI_V1, 72, 72, 0, 0, 0},
        {"bankai/patch_math_v1.json", XP_PATCH_BANKAI_V1, 72, 72, 0, 0, 0},
        {"neagari/v2_patches/patch_math.json", XP_PATCH_NEAGARI_V2, 54, 0, 54, 0, 0},
        {"neagari/v3_patches/patch_math.json", XP_PATCH_NEAGARI_V2, 32, 0, 1, 31, 0},
        {"neagari/v2_patches", XP_PATCH_NEAGARI_V2, 54, 0, 54, 0, 0},
        {"neagari/v3_patches", XP_PATCH_NEAGARI_V2, 32, 0, 1, 31, 0},
    };
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        char path[4200];
        snprintf(path, sizeof path, "%s/%s", root, want[i].rel);
        xp_patch **ps;
        size_t n, missing;
        xp_err err = {0};
        cr_assert_eq(xp_patch_read_all(&ps, &n, &missing, path, &err), XP_OK, "%s", err.msg);
        cr_assert_eq(n, 1, "%s", path);
        xp_patch_stats s;
        xp_patch_total_stats(ps[0], &s);
        cr_expect_eq(ps[0]->format, want[i].format, "%s", path);
        cr_expect_eq(s.flips, want[i].flips, "%s: %llu flips", path, (unsigned long long)s.flips);
        cr_expect_eq(s.rows, want[i].rows, "%s", path);
        cr_expect_eq(s.blocks, want[i].blocks, "%s", path);
        cr_expect_eq(s.scale_bits, want[i].scales, "%s", path);
        cr_expect_eq(s.row_groups, want[i].groups, "%s", path);
        cr_expect_eq(missing, strstr(want[i].rel, ".json") ? 0u : 4u, "%s", path);
        cr_expect(ps[0]->base_model && strstr(ps[0]->base_model, "Bonsai-8B"), "%s", path);
        xp_patch_list_free(ps, n);
    }
    /* the manifests alone are not patches, and say so */
    for (size_t i = 0; i < 2; i++) {
        char path[4200];
        snprintf(path, sizeof path, "%s/neagari/%s/manifest.json", root, NEAGARI[i]);
        xp_patch *p = NULL;
        xp_err err = {0};
        cr_expect_eq(xp_patch_read(&p, path, &err), XP_EFORMAT);
        cr_expect(strstr(err.msg, "Neagari manifest"), "%s", err.msg);
    }
}

Test(patch_fixtures, every_fixture_converts_and_comes_back_unchanged)
{
    XP_SHARED_PATH(root, "fixtures/patches");
    xp_shape s;
    cr_assert_eq(xp_shape_preset("bonsai-8b", &s, NULL), XP_OK);
    for (size_t i = 0; i < 6; i++) {
        char path[4200];
        if (i < 4)
            snprintf(path, sizeof path, "%s/bankai/%s", root, BANKAI[i]);
        else
            snprintf(path, sizeof path, "%s/neagari/%s/patch_math.json", root, NEAGARI[i - 4]);
        xp_patch *p;
        xp_err err = {0};
        cr_assert_eq(xp_patch_read(&p, path, &err), XP_OK, "%s", err.msg);
        cr_assert_eq(xp_patch_bind_shape(p, &s, &err), XP_OK, "%s", err.msg);
        char want[65];
        cr_assert_eq(xp_patch_flips_sha256(p, want, &err), XP_OK);
        int formats[] = {XP_PATCH_JSON, XP_PATCH_BINARY, XP_PATCH_BINARY_COMPACT,
                         i < 4 ? XP_PATCH_BANKAI_V1 : XP_PATCH_NEAGARI_V2};
        for (size_t f = 0; f < 4; f++) {
            uint8_t *buf;
            size_t len;
            cr_assert_eq(xp_patch_serialize(p, formats[f], &buf, &len, &err), XP_OK, "%s: %s",
                         path, err.msg);
            xp_patch *q;
            cr_assert_eq(xp_patch_parse(&q, buf, len, "converted", &err), XP_OK, "%s: %s", path,
                         err.msg);
            cr_assert_eq(xp_patch_bind_shape(q, &s, &err), XP_OK, "%s", err.msg);
            char have[65];
            cr_assert_eq(xp_patch_flips_sha256(q, have, &err), XP_OK);
            cr_expect_str_eq(have, want, "%s as %s", path, xp_patch_format_name(formats[f]));
            /* a header of a few dozen bytes dominates only the smallest patch */
            if (formats[f] == XP_PATCH_BINARY_COMPACT && p->n_flips >= 30)
                cr_expect_lt(len, 12 * p->n_flips, "%s: %zu bytes", path, len);
            free(buf);
            xp_patch_free(q);
        }
        xp_patch_free(p);
    }
}

Test(patch_fixtures, flips_land_on_the_right_bytes_of_an_8b_model, .timeout = 240)
{
    XP_SHARED_PATH(root, "fixtures/patches");
    char model[512];
    xp_test_8b_model(model, sizeof model);
    xp_gguf *g = xp_test_open(model);
    cr_assert_eq(g->n_tensors, 1 + 36 * 11 + 2, "the 8B layout");
    edits ed = {0};
    xp_patch_log log;
    xp_patch_log_init(&log);
    xp_patch *applied[16];
    size_t n_applied = 0;
    for (size_t i = 0; i < 6; i++) {
        char path[4200];
        bool dir = i >= 4;
        if (!dir)
            snprintf(path, sizeof path, "%s/bankai/%s", root, BANKAI[i]);
        else
            snprintf(path, sizeof path, "%s/neagari/%s", root, NEAGARI[i - 4]);
        xp_patch **ps;
        size_t n, missing;
        xp_err err = {0};
        cr_assert_eq(xp_patch_read_all(&ps, &n, &missing, path, &err), XP_OK, "%s", err.msg);
        for (size_t k = 0; k < n; k++) {
            cr_assert_eq(xp_patch_apply(g, ps[k], &log, &err), XP_OK, "%s", err.msg);
            applied[n_applied++] = ps[k];
        }
        free(ps);
        size_t flips = 0;
        if (dir) {
            char names[8][4500];
            size_t m = list_patches(path, names, 8);
            for (size_t k = 0; k < m; k++)
                flips += expect_file(&ed, g, names[k], true);
        } else {
            flips = expect_file(&ed, g, path, false);
        }
        cr_expect_gt(flips, 0);
    }
    cr_expect_eq(log.n, 6);
    compare_map(g, model, &ed);
    /* revert in another order: every byte comes back */
    for (size_t k = 0; k < n_applied; k++) {
        xp_err err = {0};
        cr_assert_eq(xp_patch_revert(g, applied[(k + 3) % n_applied], &log, &err), XP_OK, "%s",
                     err.msg);
    }
    cr_expect_eq(log.n, 0);
    ed.n = 0;
    compare_map(g, model, &ed);
    for (size_t k = 0; k < n_applied; k++)
        xp_patch_free(applied[k]);
    free(ed.e);
    xp_patch_log_free(&log);
    xp_gguf_close(g);
}
