/* xorpatch's serve layer: what `xorpatch serve` runs behind its HTTP front, as library
 * calls. The patch library (a folder of patch files served as model ids "base",
 * "base+NAME", "base+a+b"), the engine (continuous batching: requests join and leave one
 * running batch between decode steps, each sequence with its own patch overlay over the
 * one copy of the base), and the OpenAI protocol (requests read from JSON with their
 * errors as status and OpenAI error bodies, responses and stream chunks written as
 * JSON). Nothing here prints, opens a socket or handles a signal. */
#ifndef XORPATCH_SERVE_H
#define XORPATCH_SERVE_H

#include "xorpatch/job.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- the patch library -------------------------------------------------------- */

/* One model the server answers as: the base or a stack of library patches applied in
 * order, with the overlay its sequences run with (NULL for the base). Counted: the
 * library holds one while it lists it, and every request that runs it holds one, so a
 * reload never changes the patch of a request in flight. */
typedef struct xp_served xp_served;
const char *xp_served_id(const xp_served *s); /* "base", "base+a+b" */
const xp_overlay *xp_served_overlay(const xp_served *s);
xp_served *xp_served_retain(xp_served *s);
void xp_served_release(xp_served *s);

/* Patch names are file names without their extension, of letters, digits, '_', '-' and
 * '.', not starting with '.': a model id is matched against them in memory and never
 * reaches the file system. */
typedef struct xp_library xp_library;

/* One file or folder of the library and whether it is served. */
typedef struct xp_library_item {
    char *name;    /* the patch name (the id is "base+" name) */
    char *file;    /* its file or Neagari folder, relative to the library folder */
    char *format;  /* "xorpatch", "binary", "bankai-v1", ... */
    size_t flips;  /* over all its patches (a Neagari folder holds several) */
    char *refused; /* why it is not served (NULL: served) */
} xp_library_item;

/* Reads every patch of dir (NULL: no library, the base alone): each regular file in any
 * format xorpatch reads and each Neagari patch folder, checked against m's file as
 * `apply` checks (made for m's base, bound to its tensors). A file that fails is listed
 * with its reason and not served; only a folder that cannot be read is an error. */
int xp_library_open(xp_library **out, xp_model *m, const char *dir, xp_err *err);
void xp_library_free(xp_library *lib);
/* Reads the folder again and replaces the list; served models in use stay valid. */
int xp_library_reload(xp_library *lib, xp_err *err);
/* A copy of the list, sorted by name (the caller frees it with _items_free). */
int xp_library_items(xp_library *lib, xp_library_item **items, size_t *n, xp_err *err);
void xp_library_items_free(xp_library_item *items, size_t n);
/* The served model of an id (retained: the caller releases it): XP_ENOTFOUND naming the
 * patch when the id names one the library does not serve (with its refusal when it is
 * listed), XP_EINVAL when the id is not "base" or "base+NAME[+NAME...]" or repeats a
 * patch. */
int xp_library_get(xp_library *lib, const char *id, xp_served **out, xp_err *err);

/* ---- the engine --------------------------------------------------------------- */

typedef struct xp_engine xp_engine;
typedef struct xp_engine_opts {
    size_t parallel; /* sequences in the running batch at most (0: 4) */
    size_t ctx;      /* tokens per sequence, prompt and completion (0: the model's) */
    size_t queue;    /* requests waiting beyond those at most (0: 256) */
    int threads;     /* the forward pass's threads (0: OpenMP's default for a new thread) */
} xp_engine_opts;

/* Starts the engine's thread on m (fast path; the model must not change while it runs). */
int xp_engine_new(xp_engine **out, xp_model *m, const xp_engine_opts *o, xp_err *err);
/* Cancels what runs and waits, stops the thread, frees. */
void xp_engine_free(xp_engine *e);

/* A request's tokens as they become final. ids/logprob/top: the tokens sampled since the
 * last event (their log-probabilities when asked, top alternatives n_top each). */
typedef struct xp_gen_event {
    const char *text;
    size_t len;
    size_t n_tokens;
    const int32_t *ids;
    const float *logprob;
    const int32_t *top_ids; /* [n_tokens][n_top] */
    const float *top_logprob;
    size_t n_top;
} xp_gen_event;

enum { XP_FINISH_CANCELLED = 3 }; /* beyond enum xp_finish: cancelled or shut down */
typedef struct xp_gen_result {
    int finish; /* enum xp_finish or XP_FINISH_CANCELLED */
    int rc;     /* an error that ended it (finish CANCELLED), with its message */
    char error[256];
    size_t prompt_tokens, completion_tokens;
} xp_gen_result;

/* Called on the engine's thread, so they must return quickly; on_text's non-zero return
 * cancels the request. on_done is the last call. */
typedef struct xp_gen_callbacks {
    int (*on_text)(void *ctx, const xp_gen_event *ev);
    void (*on_done)(void *ctx, const xp_gen_result *r);
    void *ctx;
} xp_gen_callbacks;

typedef struct xp_gen_request {
    const int32_t *prompt; /* copied */
    size_t n_prompt;
    xp_served *model; /* retained by the request */
    xp_sampler sampler;
    size_t max_tokens;
    const char *const *stop; /* NULL-terminated, copied; may be NULL */
    bool logprobs;
    size_t top_logprobs; /* alternatives per token, at most XP_TOP_LOGPROBS_MAX */
} xp_gen_request;
#define XP_TOP_LOGPROBS_MAX 20

/* A request in the engine: counted, held by the engine until its on_done and by the
 * submitter until it releases it, so cancelling is safe at any time. */
typedef struct xp_gen xp_gen;
/* Queues a request (it joins the batch at the next step with room): XP_EINVAL when the
 * prompt leaves no room in the context or the engine is shutting down, XP_ENOMEM when
 * the queue is full. */
int xp_engine_submit(xp_engine *e, const xp_gen_request *rq, const xp_gen_callbacks *cb,
                     xp_gen **out, xp_err *err);
/* Ends the request at the next step (its slot freed; on_done says CANCELLED). */
void xp_gen_cancel(xp_gen *g);
void xp_gen_release(xp_gen *g);

/* Refuses new requests from now on, waits up to timeout_s seconds for those in flight
 * to finish, then cancels the rest and waits for them. */
void xp_engine_drain(xp_engine *e, double timeout_s);

/* Counters for /metrics. */
typedef struct xp_engine_stats {
    uint64_t requests, finished, cancelled, prompt_tokens, completion_tokens, steps;
    size_t queued, running;
    double tokens_per_s; /* completion tokens over the last steps */
} xp_engine_stats;
void xp_engine_stats_get(xp_engine *e, xp_engine_stats *out);
/* Requests per served id so far: calls fn for each. */
void xp_engine_per_model(xp_engine *e, void (*fn)(void *ctx, const char *id, uint64_t n),
                         void *ctx);

/* ---- the OpenAI protocol ------------------------------------------------------- */

/* The limits a server sets on a request. */
typedef struct xp_api_limits {
    size_t max_tokens;     /* the largest max_tokens accepted (400 above) */
    size_t default_tokens; /* max_tokens when a request gives none */
    size_t max_stop;       /* stop strings at most */
} xp_api_limits;

/* A completion or chat request as read from its JSON body. */
typedef struct xp_api_request {
    bool chat, stream;
    char *model;     /* the id, with the "patch" field appended as "+PATCH" when given */
    int32_t *prompt; /* encoded: the prompt, or the chat template over the messages */
    size_t n_prompt;
    xp_sampler sampler;
    size_t max_tokens;
    char **stop; /* NULL-terminated */
    bool logprobs;
    size_t top_logprobs;
    bool include_usage; /* stream_options.include_usage */
} xp_api_request;

/* An error as the OpenAI API gives it: the HTTP status and the body
 * {"error": {"message", "type", "param", "code"}}. */
typedef struct xp_api_error {
    int status;
    char message[512];
    const char *type;  /* "invalid_request_error", "not_found_error", ... */
    const char *param; /* the field at fault, or NULL */
    const char *code;  /* "model_not_found", ..., or NULL */
} xp_api_error;
/* Sets e; returns -1. */
int xp_api_error_set(xp_api_error *e, int status, const char *type, const char *param,
                     const char *code, const char *fmt, ...) __attribute__((format(printf, 6, 7)));
/* The error's JSON body (malloc'd text). */
char *xp_api_error_body(const xp_api_error *e);

/* Reads a request body (chat: /v1/chat/completions) and tokenises its prompt: 400 for
 * malformed JSON, a known field of the wrong type or out of range (max_tokens over the
 * limit, n other than 1, several prompts). Fields it does not know are ignored, as
 * OpenAI's clients send fields a server may not know. 0, or -1 with e set. */
int xp_api_request_parse(xp_api_request *rq, bool chat, const char *body, size_t len,
                         const xp_tokenizer *tok, const xp_api_limits *lim, xp_api_error *e);
void xp_api_request_free(xp_api_request *rq);

/* The answer to one request as it runs: with stream, the server-sent events to send as
 * each piece of text comes (OpenAI's chunk format, the text cut only between whole UTF-8
 * characters), ending with the finish chunk, the usage chunk when asked, and
 * "data: [DONE]"; without, the whole response body at the end. */
typedef struct xp_api_answer xp_api_answer;
/* id: "cmpl-..." or "chatcmpl-..."; created: Unix time; model: the id answered as. */
int xp_api_answer_new(xp_api_answer **out, const xp_api_request *rq, const char *id,
                      long long created, const char *model, const xp_tokenizer *tok, xp_err *err);
void xp_api_answer_free(xp_api_answer *a);
/* The events to send now for the text and tokens of ev (malloc'd, "" when none, NULL
 * when out of memory); without stream it keeps them and returns "". */
char *xp_api_answer_text(xp_api_answer *a, const xp_gen_event *ev);
/* The rest: the last events (stream), or the response body; NULL when out of memory.
 * A result that ended in an error gives an error event (stream) or NULL with *status
 * and the body in *error (malloc'd). */
char *xp_api_answer_end(xp_api_answer *a, const xp_gen_result *res);
/* The first event of a chat stream (the assistant role), "" otherwise. */
char *xp_api_answer_start(xp_api_answer *a);

/* GET /v1/models: every served id, "base" first (malloc'd JSON). */
char *xp_api_models(xp_library *lib, long long created);

#ifdef __cplusplus
}
#endif
#endif
