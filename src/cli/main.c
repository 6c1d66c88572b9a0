/* The xorpatch program: `xorpatch COMMAND [options]`. Finds the command in the table,
 * sets the output conventions every command shares, and documents the exit codes. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"

static const cli_command *const commands[] = {&cli_synth,    &cli_inspect, &cli_tokenize,
                                              &cli_generate, &cli_logits,  &cli_perplexity,
                                              &cli_apply,    &cli_revert,  &cli_verify,
                                              &cli_diff,     &cli_stack,   &cli_show,
                                              &cli_convert,  &cli_corpus,  &cli_train, &cli_serve,
                                              &cli_audit,    &cli_eval,    &cli_bench_task,
                                              &cli_search,   &cli_pipeline, &cli_experiment};
#define N_COMMANDS (sizeof commands / sizeof commands[0])

static void print_help(FILE *out)
{
    fprintf(out,
            "xorpatch %s: sparse XOR patches for 1-bit (Q1_0) Qwen3 language models\n"
            "\n"
            "Usage: xorpatch COMMAND [options]\n"
            "       xorpatch help COMMAND     the options of one command\n"
            "       xorpatch --version\n"
            "\n"
            "Commands:\n",
            XP_VERSION);
    for (size_t i = 0; i < N_COMMANDS; i++)
        fprintf(out, "  %-10s %s\n", commands[i]->name, commands[i]->summary);
    fprintf(out, "\n"
                 "Every command takes -q/--quiet and -h/--help. Progress and colour are shown\n"
                 "only on a terminal, never when NO_COLOR is set. Errors go to stderr as\n"
                 "'xorpatch: error: ...'.\n"
                 "\n"
                 "Exit codes: 0 ok, 2 a usage error (an option, a value out of range) or bad\n"
                 "input (a file, a model), 3 internal error (out of memory, a bug).\n");
}

static const cli_command *find(const char *name)
{
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (strcmp(commands[i]->name, name) == 0)
            return commands[i];
    return NULL;
}

/* OpenMP threads that wait by spinning collapse when anything else wants the cores (on a
 * busy 2-core machine decoding fell from 10.7 to 0.4 tokens/s), and threads that sleep
 * at once are slow to wake for the many short parallel loops of a decode step (38 instead
 * of 44-49 tokens/s on an idle one). So waiting threads spin briefly, then sleep, unless
 * the user chose otherwise. The OpenMP runtime reads its settings before main, so the
 * program runs itself again with the setting in its environment. */
static void wait_briefly(char **argv)
{
    if (getenv("OMP_WAIT_POLICY") || getenv("GOMP_SPINCOUNT") || getenv("XORPATCH_REEXEC"))
        return;
    setenv("GOMP_SPINCOUNT", "20000", 1);
    setenv("XORPATCH_REEXEC", "1", 1); /* never twice, whatever happens below */
    execv("/proc/self/exe", argv);
    /* no /proc (not Linux): go on with the runtime's default */
}

int main(int argc, char **argv)
{
    wait_briefly(argv);
    const char *no_color = getenv("NO_COLOR");
    cli.terminal = isatty(STDERR_FILENO) && !(no_color && *no_color);
    if (argc < 2) {
        print_help(stderr);
        return EXIT_USAGE;
    }
    const char *name = argv[1];
    if (!strcmp(name, "--help") || !strcmp(name, "-h")) {
        print_help(stdout);
        return EXIT_OK;
    }
    if (!strcmp(name, "--version") || !strcmp(name, "version")) {
        printf("xorpatch %s\n", XP_VERSION);
        return EXIT_OK;
    }
    if (!strcmp(name, "help")) {
        if (argc < 3) {
            print_help(stdout);
            return EXIT_OK;
        }
        const cli_command *cmd = find(argv[2]);
        if (!cmd)
            return cli_usage_error("", "unknown command '%s'", argv[2]);
        cli_print_usage(cmd);
        return EXIT_OK;
    }
    const cli_command *cmd = find(name);
    if (!cmd) {
        fprintf(stderr, "xorpatch: error: unknown command '%s'\nTry 'xorpatch --help'.\n", name);
        return EXIT_USAGE;
    }
    opterr = 0; /* the commands report bad options in the program's own format */
    return cmd->run(argc - 1, argv + 1);
}
