/* The commands' option table through the built program: every --help names exactly the
 * options its command takes; an option that is taken once is refused when given twice,
 * naming it, while repeatable ones add up; and numbers are range-checked (a usage error
 * naming the option and its range, exit 2) instead of wrapping around or sizing a huge
 * allocation. */
#include <ctype.h>
#include <string.h>

#include "testutil.h"

static int run(const char *args, char **out, char **err)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "NO_COLOR=1 %s %s", xp_test_bin(), args);
    return xp_test_run(cmd, NULL, out, err);
}

/* ---- help against what each command takes ---- */

#define MAX_NAMES 96

typedef struct names {
    char v[MAX_NAMES][32];
    size_t n;
} names;

static bool has(const names *s, const char *name)
{
    for (size_t i = 0; i < s->n; i++)
        if (!strcmp(s->v[i], name))
            return true;
    return false;
}

static void add(names *s, const char *name, size_t len)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%.*s", (int)len, name);
    if (!has(s, buf) && s->n < MAX_NAMES)
        snprintf(s->v[s->n++], sizeof s->v[0], "%s", buf);
}

/* The long options a help text names ("--name"), and its short ones ("-x, --name"). */
static void named(const char *help, names *longs, names *shorts)
{
    for (const char *p = help; (p = strstr(p, "--")); p += 2) {
        size_t n = 0;
        while (islower((unsigned char)p[2 + n]) || isdigit((unsigned char)p[2 + n]) ||
               (n && p[2 + n] == '-'))
            n++;
        if (n && (p == help || !isalnum((unsigned char)p[-1])))
            add(longs, p + 2, n);
        if (n && p - help >= 4 && p[-1] == ' ' && p[-2] == ',' && p[-4] == '-' &&
            isalpha((unsigned char)p[-3]))
            add(shorts, p - 3, 1);
    }
}

/* Refused as no option of the command (rather than for its value)? */
static bool refused(const char *err)
{
    return strstr(err, "unknown option") || strstr(err, "an option of");
}

/* The command takes the option: it is not refused when given with a value (attached) or,
 * for a flag, without one; --help after it ends the run before any work. */
static bool takes(const char *cmd, const char *opt, bool is_long)
{
    char args[256], *out, *err;
    snprintf(args, sizeof args, is_long ? "%s --%s=1 --help" : "%s -%s1 --help", cmd, opt);
    run(args, &out, &err);
    bool no = refused(err);
    free(out), free(err);
    if (!no)
        return true;
    snprintf(args, sizeof args, is_long ? "%s --%s --help" : "%s -%s --help", cmd, opt);
    int rc = run(args, &out, &err);
    no = refused(err);
    free(out), free(err);
    return !no && rc == 0;
}

/* getopt_long takes an unambiguous prefix of a long name as that option. */
static bool prefix_of_one(const names *s, const char *name)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->v[i], name) && !strncmp(s->v[i], name, strlen(name)))
            return true;
    return false;
}

Test(cli_options, every_help_names_exactly_the_options_its_command_takes, .timeout = 600)
{
    char *out, *err;
    cr_assert_eq(run("--help", &out, &err), 0);
    free(err);
    names cmds = {0};
    for (const char *p = strstr(out, "Commands:\n"); p && (p = strstr(p, "\n  ")); p += 3) {
        size_t n = 0;
        while (p[3 + n] && !isspace((unsigned char)p[3 + n]))
            n++;
        add(&cmds, p + 3, n);
    }
    free(out);
    cr_assert_gt(cmds.n, 20, "the command list");
    static names longs[MAX_NAMES], shorts[MAX_NAMES];
    names all_longs = {0}, all_shorts = {0};
    for (size_t c = 0; c < cmds.n; c++) {
        char args[64];
        snprintf(args, sizeof args, "help %s", cmds.v[c]);
        cr_assert_eq(run(args, &out, &err), 0, "%s", args);
        named(out, &longs[c], &shorts[c]);
        free(out), free(err);
        for (size_t i = 0; i < longs[c].n; i++)
            add(&all_longs, longs[c].v[i], strlen(longs[c].v[i]));
        for (size_t i = 0; i < shorts[c].n; i++)
            add(&all_shorts, shorts[c].v[i], 1);
    }
    for (size_t c = 0; c < cmds.n; c++) {
        const char *cmd = cmds.v[c];
        for (size_t i = 0; i < all_longs.n; i++) {
            const char *o = all_longs.v[i];
            bool named_here = has(&longs[c], o);
            if (!named_here && prefix_of_one(&longs[c], o))
                continue;
            cr_expect_eq(takes(cmd, o, true), named_here, "%s: --%s is %s its --help", cmd, o,
                         named_here ? "named in, but not taken, by" : "taken, but not named in,");
        }
        for (size_t i = 0; i < all_shorts.n; i++) {
            const char *o = all_shorts.v[i];
            bool named_here = has(&shorts[c], o);
            cr_expect_eq(takes(cmd, o, false), named_here, "%s: -%s is %s its --help", cmd, o,
                         named_here ? "named in, but not taken, by" : "taken, but not named in,");
        }
    }
}

/* ---- refusals ---- */

typedef struct refusal {
    const char *args, *says;
} refusal;

static void expect_refused(const refusal *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char *out, *err, try[96];
        char cmd[64];
        sscanf(cases[i].args, "%63s", cmd);
        snprintf(try, sizeof try, "Try 'xorpatch help %s'.", cmd);
        cr_expect_eq(run(cases[i].args, &out, &err), 2, "%s: %s", cases[i].args, err);
        cr_expect(strncmp(err, "xorpatch: error: ", 17) == 0, "%s: %s", cases[i].args, err);
        cr_expect(strstr(err, cases[i].says), "%s: '%s' lacks '%s'", cases[i].args, err,
                  cases[i].says);
        cr_expect(strstr(err, try), "%s: %s", cases[i].args, err);
        cr_expect_str_empty(out, "%s", cases[i].args);
        free(out), free(err);
    }
}

Test(cli_options, an_option_taken_once_is_refused_when_given_twice)
{
    const refusal cases[] = {
        {"tokenize -m /nonexistent/a.gguf -m /nonexistent/b.gguf", "-m/--model is given twice"},
        {"generate --model /nonexistent/a.gguf -m /nonexistent/b.gguf -p hi",
         "-m/--model is given twice"},
        {"generate -m /nonexistent/a.gguf -p one --prompt two", "-p/--prompt is given twice"},
        {"inspect --json --json /nonexistent/x.gguf", "--json is given twice"},
        {"eval -m /nonexistent/a.gguf --probes /nonexistent/a.json --probes /nonexistent/b.json",
         "--probes is given twice"},
        {"apply -m /nonexistent/a.gguf -o /nonexistent/b.gguf -o /nonexistent/c.gguf",
         "-o/--output is given twice"},
        {"train --corpus /nonexistent/c.jsonl --steps 3 --steps 4 -o /nonexistent/x.gguf",
         "--steps is given twice"},
        {"synth -t 1 --threads 2 -o /nonexistent/x.gguf", "-t/--threads is given twice"},
        {"perplexity -m /nonexistent/a.gguf -f /nonexistent/t.txt --plain --plain",
         "--plain is given twice"},
        {"convert /nonexistent/in.json -o /nonexistent/out.json --to binary --to bankai-v1",
         "--to is given twice"},
        /* two flags that set one thing, the one given last winning before */
        {"synth --tied --untied -o /nonexistent/x.gguf", "give --tied or --untied, not both"},
    };
    expect_refused(cases, sizeof cases / sizeof *cases);
}

Test(cli_options, repeatable_options_add_up)
{
    char model[512], args[4096], *out, *err;
    xp_test_tiny_model(model, sizeof model);
    snprintf(args, sizeof args, "generate -m '%s' -p 'one two' -n 2 --stop zzz --stop yyy -q",
             model);
    cr_expect_eq(run(args, &out, &err), 0, "%s", err);
    free(out), free(err);
    char many[1024] = "generate -m /nonexistent/x.gguf -p hi";
    for (int i = 0; i < 17; i++)
        strcat(many, " --stop s");
    const refusal cases[] = {{many, "--stop is taken at most 16 times"}};
    expect_refused(cases, 1);
    /* each -p adds a patch */
    char a[512], b[512], patched[512];
    xp_test_tmp_path(a, sizeof a, "row-a.json");
    xp_test_tmp_path(b, sizeof b, "row-b.json");
    xp_test_tmp_path(patched, sizeof patched, "two-patches.gguf");
    xp_test_write(a, "{\"format\":\"bankai_row_xor_v1\",\"flips\":[{\"layer\":0,\"proj\":"
                     "\"up_proj\",\"row\":3}]}");
    xp_test_write(b, "{\"format\":\"bankai_row_xor_v1\",\"flips\":[{\"layer\":1,\"proj\":"
                     "\"up_proj\",\"row\":5}]}");
    snprintf(args, sizeof args, "apply -m '%s' -p '%s' --patch '%s' -o '%s' -q", model, a, b,
             patched);
    cr_expect_eq(run(args, &out, &err), 0, "%s", err);
    cr_expect(strstr(out, "2 patch(es) recorded"), "%s", out);
    free(out), free(err);
    unlink(a), unlink(b), unlink(patched);
}

/* Values that wrapped around or were taken as they came before the table checked them. */
Test(cli_options, out_of_range_numbers_are_usage_errors)
{
    const refusal cases[] = {
        {"train --layers 4294967297 --corpus /nonexistent/c.jsonl -o /nonexistent/x.gguf",
         "--layers needs a positive integer up to 4294967295, not '4294967297'"},
        {"train --steps 4294967296 --corpus /nonexistent/c.jsonl -o /nonexistent/x.gguf",
         "--steps needs a positive"},
        {"train --checkpoint-every 4294967296 --corpus /nonexistent/c.jsonl -o /nonexistent/x.gguf",
         "--checkpoint-every needs"},
        {"synth --seed 18446744073709551616 -o /nonexistent/x.gguf",
         "--seed needs a non-negative integer up to 18446744073709551615"},
        {"corpus --seed 99999999999999999999 -o /nonexistent/c.jsonl", "--seed needs"},
        {"generate -m /nonexistent/x.gguf -p hi --top-k 4294967296",
         "--top-k needs a non-negative integer"},
        {"generate -m /nonexistent/x.gguf -p hi --seed 18446744073709551616", "--seed needs"},
        {"logits -m /nonexistent/x.gguf -p hi --top 999999999",
         "--top needs a positive integer up to"},
        {"eval -m /nonexistent/x.gguf --probes /nonexistent/p.json --max-tokens 99999999999",
         "--max-tokens needs"},
        {"audit -m /nonexistent/x.gguf --probes /nonexistent/p.json --max-tokens 4294967296",
         "--max-tokens needs"},
        {"perplexity -m /nonexistent/x.gguf -f /nonexistent/t.txt --max-chunks "
         "18446744073709551615",
         "--max-chunks needs"},
    };
    expect_refused(cases, sizeof cases / sizeof *cases);
}

/* Bad values that were refused before and still are, now with the range they miss. */
Test(cli_options, bad_numbers_stay_refused)
{
    const refusal cases[] = {
        {"generate -m /nonexistent/x.gguf -p hi -n -1", "-n needs a positive integer"},
        {"generate -m /nonexistent/x.gguf -p hi --max-tokens 0",
         "--max-tokens needs a positive integer"},
        {"generate -m /nonexistent/x.gguf -p hi -t 0", "-t needs a positive integer up to 1024"},
        {"synth -t 1025 -o /nonexistent/x.gguf", "-t needs"},
        {"perplexity -m /nonexistent/x.gguf -f /nonexistent/t.txt --ctx 0",
         "--ctx needs an integer from 2 to"},
        {"perplexity -m /nonexistent/x.gguf -f /nonexistent/t.txt --ctx 1", "--ctx needs"},
        {"generate -m /nonexistent/x.gguf -p hi --temp 101", "--temp needs a number in [0, 100]"},
        {"generate -m /nonexistent/x.gguf -p hi --temp nan", "--temp needs"},
        {"generate -m /nonexistent/x.gguf -p hi --top-p 0", "--top-p needs a number in (0, 1]"},
        {"train --lr -1 --corpus /nonexistent/c.jsonl -o /nonexistent/x.gguf",
         "--lr needs a number in [0, 1e+06]"},
        {"train --clip 1e99 --corpus /nonexistent/c.jsonl -o /nonexistent/x.gguf", "--clip needs"},
        {"synth --layers 1e3 -o /nonexistent/x.gguf", "--layers needs a non-negative integer"},
        {"train --layers 0 --corpus /nonexistent/c.jsonl -o /nonexistent/x.gguf",
         "--layers needs a positive integer"},
        {"audit -m /nonexistent/x.gguf --probes /nonexistent/p.json --metric nope",
         "--metric must be seq_logprob, token_gap, generation, answer_logprob or margin, not "
         "'nope'"},
        {"logits -m /nonexistent/x.gguf --ids 1,,2", "--ids needs comma-separated token ids"},
    };
    expect_refused(cases, sizeof cases / sizeof *cases);
}

/* The search commands (search, pipeline, experiment, bench-task) on the table too. */
Test(cli_options, the_job_commands_refuse_repeats_and_check_ranges)
{
    const refusal cases[] = {
        {"search -m /nonexistent/x.gguf --probes /nonexistent/p.json -o /nonexistent/o.json "
         "--iterations 3 --iterations 4",
         "--iterations is given twice"},
        {"search -m /nonexistent/x.gguf --probes /nonexistent/p.json -o /nonexistent/o.json "
         "--no-eval --no-eval",
         "--no-eval is given twice"},
        {"pipeline -m /nonexistent/x.gguf -o /nonexistent/d --seed 1 --seed 2 /nonexistent/p.json",
         "--seed is given twice"},
        {"experiment layer-map -m /nonexistent/x.gguf --probes /nonexistent/p.json --probes "
         "/nonexistent/q.json",
         "--probes is given twice"},
        {"bench-task -m /nonexistent/x.gguf --tasks /nonexistent/t.jsonl --limit 1 --limit 2",
         "--limit is given twice"},
        {"search -m /nonexistent/x.gguf --probes /nonexistent/p.json -o /nonexistent/o.json "
         "--iterations 4294967296",
         "--iterations needs a positive integer up to 4294967295"},
        {"search -m /nonexistent/x.gguf --probes /nonexistent/p.json -o /nonexistent/o.json "
         "--scale-ratio 1.5",
         "--scale-ratio needs a number in [0, 1]"},
        {"pipeline -m /nonexistent/x.gguf -o /nonexistent/d --promote-cap 1000001 "
         "/nonexistent/p.json",
         "--promote-cap needs a non-negative integer up to 1000000"},
        {"experiment scale-vs-random -m /nonexistent/x.gguf --probes /nonexistent/p.json "
         "--samples 0",
         "--samples needs a positive integer"},
        {"bench-task -m /nonexistent/x.gguf --tasks /nonexistent/t.jsonl -n 0",
         "-n needs a positive integer"},
        /* the search options pipeline does not take are no options of it */
        {"pipeline -m /nonexistent/x.gguf -o /nonexistent/d --probes /nonexistent/p.json "
         "/nonexistent/q.json",
         "unknown option"},
    };
    expect_refused(cases, sizeof cases / sizeof *cases);
}
