/* What the patch commands (apply, revert, verify, diff, stack, show, convert) share:
 * loading patch arguments (files in any format, or Neagari directories), learning a
 * layout from a model or a named shape, choosing an output, apply's and revert's file
 * operation (progress, the crash-test hook) and number formatting. */
#ifndef XP_CLI_PATCH_UTIL_H
#define XP_CLI_PATCH_UTIL_H
#include "cli/options.h"

/* apply and revert: checks the options they share (-m FILE, -p PATCH..., -o OUT or
 * --in-place; model_role names -m's file in messages, e.g. "BASE.gguf"; need_patch: at
 * least one -p), runs op with a progress bar, notes a recovery of an interrupted
 * in-place operation, and has report print the outcome. The exit code. */
typedef int (*cli_file_op)(const char *in, xp_patch *const *ps, size_t n, const char *out,
                           const xp_patch_file_opts *o, xp_patch_file_result *res, xp_err *err);
typedef int (*cli_file_report)(const cli_values *v, const xp_patch_file_result *res);
int cli_file_command(const cli_values *v, const char *command, const char *model_role,
                     bool need_patch, cli_file_op op, cli_file_report report);

/* Binds every patch to a layout: the model file when given, else the named shape
 * (bonsai-8b ...), else nothing (returns 0 without binding). */
int cli_patches_layout(xp_patch *const *ps, size_t n, const char *model, const char *shape,
                       xp_err *err);

/* The output format: --to NAME when given, else from the file's extension (.xpb binary,
 * anything else xorpatch JSON). -1 after printing a usage error. */
int cli_patch_out_format(const char *command, const char *to, const char *path);

/* The output diff, stack and convert write: -o required (out_role names it, such as
 * "-o PATCH"), not both -m and --shape, and the format as above. The format, or -1 after
 * printing a usage error. */
int cli_patch_output(const char *command, const char *out_role, const cli_values *v);

/* The base fingerprint of a model file: its record's base when it has one, else the
 * SHA-256 of the file. */
int cli_model_base(const char *path, const xp_gguf *g, char sha[65], xp_err *err);

/* Sets what a patch this program makes records about its making: name (when it has none
 * or one is given), tool and creation time. */
void cli_patch_stamp(xp_patch *p, const char *name);

/* The shape summary of a model as a JSON object text (malloc'd), or NULL. */
char *cli_architecture_json(const xp_gguf *g);

#endif
