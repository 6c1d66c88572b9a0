/* `xorpatch serve`: the HTTP front of the serve layer, on libmicrohttpd (one thread per
 * connection, so a handler may wait for its request's tokens). It routes, checks the API
 * key and the body size, hands requests to the engine and writes what the protocol
 * code makes of them; signals: SIGHUP re-reads the patch library, SIGTERM and SIGINT
 * stop accepting, let the requests in flight finish (cancelling what is left after a
 * grace period) and exit 0. The engine, the library and the OpenAI protocol live in
 * src/serve, so they are library calls with tests of their own; this file is only what
 * needs a socket or a signal. */
#include <arpa/inet.h>
#include <microhttpd.h>
#include <omp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/options.h"

static const char usage[] =
    "Usage: xorpatch serve -m MODEL [--patches DIR] [options]\n"
    "\n"
    "Serves the model and every patch of DIR over an OpenAI-compatible HTTP API, each\n"
    "patch as the model id base+NAME (NAME: the file name without its extension; stacks\n"
    "base+a+b apply a, then b). Requests of any patches run in one batch over one copy\n"
    "of the model: a greedy answer is token for token what `generate --patch` gives.\n"
    "\n"
    "Routes: GET /v1/models, POST /v1/completions, POST /v1/chat/completions (stream:\n"
    "true answers as server-sent events), POST /v1/patches/reload, GET /health, GET\n"
    "/metrics (Prometheus text). SIGHUP also re-reads DIR; SIGTERM stops accepting,\n"
    "finishes the requests in flight (cancels them after 10 s) and exits 0.\n"
    "\n"
    "  -m, --model FILE   a Qwen3 GGUF\n"
    "  --patches DIR      the patch library: files in any format xorpatch reads, and\n"
    "                     Neagari patch folders; a patch for another base is refused\n"
    "  --host ADDR        the IPv4 address to listen on (default 127.0.0.1: this machine\n"
    "                     only; 0.0.0.0: every interface)\n"
    "  --port N           the TCP port (default 8080; 0: any free port, printed)\n"
    "  --api-key KEY      every /v1 route then needs `Authorization: Bearer KEY`\n"
    "  --parallel N       sequences in the running batch at most (default 8)\n"
    "  --ctx N            tokens per request, prompt and answer (default: the model's\n"
    "                     context); max_tokens may not exceed it\n"
    "  --kernel NAME      fast-path kernel: avx512, avx2 or portable (default: best)\n"
    "  -t, --threads N    threads (default: all cores)\n"
    "  -q, --quiet        no line per request on stderr\n"
    "  -h, --help         this text\n"
    "\n"
    "Limits: a body of at most 1 MiB (413 above); max_tokens defaults to 128.\n";

static const int options[] = {CLI_O_MODEL, CLI_O_PATCHES, CLI_O_HOST,
                              CLI_O_PORT,  CLI_O_API_KEY, CLI_O_PARALLEL | CLI_POSITIVE,
                              CLI_O_CTX,   CLI_O_KERNEL,  CLI_O_THREADS};
CLI_COMMAND(cli_serve, "serve", "an OpenAI-compatible server over a library of patches", usage,
            options, false, execute);

#define MAX_BODY (1u << 20)
#define DRAIN_SECONDS 10.0

typedef struct server {
    xp_model *m;
    xp_library *lib;
    xp_engine *eng;
    const char *api_key;
    xp_api_limits lim;
    atomic_ullong by_status[6]; /* 2xx .. 5xx by hundreds, index status / 100 */
    atomic_ullong http_requests;
    atomic_ullong id_counter;
    atomic_int live; /* requests not yet freed: a stream still sending counts */
} server;

/* One HTTP request, held by MHD (until it completes), by the stream response and by the
 * engine (until on_done): whoever lets go last frees it. */
typedef struct conn {
    atomic_int refs;
    server *srv;
    char *body;
    size_t len;
    bool too_large;
    /* a generation in flight */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    xp_api_request rq;
    xp_api_answer *answer;
    xp_gen *gen;
    char *out; /* bytes ready to go (stream), or the body at the end */
    size_t out_len, out_sent;
    bool done, failed;
    xp_gen_result res;
    double started;
    const char *route;
} conn;

static void conn_release(conn *c)
{
    if (atomic_fetch_sub(&c->refs, 1) != 1)
        return;
    if (c->gen)
        xp_gen_release(c->gen);
    xp_api_answer_free(c->answer);
    xp_api_request_free(&c->rq);
    free(c->body);
    free(c->out);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
    atomic_fetch_sub(&c->srv->live, 1);
    free(c);
}

/* ---- responses ---------------------------------------------------------------- */

static enum MHD_Result send_text(struct MHD_Connection *mc, server *srv, int status,
                                 const char *type, char *text)
{
    const char *body = text ? text : "{\"error\":{\"message\":\"out of memory\"}}";
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_MUST_COPY);
    free(text);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, "Content-Type", type);
    if (status == 401)
        MHD_add_response_header(r, "WWW-Authenticate", "Bearer");
    enum MHD_Result ok = MHD_queue_response(mc, (unsigned)status, r);
    MHD_destroy_response(r);
    atomic_fetch_add(&srv->by_status[status / 100 < 6 ? status / 100 : 5], 1);
    return ok;
}

static enum MHD_Result send_json(struct MHD_Connection *mc, server *srv, int status, char *json)
{
    return send_text(mc, srv, status, "application/json", json);
}

static enum MHD_Result send_error(struct MHD_Connection *mc, server *srv, const xp_api_error *e)
{
    return send_json(mc, srv, e->status, xp_api_error_body(e));
}

static enum MHD_Result fail(struct MHD_Connection *mc, server *srv, int status, const char *type,
                            const char *code, const char *msg)
{
    xp_api_error e;
    xp_api_error_set(&e, status, type, NULL, code, "%s", msg);
    return send_error(mc, srv, &e);
}

/* ---- the API key --------------------------------------------------------------- */

/* Whether the Authorization header carries the key, in time that does not depend on
 * where the two first differ. */
static bool authorised(struct MHD_Connection *mc, const char *key)
{
    if (!key)
        return true;
    const char *h = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, "Authorization");
    if (!h || strncmp(h, "Bearer ", 7) != 0)
        return false;
    const char *given = h + 7;
    size_t gl = strlen(given), kl = strlen(key);
    unsigned char diff = gl != kl;
    for (size_t i = 0; i < kl; i++)
        diff |= (unsigned char)key[i] ^ (unsigned char)(i < gl ? given[i] : 0);
    return diff == 0;
}

/* ---- generation ---------------------------------------------------------------- */

static void append_out(conn *c, char *s)
{
    if (!s) {
        c->failed = true;
        return;
    }
    size_t n = strlen(s);
    char *grown = realloc(c->out, c->out_len + n + 1);
    if (grown) {
        memcpy(grown + c->out_len, s, n + 1);
        c->out = grown;
        c->out_len += n;
    } else {
        c->failed = true;
    }
    free(s);
}

static int on_text(void *ctx, const xp_gen_event *ev)
{
    conn *c = ctx;
    pthread_mutex_lock(&c->mu);
    append_out(c, xp_api_answer_text(c->answer, ev));
    pthread_cond_broadcast(&c->cv);
    bool failed = c->failed;
    pthread_mutex_unlock(&c->mu);
    return failed;
}

static void on_done(void *ctx, const xp_gen_result *r)
{
    conn *c = ctx;
    pthread_mutex_lock(&c->mu);
    c->res = *r;
    if (c->rq.stream || !r->rc)
        append_out(c, xp_api_answer_end(c->answer, r));
    c->done = true;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    conn_release(c);
}

/* The stream's body: what the engine has made so far, waiting for more. */
static ssize_t read_stream(void *cls, uint64_t pos, char *buf, size_t max)
{
    conn *c = cls;
    pthread_mutex_lock(&c->mu);
    while (c->out_sent == c->out_len && !c->done)
        pthread_cond_wait(&c->cv, &c->mu);
    size_t n = c->out_len - c->out_sent;
    n = n < max ? n : max;
    memcpy(buf, c->out + c->out_sent, n);
    c->out_sent += n;
    bool end = n == 0 && c->done;
    pthread_mutex_unlock(&c->mu);
    return end ? MHD_CONTENT_READER_END_OF_STREAM : (ssize_t)n;
}

/* The stream response is let go: when the client went away, this frees its slot. */
static void stream_gone(void *cls)
{
    conn *c = cls;
    xp_gen_cancel(c->gen);
    conn_release(c);
}

/* Whether the client closed its end while a whole answer is being made. */
static bool client_gone(struct MHD_Connection *mc)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(mc, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci)
        return false;
    struct pollfd p = {.fd = ci->connect_fd, .events = POLLRDHUP};
    return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

static enum MHD_Result generate(struct MHD_Connection *mc, conn *c, bool chat)
{
    server *srv = c->srv;
    xp_api_error e;
    if (xp_api_request_parse(&c->rq, chat, c->body ? c->body : "", c->len,
                             xp_model_tokenizer(srv->m), &srv->lim, &e))
        return send_error(mc, srv, &e);
    xp_served *model;
    xp_err err = {0};
    if (xp_library_get(srv->lib, c->rq.model, &model, &err)) {
        xp_api_error_set(&e, err.code == XP_ENOTFOUND ? 404 : 400,
                         err.code == XP_ENOTFOUND ? "not_found_error" : "invalid_request_error",
                         "model", err.code == XP_ENOTFOUND ? "model_not_found" : NULL, "%s",
                         err.msg);
        return send_error(mc, srv, &e);
    }
    char id[64];
    snprintf(id, sizeof id, "%s-%llx%04llx", chat ? "chatcmpl" : "cmpl",
             (unsigned long long)time(NULL), atomic_fetch_add(&srv->id_counter, 1) & 0xffff);
    if (xp_api_answer_new(&c->answer, &c->rq, id, (long long)time(NULL), c->rq.model,
                          xp_model_tokenizer(srv->m), &err)) {
        xp_served_release(model);
        return fail(mc, srv, 500, "server_error", NULL, err.msg);
    }
    append_out(c, xp_api_answer_start(c->answer));
    xp_gen_request g = {c->rq.prompt,   c->rq.n_prompt,    model,
                        c->rq.sampler,  c->rq.max_tokens,  (const char *const *)c->rq.stop,
                        c->rq.logprobs, c->rq.top_logprobs};
    xp_gen_callbacks cb = {on_text, on_done, c};
    atomic_fetch_add(&c->refs, 1); /* the engine's */
    int rc = xp_engine_submit(srv->eng, &g, &cb, &c->gen, &err);
    xp_served_release(model);
    if (rc) {
        atomic_fetch_sub(&c->refs, 1);
        bool busy = rc == XP_ENOMEM || strstr(err.msg, "shutting down");
        xp_api_error_set(&e, busy ? 503 : 400, busy ? "server_error" : "invalid_request_error",
                         busy   ? NULL
                         : chat ? "messages"
                                : "prompt",
                         busy ? NULL : "context_length_exceeded", "%s", err.msg);
        return send_error(mc, srv, &e);
    }
    if (c->rq.stream) {
        atomic_fetch_add(&c->refs, 1); /* the response's */
        struct MHD_Response *r =
            MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, read_stream, c, stream_gone);
        if (!r) {
            stream_gone(c);
            return MHD_NO;
        }
        MHD_add_response_header(r, "Content-Type", "text/event-stream");
        MHD_add_response_header(r, "Cache-Control", "no-cache");
        enum MHD_Result ok = MHD_queue_response(mc, MHD_HTTP_OK, r);
        MHD_destroy_response(r);
        atomic_fetch_add(&srv->by_status[2], 1);
        return ok;
    }
    pthread_mutex_lock(&c->mu);
    while (!c->done) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100 * 1000 * 1000;
        if (ts.tv_nsec >= 1000000000)
            ts.tv_sec++, ts.tv_nsec -= 1000000000;
        pthread_cond_timedwait(&c->cv, &c->mu, &ts);
        if (!c->done && client_gone(mc))
            xp_gen_cancel(c->gen);
    }
    pthread_mutex_unlock(&c->mu);
    if (c->res.rc || c->failed)
        return fail(mc, srv, 500, "server_error", NULL, c->res.rc ? c->res.error : "out of memory");
    if (c->res.finish == XP_FINISH_CANCELLED)
        return fail(mc, srv, 503, "server_error", NULL, "the request was cancelled");
    char *body = c->out;
    c->out = NULL;
    return send_json(mc, srv, 200, body);
}

/* ---- the other routes --------------------------------------------------------- */

static void metric_line(char **out, size_t *len, size_t *cap, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void metric_line(char **out, size_t *len, size_t *cap, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0 || !*out)
        return;
    if (*len + (size_t)n + 1 > *cap) {
        size_t c = *cap * 2 + (size_t)n + 1;
        char *grown = realloc(*out, c);
        if (!grown)
            return;
        *out = grown, *cap = c;
    }
    memcpy(*out + *len, line, (size_t)n + 1);
    *len += (size_t)n;
}

typedef struct metric_buf {
    char **out;
    size_t *len, *cap;
} metric_buf;

static void per_model(void *ctx, const char *id, uint64_t n)
{
    metric_buf *b = ctx;
    metric_line(b->out, b->len, b->cap, "xorpatch_model_requests_total{model=\"%s\"} %llu\n", id,
                (unsigned long long)n);
}

static char *metrics_text(server *srv)
{
    xp_engine_stats st;
    xp_engine_stats_get(srv->eng, &st);
    size_t len = 0, cap = 4096;
    char *out = malloc(cap);
    if (out)
        out[0] = '\0';
#define COUNTER(name, help, value)                                                                 \
    metric_line(&out, &len, &cap,                                                                  \
                "# HELP " name " " help "\n# TYPE " name " counter\n" name " %llu\n",              \
                (unsigned long long)(value))
#define GAUGE(name, help, fmt, value)                                                              \
    metric_line(&out, &len, &cap,                                                                  \
                "# HELP " name " " help "\n# TYPE " name " gauge\n" name " " fmt "\n", value)
    metric_line(&out, &len, &cap,
                "# HELP xorpatch_http_responses_total HTTP responses by "
                "status class.\n# TYPE xorpatch_http_responses_total counter\n");
    for (int k = 2; k < 6; k++)
        metric_line(&out, &len, &cap, "xorpatch_http_responses_total{code=\"%dxx\"} %llu\n", k,
                    (unsigned long long)atomic_load(&srv->by_status[k]));
    COUNTER("xorpatch_requests_total", "Generation requests accepted.", st.requests);
    COUNTER("xorpatch_requests_finished_total", "Generation requests run to their end.",
            st.finished);
    COUNTER("xorpatch_requests_cancelled_total", "Generation requests cancelled.", st.cancelled);
    COUNTER("xorpatch_prompt_tokens_total", "Prompt tokens prefilled.", st.prompt_tokens);
    COUNTER("xorpatch_completion_tokens_total", "Tokens generated.", st.completion_tokens);
    COUNTER("xorpatch_decode_steps_total", "Forward steps of the running batch.", st.steps);
    GAUGE("xorpatch_tokens_per_second", "Tokens generated per second over the last steps.", "%.3f",
          st.tokens_per_s);
    GAUGE("xorpatch_queue_depth", "Requests waiting for a slot.", "%zu", st.queued);
    GAUGE("xorpatch_running", "Requests in the running batch.", "%zu", st.running);
    metric_line(&out, &len, &cap,
                "# HELP xorpatch_model_requests_total Generation requests per "
                "model id (base, base+PATCH).\n# TYPE "
                "xorpatch_model_requests_total counter\n");
    metric_buf b = {&out, &len, &cap};
    xp_engine_per_model(srv->eng, per_model, &b);
#undef COUNTER
#undef GAUGE
    return out;
}

static enum MHD_Result reload(struct MHD_Connection *mc, server *srv)
{
    xp_err err = {0};
    if (xp_library_reload(srv->lib, &err))
        return fail(mc, srv, 500, "server_error", NULL, err.msg);
    return send_json(mc, srv, 200, xp_api_models(srv->lib, (long long)time(NULL)));
}

static enum MHD_Result route(struct MHD_Connection *mc, conn *c, const char *url,
                             const char *method)
{
    server *srv = c->srv;
    bool get = !strcmp(method, "GET"), post = !strcmp(method, "POST");
    static const char *const routes[][2] = {{"/health", "GET"},
                                            {"/metrics", "GET"},
                                            {"/v1/models", "GET"},
                                            {"/v1/completions", "POST"},
                                            {"/v1/chat/completions", "POST"},
                                            {"/v1/patches/reload", "POST"}};
    size_t r = 0, n = sizeof routes / sizeof routes[0];
    while (r < n && strcmp(url, routes[r][0]))
        r++;
    c->route = r < n ? routes[r][0] : NULL;
    if (r == n)
        return fail(mc, srv, 404, "not_found_error", "unknown_url", "no such route");
    if (strcmp(method, routes[r][1]))
        return fail(mc, srv, 405, "invalid_request_error", "method_not_allowed",
                    "this route takes another method");
    if (!strncmp(url, "/v1/", 4) && !authorised(mc, srv->api_key))
        return fail(mc, srv, 401, "invalid_request_error", "invalid_api_key",
                    "a valid API key is needed: Authorization: Bearer KEY");
    if (c->too_large)
        return fail(mc, srv, 413, "invalid_request_error", "request_too_large",
                    "the body is larger than 1 MiB");
    if (get && r == 0)
        return send_json(mc, srv, 200, strdup("{\"status\":\"ok\"}"));
    if (get && r == 1)
        return send_text(mc, srv, 200, "text/plain; version=0.0.4", metrics_text(srv));
    if (get && r == 2)
        return send_json(mc, srv, 200, xp_api_models(srv->lib, (long long)time(NULL)));
    if (post && r == 5)
        return reload(mc, srv);
    return generate(mc, c, r == 4);
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *mc, const char *url,
                              const char *method, const char *version, const char *upload,
                              size_t *upload_size, void **con_cls)
{
    server *srv = cls;
    conn *c = *con_cls;
    if (!c) { /* the headers: the request starts */
        if (!(c = calloc(1, sizeof *c)))
            return MHD_NO;
        atomic_init(&c->refs, 1);
        c->srv = srv;
        atomic_fetch_add(&srv->live, 1);
        c->started = cli_now();
        pthread_mutex_init(&c->mu, NULL);
        pthread_cond_init(&c->cv, NULL);
        *con_cls = c;
        atomic_fetch_add(&srv->http_requests, 1);
        return MHD_YES;
    }
    if (*upload_size) { /* a part of the body */
        if (c->len + *upload_size > MAX_BODY)
            c->too_large = true;
        char *grown = c->too_large ? NULL : realloc(c->body, c->len + *upload_size + 1);
        if (grown) {
            memcpy(grown + c->len, upload, *upload_size);
            c->body = grown;
            c->len += *upload_size;
            c->body[c->len] = '\0';
        } else if (!c->too_large) {
            return MHD_NO;
        }
        *upload_size = 0;
        return MHD_YES;
    }
    return route(mc, c, url, method);
}

static void completed(void *cls, struct MHD_Connection *mc, void **con_cls,
                      enum MHD_RequestTerminationCode toe)
{
    conn *c = *con_cls;
    if (!c)
        return;
    if (c->gen && toe != MHD_REQUEST_TERMINATED_COMPLETED_OK)
        xp_gen_cancel(c->gen); /* the client went away: its slot is freed at once */
    if (c->route && !strncmp(c->route, "/v1/", 4) && strcmp(c->route, "/v1/models"))
        cli_note("%s %s %zu prompt + %zu tokens, %.2f s%s", c->route,
                 c->rq.model ? c->rq.model : "", c->res.prompt_tokens, c->res.completion_tokens,
                 cli_now() - c->started,
                 toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " (client gone)");
    *con_cls = NULL;
    conn_release(c);
}

/* ---- the program ---------------------------------------------------------------- */

static int execute(const cli_values *v)
{
    if (!v->model)
        return cli_usage_error("serve", "-m MODEL is required");
    const char *host = v->host ? v->host : "127.0.0.1";
    struct sockaddr_in addr = {.sin_family = AF_INET,
                               .sin_port =
                                   htons((uint16_t)(v->given[CLI_O_PORT] ? v->port : 8080))};
    if (inet_pton(AF_INET, strcmp(host, "localhost") ? host : "127.0.0.1", &addr.sin_addr) != 1)
        return cli_usage_error("serve", "--host %s: not an IPv4 address such as 127.0.0.1", host);
    /* the signals go to the main thread only: every thread started below inherits this */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    server srv = {.api_key = v->api_key};
    int rc = cli_open_model(v->model, v->kernel, &srv.m);
    if (rc)
        return rc;
    xp_err err = {0};
    size_t n_ctx = xp_model_shape(srv.m)->n_ctx;
    size_t ctx = v->given[CLI_O_CTX] && v->ctx < n_ctx ? v->ctx : n_ctx;
    srv.lim = (xp_api_limits){ctx, 128 < ctx ? 128 : ctx, 16};
    xp_engine_opts eo = {v->given[CLI_O_PARALLEL] ? v->parallel : 8, ctx, 0, omp_get_max_threads()};
    if (!xp_model_tokenizer(srv.m))
        rc = xp_err_set(&err, XP_EFORMAT, "%s has no tokenizer", v->model);
    if (!rc)
        rc = xp_library_open(&srv.lib, srv.m, v->patches_dir, &err);
    if (!rc)
        rc = xp_engine_new(&srv.eng, srv.m, &eo, &err);
    if (rc) {
        xp_library_free(srv.lib);
        xp_model_close(srv.m);
        return cli_fail(&err);
    }
    xp_library_item *items;
    size_t n_items = 0;
    if (!xp_library_items(srv.lib, &items, &n_items, &err)) {
        for (size_t i = 0; i < n_items; i++)
            if (items[i].refused)
                cli_note("%s: not served: %s", items[i].file, items[i].refused);
            else
                cli_note("serving base+%s (%s, %zu flips)", items[i].name, items[i].file,
                         items[i].flips);
        xp_library_items_free(items, n_items);
    }
    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC, 0, NULL,
        NULL, handle, &srv, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)256, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)300,
        MHD_OPTION_NOTIFY_COMPLETED, completed, &srv, MHD_OPTION_END);
    if (!d) {
        xp_engine_free(srv.eng);
        xp_library_free(srv.lib);
        xp_model_close(srv.m);
        return cli_input_error("cannot listen on %s:%u (in use, or not an address of this "
                               "machine)",
                               host, (unsigned)ntohs(addr.sin_port));
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    printf("xorpatch serve: listening on http://%s:%u (model %s, %zu-token context, %zu "
           "parallel)\n",
           host, info ? (unsigned)info->port : (unsigned)ntohs(addr.sin_port), v->model, ctx,
           eo.parallel);
    fflush(stdout);
    for (;;) {
        int sig = 0;
        sigwait(&sigs, &sig);
        if (sig != SIGHUP)
            break;
        if (xp_library_reload(srv.lib, &err))
            cli_note("SIGHUP: the patch library was not re-read: %s", err.msg);
        else
            cli_note("SIGHUP: the patch library was re-read");
    }
    cli_note("stopping: no new connections; finishing the requests in flight");
    MHD_quiesce_daemon(d);
    xp_engine_drain(srv.eng, DRAIN_SECONDS);
    for (int i = 0; i < 500 && atomic_load(&srv.live) > 0; i++) { /* the last bytes sent */
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    MHD_stop_daemon(d);
    xp_engine_free(srv.eng);
    xp_library_free(srv.lib);
    xp_model_close(srv.m);
    return EXIT_OK;
}
