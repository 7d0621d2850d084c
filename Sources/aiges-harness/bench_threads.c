/*
 * bench rows for many loader threads: dynamic batching and contended tiny calls (see bench_threads.h).
 * Each caller thread builds its request list once and reuses it; only wrapperExec + wrapperExecFree
 * are timed, as in bench.c.
 */
#define _GNU_SOURCE
#include "bench_threads.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BATCH_THREADS 8
#define BATCH_DELAY_US 2000
#define UNBATCHED_CALLS 30  /* per thread: 8 × 30 calls of ~5 ms one at a time, ~1.2 s */
#define BATCHED_CALLS 150   /* per thread */
#define LONE_CALLS 101
#define TINY_CALLS 100000   /* per run, split over the threads */

static double median(const double *values, int count) {
    double sorted[CONTENTION_ROUNDS > BATCH_ROUNDS ? CONTENTION_ROUNDS : BATCH_ROUNDS];
    memcpy(sorted, values, sizeof *values * (size_t)count);
    for (int i = 1; i < count; i++) {
        for (int j = i; j > 0 && sorted[j] < sorted[j - 1]; j--) {
            double swap = sorted[j];
            sorted[j] = sorted[j - 1];
            sorted[j - 1] = swap;
        }
    }
    return sorted[count / 2];
}

typedef struct {
    Plugin *plugin;
    long calls;
    size_t input;
    long *samples; /* ns per call, or NULL */
    long failures;
} Caller;

static void *call_loop(void *argument) {
    Caller *caller = argument;
    unsigned char *payload = malloc(caller->input);
    if (payload == NULL) exit(4);
    for (size_t i = 0; i < caller->input; i++) payload[i] = (unsigned char)(i * 31 + 7);
    Pair params[2] = {{"sid", "bench"}, {"appid", "bench"}};
    NodeSpec spec = {.key = "data", .bytes = payload, .len = caller->input, .type = DataAudio, .status = DataOnce};
    pParamList paramList = params_build(params, 2);
    pDataList request = data_build(&spec, 1, NULL);
    for (long call = 0; call < caller->calls; call++) {
        pDataList response = NULL;
        long start = now_ns();
        int code = caller->plugin->exec("bench", paramList, request, &response, NULL, 0);
        if (response != NULL) code |= caller->plugin->execFree("bench", &response);
        if (caller->samples != NULL) caller->samples[call] = now_ns() - start;
        if (code != 0 && caller->failures++ == 0) {
            printf("bench: call failed: %d: %s\n", code, caller->plugin->error(code));
        }
    }
    params_free(paramList);
    data_free(request);
    free(payload);
    return NULL;
}

/* `threads` callers of `calls` each; returns calls/s; the p99 (µs) of all calls in *p99 if not NULL. */
static double run_callers(Plugin *plugin, int threads, long calls, size_t input, double *p99, long *failures) {
    Caller callers[BATCH_THREADS];
    pthread_t ids[BATCH_THREADS];
    long *samples = p99 ? calloc((size_t)(threads * calls), sizeof *samples) : NULL;
    long start = now_ns();
    for (int t = 0; t < threads; t++) {
        callers[t] = (Caller){plugin, calls, input, samples ? samples + t * calls : NULL, 0};
        pthread_create(&ids[t], NULL, call_loop, &callers[t]);
    }
    for (int t = 0; t < threads; t++) pthread_join(ids[t], NULL);
    long wall = now_ns() - start;
    for (int t = 0; t < threads; t++) *failures += callers[t].failures;
    if (samples != NULL) {
        qsort(samples, (size_t)(threads * calls), sizeof *samples, compare_long);
        *p99 = samples[threads * calls * 99 / 100] / 1000.0;
        free(samples);
    }
    return (double)threads * calls / (wall / 1e9);
}

/* wrapperInit with the command line's config, bench.workload and `extra`; 0 on success. */
static int init_bench(const Options *options, Plugin *plugin, const char *workload, const Pair *extra, int count) {
    Options local = *options;
    if (local.configCount + 1 + count > MAX_PAIRS) return -1;
    local.config[local.configCount++] = (Pair){"bench.workload", (char *)workload};
    for (int i = 0; i < count; i++) local.config[local.configCount++] = extra[i];
    return harness_init(&local, plugin);
}

static int fini_bench(Plugin *plugin) {
    int code = plugin->fini();
    if (code != 0) printf("bench: wrapperFini returned %d: %s\n", code, plugin->error(code));
    return code != 0;
}

/* A number from the plugin's wrapperDebugInfo(NULL) JSON ("key": N), or -1. */
static long stat_of(Plugin *plugin, const char *key) {
    char needle[64];
    snprintf(needle, sizeof needle, "\"%s\": ", key);
    const char *found = strstr(plugin->debugInfo(NULL), needle);
    return found ? atol(found + strlen(needle)) : -1;
}

/* ---- dynamic batching ---- */

/* One configuration of the device workload: 8 callers' calls/s, or one caller's median latency (µs). */
static double device_run(const Options *options, Plugin *plugin, const char *maxSize, int lone, double *meanBatch,
                         long *failures) {
    char delay[32];
    snprintf(delay, sizeof delay, "%d", BATCH_DELAY_US);
    Pair extra[2] = {{"batch.max_size", (char *)maxSize}, {"batch.max_delay_us", delay}};
    if (init_bench(options, plugin, "device", extra, 2) != 0) {
        (*failures)++;
        return 0;
    }
    double result;
    if (lone) {
        Caller caller = {plugin, LONE_CALLS, 1024, calloc(LONE_CALLS, sizeof(long)), 0};
        call_loop(&caller);
        qsort(caller.samples, LONE_CALLS, sizeof(long), compare_long);
        result = caller.samples[LONE_CALLS / 2] / 1000.0;
        free(caller.samples);
        *failures += caller.failures;
    } else {
        long calls = strcmp(maxSize, "1") == 0 ? UNBATCHED_CALLS : BATCHED_CALLS;
        result = run_callers(plugin, BATCH_THREADS, calls, 1024, NULL, failures);
        long batches = stat_of(plugin, "batches"), requests = stat_of(plugin, "batched_requests");
        if (meanBatch != NULL && batches > 0) *meanBatch = (double)requests / batches;
    }
    *failures += fini_bench(plugin);
    return result;
}

void measure_batching(const Options *options, Plugin *plugin, BatchFigures *figures, long *failures) {
    memset(figures, 0, sizeof *figures);
    fprintf(stderr, "bench: dynamic batching\n");
    figures->delayUs = BATCH_DELAY_US;
    for (int round = 0; round < BATCH_ROUNDS; round++) {
        figures->unbatched[round] = device_run(options, plugin, "1", 0, NULL, failures);
        figures->batched[round] = device_run(options, plugin, "8", 0, &figures->meanBatch, failures);
    }
    figures->unbatchedMedian = median(figures->unbatched, BATCH_ROUNDS);
    figures->batchedMedian = median(figures->batched, BATCH_ROUNDS);
    figures->loneUnbatched = device_run(options, plugin, "1", 1, NULL, failures);
    figures->loneBatched = device_run(options, plugin, "8", 1, NULL, failures);
}

void print_batching(const BatchFigures *figures) {
    double ratio = figures->unbatchedMedian > 0 ? figures->batchedMedian / figures->unbatchedMedian : 0;
    double added = figures->loneBatched - figures->loneUnbatched;
    printf("\n### Dynamic batching (config batch.max_size, batch.max_delay_us)\n\n");
    printf("| target | measured | met |\n|---|---:|---|\n");
    printf("| device serving one call at a time, ~5 ms whatever the batch size, %d caller threads: "
           "batch.max_size=8 ≥ 6 × the throughput without batching | %.2f× | %s |\n",
           BATCH_THREADS, ratio, ratio >= 6 ? "yes" : "no");
    printf("| a lone request waits at most batch.max_delay_us (%ld µs) more than unbatched (medians) | %+.0f µs | %s |\n",
           figures->delayUs, added, added <= figures->delayUs ? "yes" : "no");
    printf("\nRaw figures: calls/s with %d caller threads, rounds alternating: batch.max_size=1", BATCH_THREADS);
    for (int round = 0; round < BATCH_ROUNDS; round++) printf("%s %.0f", round ? "," : "", figures->unbatched[round]);
    printf("; batch.max_size=8 (batch.max_delay_us=%ld)", figures->delayUs);
    for (int round = 0; round < BATCH_ROUNDS; round++) printf("%s %.0f", round ? "," : "", figures->batched[round]);
    printf(" (medians %.0f and %.0f; %.1f requests per wrapperOnceExecBatch call in the last batched round). One "
           "caller, median of %d calls: %.0f µs unbatched, %.0f µs with batch.max_size=8.\n",
           figures->unbatchedMedian, figures->batchedMedian, figures->meanBatch, LONE_CALLS, figures->loneUnbatched,
           figures->loneBatched);
}

/* ---- contended tiny calls ---- */

/* A child process that keeps one CPU busy until killed (fork: it runs no code of ours but the loop). */
static pid_t start_hog(void) {
    pid_t pid = fork();
    if (pid == 0) {
        for (volatile unsigned long spin = 0;; spin++) {
        }
    }
    return pid;
}

static void stop_hog(pid_t pid) {
    if (pid <= 0) return;
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

/* Tiny echo throughput with `threads` callers (a fresh wrapperInit each run), p99 in *p99. */
static double echo_run(const Options *options, Plugin *plugin, int threads, double *p99, long *failures,
                       long *handovers, long *direct) {
    if (init_bench(options, plugin, "echo", NULL, 0) != 0) {
        (*failures)++;
        return 0;
    }
    run_callers(plugin, threads, 2000, 1024, NULL, failures); /* warm: thread states, the gate */
    long before[2] = {stat_of(plugin, "gil_handovers"), stat_of(plugin, "gil_direct")};
    double result = run_callers(plugin, threads, TINY_CALLS / threads, 1024, p99, failures);
    if (threads > 1) {
        *handovers += stat_of(plugin, "gil_handovers") - before[0];
        *direct += stat_of(plugin, "gil_direct") - before[1];
    }
    *failures += fini_bench(plugin);
    return result;
}

void measure_contention(const Options *options, Plugin *plugin, ContentionFigures *figures, long *failures) {
    memset(figures, 0, sizeof *figures);
    int threads[2] = {1, 4};
    for (int busy = 0; busy < 2; busy++) {
        fprintf(stderr, "bench: tiny echo from 1 and 4 threads%s\n", busy ? ", beside a CPU-bound process" : "");
        pid_t hog = busy ? start_hog() : 0;
        if (busy && hog < 0) printf("bench: cannot start the CPU-bound process\n");
        double p99[2][CONTENTION_ROUNDS];
        for (int round = 0; round < CONTENTION_ROUNDS; round++) {
            for (int i = 0; i < 2; i++) {
                double value = echo_run(options, plugin, threads[i], &p99[i][round], failures, &figures->handovers,
                                        &figures->direct);
                (busy ? figures->busy : figures->quiet)[i][round] = value;
            }
        }
        stop_hog(hog);
        for (int i = 0; i < 2; i++) {
            double *values = (busy ? figures->busy : figures->quiet)[i];
            double middle = median(values, CONTENTION_ROUNDS);
            (busy ? figures->busyMedian : figures->quietMedian)[i] = middle;
            for (int round = 0; round < CONTENTION_ROUNDS; round++) {
                if (values[round] == middle) figures->p99[busy][i] = p99[i][round];
            }
        }
    }
}

void print_contention(const ContentionFigures *figures) {
    double quiet = figures->quietMedian[0] > 0 ? figures->quietMedian[1] / figures->quietMedian[0] : 0;
    double busy = figures->busyMedian[0] > 0 ? figures->busyMedian[1] / figures->busyMedian[0] : 0;
    printf("\n### Tiny echo from several loader threads (the entry gate: gil.gate_us, gil.stint_us)\n\n");
    printf("| target | measured | met |\n|---|---:|---|\n");
    printf("| 4 caller threads ≥ 90 %% of 1 thread's throughput (medians of %d alternating rounds) | %.0f %% | %s |\n",
           CONTENTION_ROUNDS, 100 * quiet, quiet >= 0.9 ? "yes" : "no");
    printf("| the same beside a CPU-bound process (a busy loop in a child process, in both runs) | %.0f %% | %s |\n",
           100 * busy, busy >= 0.9 ? "yes" : "no");
    printf("\n| machine | 1 thread: calls/s | p99 µs | 4 threads: calls/s | p99 µs | 4 ÷ 1 |\n");
    printf("|---|---:|---:|---:|---:|---:|\n");
    printf("| alone | %.0f | %.1f | %.0f | %.1f | %.0f %% |\n", figures->quietMedian[0], figures->p99[0][0],
           figures->quietMedian[1], figures->p99[0][1], 100 * quiet);
    printf("| beside a CPU-bound process | %.0f | %.1f | %.0f | %.1f | %.0f %% |\n", figures->busyMedian[0],
           figures->p99[1][0], figures->busyMedian[1], figures->p99[1][1], 100 * busy);
    printf("\nRaw figures (calls/s, %d calls a run, rounds alternating 1 and 4 threads):", TINY_CALLS);
    const char *names[2] = {"alone", "beside the busy loop"};
    for (int busyRun = 0; busyRun < 2; busyRun++) {
        for (int i = 0; i < 2; i++) {
            const double *values = (busyRun ? figures->busy : figures->quiet)[i];
            printf("%s %s, %d thread%s:", busyRun || i ? ";" : "", names[busyRun], i ? 4 : 1, i ? "s" : "");
            for (int round = 0; round < CONTENTION_ROUNDS; round++) printf("%s %.0f", round ? "," : "", values[round]);
        }
    }
    printf(". The gate passed between threads %ld times over the 4-thread runs; waiters went for the GIL directly "
           "%ld times.\n",
           figures->handovers, figures->direct);
}
