/* MPI search benchmark: the same search (the Bankai-like configuration of bench_search:
 * the 60 calculus training probes as targets, the 5 knowledge controls, rows of gate and
 * up in layers 1-4 and n_layer-2, seq_logprob, mean fitness, screening 2) run by
 * build/xorpatch-mpi on 1 and on 2 ranks of mpirun, one thread each, on the synthetic
 * bonsai-1.7b shape. It reports the candidate evaluations per second (the iterations the
 * search completes, and every evaluation the ranks made, those thrown away after a kept
 * flip included), the speed-up, whether both runs wrote the same log, and what the
 * measured times give for more ranks (the model in README, "A search on a cluster").
 * Usage: bench_mpi [SHAPE]   (default bonsai-1.7b)
 * Environment: XP_BENCH_MPI_ITERS (default 30), XP_MPI_BIN (build/xorpatch-mpi),
 * XP_SHARED, XP_BIN (for synth). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "xorpatch.h"

typedef struct outcome {
    size_t iters, evals, thrown, kept, screened;
    double loop_s, full_s, screen_s; /* the loop; mean seconds of a full and a screened
                                        evaluation (from the log) */
    double cpu_s;                    /* the CPU time of the whole run, every rank's */
    char *log;                       /* without the timings */
} outcome;

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    size_t got = buf ? fread(buf, 1, (size_t)n, f) : 0;
    if (buf)
        buf[got] = 0;
    fclose(f);
    return buf;
}

/* The log's lines without "seconds"; the mean seconds of full and screened ones. */
static char *log_without_timings(const char *text, outcome *o)
{
    char *out = malloc(strlen(text) + 1), *w = out;
    double full = 0, screen = 0;
    size_t n_full = 0;
    for (const char *p = text; *p;) {
        const char *end = strchr(p, '\n');
        size_t len = end ? (size_t)(end - p) + 1 : strlen(p);
        const char *s = strstr(p, "\"seconds\":");
        if (s && s < p + len) {
            double sec = atof(s + 10);
            const char *after = strpbrk(s, ",}");
            bool screened =
                strstr(p, "\"screened\":true") && strstr(p, "\"screened\":true") < p + len;
            if (screened)
                screen += sec, o->screened++;
            else
                full += sec, n_full++;
            memcpy(w, p, (size_t)(s - p));
            w += s - p;
            size_t rest = len - (size_t)(after - p);
            memcpy(w, after, rest);
            w += rest;
        } else {
            memcpy(w, p, len);
            w += len;
        }
        p += len;
    }
    *w = 0;
    o->full_s = n_full ? full / (double)n_full : 0;
    o->screen_s = o->screened ? screen / (double)o->screened : 0;
    return out;
}

static outcome run(const char *mpi_bin, const char *model, const char *train, int np, size_t iters)
{
    char out[256], err_path[256], cmd[4096];
    snprintf(out, sizeof out, "build/bench/mpi-np%d.json", np);
    snprintf(err_path, sizeof err_path, "build/bench/mpi-np%d.err", np);
    snprintf(cmd, sizeof cmd,
             "rm -f %s %s.log.jsonl; OMP_WAIT_POLICY=passive mpirun --allow-run-as-root "
             "--oversubscribe --bind-to none -x OMP_WAIT_POLICY -np %d %s search -m %s --probes "
             "%s --controls probes/knowledge_controls.json --iterations %zu --seed 1 "
             "--auto-stop off --no-eval --random-baseline 0 -t 1 --mpi -o %s 2>%s >/dev/null",
             out, out, np, mpi_bin, model, train, iters, out, err_path);
    struct rusage before, after;
    getrusage(RUSAGE_CHILDREN, &before);
    int status = system(cmd);
    getrusage(RUSAGE_CHILDREN, &after);
    if (status != 0) {
        fprintf(stderr, "bench_mpi: %s failed (see %s)\n", cmd, err_path);
        exit(1);
    }
    outcome o = {0};
#define SECS(t) ((double)(t).tv_sec + (double)(t).tv_usec * 1e-6)
    o.cpu_s =
        SECS(after.ru_utime) + SECS(after.ru_stime) - SECS(before.ru_utime) - SECS(before.ru_stime);
    char *err = slurp(err_path), *line = err ? strstr(err, "mpi: ") : NULL;
    int ranks;
    if (!line || sscanf(line,
                        "mpi: %d ranks: %zu iterations from %zu candidate evaluations (%zu "
                        "thrown away after %zu kept flips), %lf s",
                        &ranks, &o.iters, &o.evals, &o.thrown, &o.kept, &o.loop_s) != 6) {
        fprintf(stderr, "bench_mpi: no \"mpi:\" line in %s\n", err_path);
        exit(1);
    }
    free(err);
    char log_path[300];
    snprintf(log_path, sizeof log_path, "%s.log.jsonl", out);
    char *log = slurp(log_path);
    o.log = log ? log_without_timings(log, &o) : NULL;
    free(log);
    return o;
}

static const char *load_average(void)
{
    static char text[64] = "?";
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (!fgets(text, sizeof text, f))
            snprintf(text, sizeof text, "?");
        fclose(f);
        text[strcspn(text, "\n")] = 0;
    }
    return text;
}

int main(int argc, char **argv)
{
    const char *shape = argc > 1 ? argv[1] : "bonsai-1.7b";
    const char *shared = getenv("XP_SHARED") ? getenv("XP_SHARED") : "../shared";
    const char *bin = getenv("XP_BIN") ? getenv("XP_BIN") : "build/xorpatch";
    const char *mpi_bin = getenv("XP_MPI_BIN");
    char train[512], path[256], cmd[1024];
    snprintf(train, sizeof train, "%s/fixtures/probes/bankai/calculus_train.json", shared);
    struct stat st;
    if (!mpi_bin || !*mpi_bin || stat(mpi_bin, &st) != 0 ||
        system("command -v mpirun >/dev/null 2>&1") != 0) {
        printf("MPI search benchmark skipped: no build/xorpatch-mpi or mpirun (install Open "
               "MPI: apt-get install libopenmpi-dev openmpi-bin, then make)\n");
        return 0;
    }
    if (stat(train, &st) != 0) {
        printf("MPI search benchmark skipped: %s is missing (it needs the shared fixtures "
               "beside the clone)\n",
               train);
        return 0;
    }
    const char *it_env = getenv("XP_BENCH_MPI_ITERS");
    size_t iters = it_env && atol(it_env) > 0 ? (size_t)atol(it_env) : 30;
    mkdir("build/bench", 0777);
    snprintf(path, sizeof path, "build/bench/%s-vocab.gguf", shape);
    if (stat(path, &st) != 0) {
        snprintf(cmd, sizeof cmd, "%s synth -q --shape %s --seed 1 -o %s", bin, shape, path);
        if (system(cmd) != 0) {
            fprintf(stderr, "bench_mpi: %s failed\n", cmd);
            return 1;
        }
    }
    printf("MPI search benchmark, %s, Bankai-like search (60 targets, 5 controls, rows of "
           "gate+up, mean fitness, screen 2), %zu iterations, 1 thread per rank, mpirun on "
           "this machine\n",
           shape, iters);
    printf("%-5s %6s %6s %7s %6s %9s %10s %10s %8s %9s\n", "ranks", "iters", "kept", "evals",
           "waste", "loop s", "iters/s", "evals/s", "speed-up", "CPU s");
    outcome o[2];
    for (int k = 0; k < 2; k++) {
        o[k] = run(mpi_bin, path, train, k + 1, iters);
        printf("%-5d %6zu %6zu %7zu %6zu %9.1f %10.3f %10.3f %7.2fx %9.1f\n", k + 1, o[k].iters,
               o[k].kept, o[k].evals, o[k].thrown, o[k].loop_s, (double)o[k].iters / o[k].loop_s,
               (double)o[k].evals / o[k].loop_s, o[0].loop_s / o[k].loop_s, o[k].cpu_s);
    }
    /* on a machine others share, the wall-clock ratio is what the ranks got of the cores;
     * the CPU time says what 2 free cores would give (each rank busy but for its waits) */
    printf("speed-up from CPU time (the 2 ranks' work on 2 free cores): %.2fx; the machine's "
           "load average when it ended: %s\n",
           2 * o[0].cpu_s / o[1].cpu_s, load_average());
    bool same = o[0].log && o[1].log && !strcmp(o[0].log, o[1].log);
    printf("the two runs wrote %s\n", same ? "the same log (timings aside)" : "DIFFERENT logs");
    /* the model: per iteration one evaluation (mean e); per kept flip, every in-flight
     * candidate (2N-2 with 2 held per follower) thrown away and a full measurement f on
     * the N-1 ranks that did not evaluate it; N ranks share the work */
    double a = o[0].iters ? (double)o[0].kept / (double)o[0].iters : 0;
    double e = o[0].loop_s / (double)o[0].iters, f = o[0].full_s;
    double rho = e > 0 ? f / e : 0;
    printf("measured on 1 rank: %.3f s per iteration, a full evaluation %.3f s, a screened one "
           "%.3f s (%zu of %zu screened out), accept rate %.3f\n",
           e, f, o[0].screen_s, o[0].screened, o[0].iters, a);
    printf("model: speed-up(N) = N / (1 + a (N-1) (2 + f/e)) with f/e = %.2f:", rho);
    int ns[] = {2, 4, 8, 16, 64};
    for (int i = 0; i < 5; i++)
        printf(" N=%d %.2fx%s", ns[i], ns[i] / (1 + a * (ns[i] - 1) * (2 + rho)), i < 4 ? "," : "");
    printf("; limit 1/(a (2 + f/e)) = %.1fx; a second rank stops paying at a >= %.2f\n",
           a > 0 ? 1 / (a * (2 + rho)) : 0, 1 / (2 + rho));
    free(o[0].log), free(o[1].log);
    return same ? 0 : 1;
}
