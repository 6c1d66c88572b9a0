/* `xorpatch serve` end to end: a real server on a free loopback port, talked to by the
 * official OpenAI client from Node (tests/serve/client.mjs) and by plain HTTP: the API
 * (completions, chat, streams, the model list, logprobs); 16 concurrent clients over the
 * base and eight patches and stacks (xorpatch, binary, Bankai and Neagari files), each
 * answer exactly what `generate --patch` answers offline; every bad input with its status
 * and error body; the API key; an abandoned stream; the library re-read on SIGHUP and on
 * POST /v1/patches/reload; and SIGTERM finishing what is in flight and exiting 0. */
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "testutil.h"

typedef struct server {
    pid_t pid;
    int port;
    char dir[512], out[512], err[512];
} server;

static void root_path(char *out, size_t size, const char *rel)
{
    snprintf(out, size, "%s/%s", xp_test_env("XP_ROOT", "."), rel);
}

static bool have_openai(void)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/npm-openai4/node_modules/openai/package.json",
             xp_test_env("XP_CACHE", ".cache"));
    struct stat st;
    return stat(path, &st) == 0 && system("node --version > /dev/null 2>&1") == 0;
}

#define NEED_CLIENT()                                                                              \
    do {                                                                                           \
        if (!have_openai()) {                                                                      \
            cr_skip_test("skipped: needs node and the openai package (make npm-cache)");           \
            return;                                                                                \
        }                                                                                          \
    } while (0)

/* The patch library of the tests: the shipped test patches and one made for another
 * base (refused). */
static void make_library(char *dir, size_t size)
{
    char src[512], cmd[4096];
    xp_test_tmp_path(dir, size, "library");
    root_path(src, sizeof src, "tests/serve/patches");
    snprintf(
        cmd, sizeof cmd,
        "mkdir -p '%s' && cp -r '%s'/* '%s'/ && sed 's/4008c36b926186c2023a7169d0de75a204104bb8"
        "01ff948fd735835bee66f6c4/%064d/' '%s/search-block.json' > '%s/other-base.json'",
        dir, src, dir, 0, src, dir);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
}

static void server_start(server *s, const char *extra)
{
    char model[512], cmd[4096];
    root_path(model, sizeof model, "models/tiny-bonsai.gguf");
    make_library(s->dir, sizeof s->dir);
    xp_test_tmp_path(s->out, sizeof s->out, "serve.out");
    xp_test_tmp_path(s->err, sizeof s->err, "serve.err");
    snprintf(cmd, sizeof cmd,
             "exec %s serve -m '%s' --patches '%s' --port 0 -t 2 %s > '%s' 2> '%s'", xp_test_bin(),
             model, s->dir, extra, s->out, s->err);
    s->pid = fork();
    cr_assert(s->pid >= 0);
    if (s->pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 400; i++) { /* up to 20 s for the listening line */
        char *text = xp_test_slurp(s->out);
        const char *at = text ? strstr(text, "http://127.0.0.1:") : NULL;
        s->port = at ? atoi(at + strlen("http://127.0.0.1:")) : 0;
        free(text);
        if (s->port)
            return;
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    char *err = xp_test_slurp(s->err);
    kill(s->pid, SIGKILL);
    cr_assert_fail("the server did not start: %s", err ? err : "");
}

/* SIGTERM, then its exit status (-1: still running after 20 s, then killed). */
static int server_stop(server *s)
{
    kill(s->pid, SIGTERM);
    for (int i = 0; i < 400; i++) {
        int status;
        if (waitpid(s->pid, &status, WNOHANG) == s->pid)
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    kill(s->pid, SIGKILL);
    waitpid(s->pid, NULL, 0);
    return -1;
}

/* One HTTP/1.0 exchange (the tests' own, to see the server from outside): the status,
 * and the body (malloc'd) when asked. */
static int http(int port, const char *method, const char *path, const char *body, char **out)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    cr_assert(connect(fd, (struct sockaddr *)&a, sizeof a) == 0, "cannot connect to %d", port);
    char head[1024];
    int n = snprintf(head, sizeof head,
                     "%s %s HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\n\r\n",
                     method, path, body ? strlen(body) : 0);
    cr_assert(write(fd, head, (size_t)n) == n);
    if (body)
        cr_assert(write(fd, body, strlen(body)) == (ssize_t)strlen(body));
    size_t len = 0, cap = 4096;
    char *buf = malloc(cap);
    for (ssize_t got; (got = read(fd, buf + len, cap - len - 1)) > 0;) {
        len += (size_t)got;
        if (len + 1 == cap)
            buf = realloc(buf, cap *= 2);
    }
    buf[len] = '\0';
    close(fd);
    int status = 0;
    sscanf(buf, "HTTP/1.%*d %d", &status);
    char *sep = strstr(buf, "\r\n\r\n");
    if (out)
        *out = strdup(sep ? sep + 4 : "");
    free(buf);
    return status;
}

/* ---- what `generate --patch` answers offline ------------------------------------------ */

typedef struct collected {
    char text[8192];
    size_t len;
} collected;

static int collect(void *ctx, int32_t id, const char *text, size_t len)
{
    collected *c = ctx;
    if (c->len + len < sizeof c->text) {
        memcpy(c->text + c->len, text, len);
        c->len += len;
        c->text[c->len] = '\0';
    }
    return 0;
}

static const char *const models[] = {"base",
                                     "base+row",
                                     "base+block",
                                     "base+scale",
                                     "base+embd",
                                     "base+search-scale",
                                     "base+search-row-bankai",
                                     "base+neagari-steps",
                                     "base+row+block+scale"};
#define N_MODELS (sizeof models / sizeof models[0])
static const char *const prompts[] = {
    "The capital of France is", "The capital of Italy is", "66 + 69 =",  "22 + 3 =",
    "Once upon a time",         "The cat sat on the",      "7 plus 5 is"};
#define N_PROMPTS (sizeof prompts / sizeof prompts[0])
#define CHAT_USER "What is the capital of France?"

/* Model id ("base", "base+a+b": the test patches by file stem) opened with its patches
 * applied, as `generate --patch` applies them. */
static xp_model *open_patched(const char *id)
{
    char model[512], dir[512];
    root_path(model, sizeof model, "models/tiny-bonsai.gguf");
    root_path(dir, sizeof dir, "tests/serve/patches");
    xp_model *m;
    xp_err err = {0};
    cr_assert_eq(xp_model_open(&m, model, &err), XP_OK, "%s", err.msg);
    char names[256];
    snprintf(names, sizeof names, "%s", strncmp(id, "base+", 5) ? "" : id + 5);
    xp_patch *ps[8];
    size_t n = 0;
    for (char *save, *name = strtok_r(names, "+", &save); name; name = strtok_r(NULL, "+", &save)) {
        static const char *const ext[] = {".json", ".xpb", ""}; /* "": a Neagari folder */
        for (int e = 0; e < 3; e++) {
            char path[1024];
            snprintf(path, sizeof path, "%s/%s%s", dir, name, ext[e]);
            struct stat st;
            xp_patch **all;
            size_t n_all, missing;
            if (stat(path, &st) != 0 || (e == 2) != S_ISDIR(st.st_mode))
                continue;
            cr_assert_eq(xp_patch_read_all(&all, &n_all, &missing, path, &err), XP_OK, "%s",
                         err.msg);
            for (size_t i = 0; i < n_all; i++)
                ps[n++] = all[i];
            free(all);
        }
    }
    cr_assert_eq(xp_job_model_patch(m, ps, n, &err), XP_OK, "%s", err.msg);
    for (size_t i = 0; i < n; i++)
        xp_patch_free(ps[i]);
    return m;
}

/* The greedy text of a prompt, or of a chat turn. */
static cJSON *offline(xp_model *m, const char *prompt, bool chat, size_t max_tokens)
{
    xp_err err = {0};
    int32_t *ids, *out;
    size_t n_ids, n_out;
    const xp_tokenizer *tok = xp_model_tokenizer(m);
    if (chat)
        cr_assert_eq(xp_chat_encode(tok, NULL, prompt, false, &ids, &n_ids, &err), XP_OK);
    else
        cr_assert_eq(xp_tokenize(tok, prompt, strlen(prompt), false, &ids, &n_ids, &err), XP_OK);
    collected c = {.len = 0};
    xp_gen_opts o = {.sampler = {0, 0, 1, 0},
                     .max_tokens = max_tokens,
                     .stop_at_eos = true,
                     .path = XP_PATH_FAST,
                     .on_token = collect,
                     .ctx = &c};
    cr_assert_eq(xp_generate(m, ids, n_ids, &o, &out, &n_out, &err), XP_OK, "%s", err.msg);
    free(ids), free(out);
    return cJSON_CreateString(c.text);
}

/* The references file client.mjs reads, made once per test run (under a temporary name,
 * then renamed, so parallel tests never read half of it). */
static void refs_file(char *path, size_t size)
{
    snprintf(path, size, "%s/serve-refs.json", xp_test_env("XP_TMP", "/tmp"));
    struct stat st;
    if (stat(path, &st) == 0)
        return;
    cJSON *root = cJSON_CreateObject();
    cJSON *comp = cJSON_AddArrayToObject(root, "completions");
    cJSON *chat = cJSON_AddArrayToObject(root, "chat");
    cJSON *items[N_MODELS][N_PROMPTS];
    for (size_t k = 0; k < N_MODELS; k++) {
        xp_model *m = open_patched(models[k]);
        for (size_t p = 0; p < N_PROMPTS; p++) {
            cJSON *c = items[k][p] = cJSON_CreateObject();
            cJSON_AddStringToObject(c, "model", models[k]);
            cJSON_AddStringToObject(c, "prompt", prompts[p]);
            cJSON_AddNumberToObject(c, "max_tokens", 16);
            cJSON_AddItemToObject(c, "text", offline(m, prompts[p], false, 16));
        }
        if (k < 3) {
            cJSON *c = cJSON_CreateObject();
            cJSON_AddStringToObject(c, "model", models[k]);
            cJSON_AddStringToObject(c, "user", CHAT_USER);
            cJSON_AddNumberToObject(c, "max_tokens", 12);
            cJSON_AddItemToObject(c, "text", offline(m, CHAT_USER, true, 12));
            cJSON_AddItemToArray(chat, c);
        }
        xp_model_close(m);
    }
    for (size_t p = 0; p < N_PROMPTS; p++) /* prompt by prompt: the models interleave */
        for (size_t k = 0; k < N_MODELS; k++)
            cJSON_AddItemToArray(comp, items[k][p]);
    char *text = cJSON_Print(root), tmp[600];
    snprintf(tmp, sizeof tmp, "%s.%d", path, (int)getpid());
    xp_test_write(tmp, text);
    cr_assert_eq(rename(tmp, path), 0);
    free(text);
    cJSON_Delete(root);
}

/* Runs client.mjs in a mode against the server; asserts it passed. */
static void client(const server *s, const char *mode, const char *key)
{
    char script[512], refs[512], cmd[4096];
    root_path(script, sizeof script, "tests/serve/client.mjs");
    refs_file(refs, sizeof refs);
    snprintf(cmd, sizeof cmd, "node '%s' %s http://127.0.0.1:%d '%s' %s", script, mode, s->port,
             refs, key ? key : "");
    char *out = NULL, *err = NULL;
    int rc = xp_test_run(cmd, NULL, &out, &err);
    cr_expect_eq(rc, 0, "client.mjs %s:\n%s%s", mode, out ? out : "", err ? err : "");
    cr_expect(out && strstr(out, "ok   "), "client.mjs %s checked nothing: %s", mode, out);
    free(out), free(err);
}

static void stopped_cleanly(server *s)
{
    int rc = server_stop(s);
    char *err = xp_test_slurp(s->err);
    cr_expect_eq(rc, 0, "the server's exit status after SIGTERM: %d\n%s", rc, err ? err : "");
    free(err);
}

Test(serve, openai_client_completions_chat_streams_and_models, .timeout = 120)
{
    NEED_CLIENT();
    server s;
    server_start(&s, "");
    client(&s, "api", NULL);
    stopped_cleanly(&s);
}

Test(serve, mixed_patches_under_load_answer_as_generate_does, .timeout = 180)
{
    NEED_CLIENT();
    server s;
    server_start(&s, "--parallel 16");
    client(&s, "load", NULL);
    char *metrics = NULL;
    cr_expect_eq(http(s.port, "GET", "/metrics", NULL, &metrics), 200);
    cr_expect(strstr(metrics, "xorpatch_model_requests_total{model=\"base+row+block+scale\"}"),
              "%s", metrics);
    free(metrics);
    stopped_cleanly(&s);
}

Test(serve, bad_inputs_get_their_status_and_error_body, .timeout = 120)
{
    NEED_CLIENT();
    server s;
    server_start(&s, "--ctx 256");
    client(&s, "bad", NULL);
    stopped_cleanly(&s);
}

Test(serve, api_key_guards_every_v1_route, .timeout = 120)
{
    NEED_CLIENT();
    server s;
    server_start(&s, "--api-key sk-test-4f1c");
    client(&s, "auth", "sk-test-4f1c");
    cr_expect_eq(http(s.port, "POST", "/v1/patches/reload", "", NULL), 401);
    stopped_cleanly(&s);
}

Test(serve, an_abandoned_stream_frees_its_slot, .timeout = 120)
{
    NEED_CLIENT();
    server s;
    server_start(&s, "--parallel 2");
    client(&s, "cut", NULL);
    stopped_cleanly(&s);
}

/* The library re-read by SIGHUP and by POST /v1/patches/reload: a new file is served, a
 * removed one no longer is. */
Test(serve, the_library_is_re_read_on_sighup_and_reload, .timeout = 60)
{
    server s;
    server_start(&s, "");
    char cmd[2048], *body = NULL;
    snprintf(cmd, sizeof cmd, "cp '%s/block.json' '%s/late.json'", s.dir, s.dir);
    cr_assert_eq(system(cmd), 0);
    cr_expect_eq(http(s.port, "GET", "/v1/models", NULL, &body), 200);
    cr_expect(!strstr(body, "base+late"), "served before a re-read: %s", body);
    free(body);
    kill(s.pid, SIGHUP);
    bool seen = false;
    for (int i = 0; i < 100 && !seen; i++) {
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
        http(s.port, "GET", "/v1/models", NULL, &body);
        seen = strstr(body, "\"base+late\"") != NULL;
        free(body);
    }
    cr_expect(seen, "SIGHUP did not bring base+late in");
    cr_expect_eq(http(s.port, "POST", "/v1/completions",
                      "{\"model\":\"base+late\",\"prompt\":\"The capital of France is\","
                      "\"max_tokens\":3}",
                      NULL),
                 200);
    snprintf(cmd, sizeof cmd, "rm '%s/late.json'", s.dir);
    cr_assert_eq(system(cmd), 0);
    cr_expect_eq(http(s.port, "POST", "/v1/patches/reload", "", &body), 200);
    cr_expect(!strstr(body, "base+late") && strstr(body, "base+row"), "%s", body);
    free(body);
    cr_expect_eq(http(s.port, "POST", "/v1/completions",
                      "{\"model\":\"base+late\",\"prompt\":\"x\",\"max_tokens\":3}", NULL),
                 404);
    stopped_cleanly(&s);
}

/* SIGTERM while a stream runs: the stream is finished (ending with [DONE]), new
 * connections are refused, and the server exits 0. */
Test(serve, sigterm_finishes_what_is_in_flight_and_exits_0, .timeout = 60)
{
    server s;
    server_start(&s, "");
    char out[512], cmd[4096];
    xp_test_tmp_path(out, sizeof out, "stream.out");
    snprintf(cmd, sizeof cmd,
             "node -e \"fetch('http://127.0.0.1:%d/v1/completions', {method: 'POST', body: "
             "JSON.stringify({prompt: 'The capital of France is', max_tokens: 400, stream: true})})"
             ".then(async (r) => { const fs = require('fs'); for await (const c of r.body) "
             "fs.appendFileSync('%s', c); })\" &",
             s.port, out);
    cr_assert_eq(system(cmd), 0);
    for (int i = 0; i < 200; i++) { /* until the stream has begun */
        char *text = xp_test_slurp(out);
        bool begun = text && strstr(text, "data: ");
        free(text);
        if (begun)
            break;
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    stopped_cleanly(&s);
    struct timespec ts = {0, 200 * 1000 * 1000};
    nanosleep(&ts, NULL);
    char *text = xp_test_slurp(out);
    cr_expect(text && strstr(text, "data: [DONE]") && strstr(text, "\"finish_reason\":\"length\""),
              "the stream in flight was not finished: %s", text ? text : "(nothing)");
    free(text);
    unlink(out);
}
