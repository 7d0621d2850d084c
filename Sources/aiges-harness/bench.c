/*
 * bench mode: per-call latency of wrapperExec + wrapperExecFree from a loader-style thread, for each
 * workload of scripts/bench/wrapper.py, in the three data modes — default (copy-on-read inputs),
 * lend (config data.lend: inputs are the loader's memory) and copy (config data.copy) — next to the
 * floor (the same Python method called directly from Python); RSS after 1k and after N calls;
 * throughput with 1, 2 and 4 caller threads. Prints Markdown tables.
 *
 * Only the two plugin calls are timed: each thread builds its request list once and reuses it.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "options.h"

typedef struct {
    const char *name;
    const char *workload; /* bench.workload */
    size_t input;         /* bytes in the request node */
    int calls;            /* latency samples in lend mode and floor */
    int copyCalls;        /* latency samples in the modes that copy the input (default, copy) */
} Workload;

static const Workload workloads[] = {
    {"tiny echo (1 KiB in/out, node.data)", "echo", 1024, 20000, 20000},
    {"1 MiB in, view only, 8 B out", "view", 1 << 20, 20000, 2000},
    {"16 MiB in, view only, 8 B out", "view", 16 << 20, 20000, 200},
    {"16 MiB in, not read, 8 B out", "ignore", 16 << 20, 20000, 200},
    {"1 KiB in, prepared 16 MiB out", "prepared", 1024, 20000, 200},
    {"16 MiB echo through node.data", "echo", 16 << 20, 300, 200},
    {"1 KiB in, empty out", "empty", 1024, 20000, 20000},
};
#define TINY 0
#define VIEW_16M 2
#define IGNORE_16M 3
#define PREPARED_16M 4

/* The data modes, in table order: config key for each (NULL: the default). */
static const char *modeKeys[3] = {NULL, "data.lend", "data.copy"};
static const char *modeNames[3] = {"default", "data.lend", "data.copy"};
#define WORKLOADS (int)(sizeof workloads / sizeof workloads[0])

typedef struct {
    Plugin *plugin;
    const Workload *workload;
    long calls;
    long *samples; /* ns per call, or NULL */
    long failures;
    long rssAt1k;
    const char *floorCalls; /* non-NULL: one request with bench.floor=N, output JSON parsed */
    long floorMedian, floorP99;
} Run;

static long now_ns(void) {
    struct timespec time;
    clock_gettime(CLOCK_MONOTONIC, &time);
    return time.tv_sec * 1000000000L + time.tv_nsec;
}

static int compare_long(const void *a, const void *b) {
    long x = *(const long *)a, y = *(const long *)b;
    return (x > y) - (x < y);
}

static void *caller(void *argument) {
    Run *run = argument;
    unsigned char *payload = malloc(run->workload->input);
    if (payload == NULL) exit(4);
    for (size_t i = 0; i < run->workload->input; i++) payload[i] = (unsigned char)(i * 31 + 7);
    Pair params[3] = {{"sid", "bench"}, {"appid", "bench"}, {"bench.floor", (char *)run->floorCalls}};
    NodeSpec spec = {.key = "data", .bytes = payload, .len = run->workload->input, .type = DataAudio, .status = DataOnce};
    pParamList paramList = params_build(params, run->floorCalls ? 3 : 2);
    pDataList request = data_build(&spec, 1, NULL);
    for (long call = 0; call < run->calls; call++) {
        pDataList response = NULL;
        long start = now_ns();
        int code = run->plugin->exec("bench", paramList, request, &response, NULL, 0);
        if (code == 0 && run->floorCalls && response != NULL) {
            char json[256] = "";
            memcpy(json, response->data, response->len < 255 ? response->len : 255);
            sscanf(json, "{\"median_ns\": %ld, \"p99_ns\": %ld}", &run->floorMedian, &run->floorP99);
        }
        if (response != NULL) code |= run->plugin->execFree("bench", &response);
        long elapsed = now_ns() - start;
        if (run->samples != NULL) run->samples[call] = elapsed;
        if (code != 0) {
            if (run->failures++ == 0) printf("bench: call failed: %d: %s\n", code, run->plugin->error(code));
        }
        if (call == 999) run->rssAt1k = rss_kib();
    }
    params_free(paramList);
    data_free(request);
    free(payload);
    return NULL;
}

/* Runs `calls` calls on `threads` new threads; returns wall time in ns. */
static long drive(Run *runs, int threads) {
    pthread_t ids[8];
    long start = now_ns();
    for (int t = 0; t < threads; t++) pthread_create(&ids[t], NULL, caller, &runs[t]);
    for (int t = 0; t < threads; t++) pthread_join(ids[t], NULL);
    return now_ns() - start;
}

static int init_for(const Options *options, Plugin *plugin, const char *workload, int mode) {
    Options local = *options;
    if (local.configCount + 2 > MAX_PAIRS) return -1;
    local.config[local.configCount++] = (Pair){"bench.workload", (char *)workload};
    if (modeKeys[mode] != NULL) local.config[local.configCount++] = (Pair){(char *)modeKeys[mode], "1"};
    return harness_init(&local, plugin);
}

typedef struct {
    double median, p99;
} Latency;

static Latency measure(const Options *options, Plugin *plugin, const Workload *workload, int mode, long calls,
                       long *failures) {
    Latency result = {0, 0};
    if (init_for(options, plugin, workload->workload, mode) != 0) {
        (*failures)++;
        return result;
    }
    Run warm = {plugin, workload, calls / 10 + 1, NULL, 0, 0, NULL, 0, 0};
    drive(&warm, 1);
    long *samples = calloc((size_t)calls, sizeof *samples);
    Run run = {plugin, workload, calls, samples, 0, 0, NULL, 0, 0};
    drive(&run, 1);
    qsort(samples, (size_t)calls, sizeof *samples, compare_long);
    result.median = samples[calls / 2] / 1000.0;
    result.p99 = samples[calls * 99 / 100] / 1000.0;
    free(samples);
    *failures += warm.failures + run.failures;
    plugin->fini();
    return result;
}

int run_bench(const Options *options, Plugin *plugin) {
    long rssCalls = options->repeat > 1 ? options->repeat : 100000, failures = 0;
    Latency modes[3][WORKLOADS], floor[WORKLOADS];
    long rss1k[WORKLOADS], rssN[WORKLOADS];
    for (int w = 0; w < WORKLOADS; w++) {
        const Workload *workload = &workloads[w];
        fprintf(stderr, "bench: %s\n", workload->name);
        for (int mode = 0; mode < 3; mode++) {
            modes[mode][w] = measure(options, plugin, workload, mode, mode == 1 ? workload->calls : workload->copyCalls,
                                     &failures);
        }
        /* Floor and RSS in one more session in the default mode. */
        if (init_for(options, plugin, workload->workload, 0) != 0) return 1;
        char floorCalls[32];
        snprintf(floorCalls, sizeof floorCalls, "%d", workload->calls);
        Run floorRun = {plugin, workload, 1, NULL, 0, 0, floorCalls, 0, 0};
        drive(&floorRun, 1);
        floor[w] = (Latency){floorRun.floorMedian / 1000.0, floorRun.floorP99 / 1000.0};
        Run rss = {plugin, workload, rssCalls, NULL, 0, 0, NULL, 0, 0};
        drive(&rss, 1);
        rss1k[w] = rss.rssAt1k;
        rssN[w] = rss_kib();
        failures += floorRun.failures + rss.failures;
        plugin->fini();
    }

    /* Throughput and latency of tiny echo with 1, 2 and 4 caller threads, entry gate on and off. */
    double throughput[2][3], p99[2][3];
    int threadCounts[3] = {1, 2, 4};
    for (int gate = 0; gate < 2; gate++) {
        Options local = *options;
        local.config[local.configCount++] = (Pair){"gil.gate_us", gate == 0 ? "50" : "0"};
        if (init_for(&local, plugin, "echo", 0) != 0) return 1;
        for (int i = 0; i < 3; i++) {
            Run runs[4];
            long perThread = 200000 / threadCounts[i];
            long *samples = calloc(200000, sizeof *samples);
            for (int t = 0; t < threadCounts[i]; t++) {
                runs[t] = (Run){plugin, &workloads[0], perThread, samples + t * perThread, 0, 0, NULL, 0, 0};
            }
            long wall = drive(runs, threadCounts[i]);
            throughput[gate][i] = 200000.0 / (wall / 1e9);
            long total = perThread * threadCounts[i];
            qsort(samples, (size_t)total, sizeof *samples, compare_long);
            p99[gate][i] = samples[total * 99 / 100] / 1000.0;
            free(samples);
            for (int t = 0; t < threadCounts[i]; t++) failures += runs[t].failures;
        }
        if (gate == 1) print_stats(options, plugin); /* the last configuration's: the gate-off throughput runs */
        plugin->fini();
    }

    Latency *standard = modes[0], *lend = modes[1], *copy = modes[2];
    printf("### Latency per call (µs, wrapperExec + wrapperExecFree, one loader-style thread)\n\n");
    printf("| workload | default median | p99 | %s median | p99 | %s median | p99 | floor median | p99 | "
           "default ÷ floor |\n",
           modeNames[1], modeNames[2]);
    printf("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (int w = 0; w < WORKLOADS; w++) {
        printf("| %s | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.1f× |\n", workloads[w].name,
               standard[w].median, standard[w].p99, lend[w].median, lend[w].p99, copy[w].median, copy[w].p99,
               floor[w].median, floor[w].p99, floor[w].median > 0 ? standard[w].median / floor[w].median : 0);
    }
    printf("\n### Against the targets (medians)\n\n");
    printf("| target | measured | met |\n|---|---:|---|\n");
    printf("| tiny echo ≤ 2.5 µs (default) | %.2f µs | %s |\n", standard[TINY].median,
           standard[TINY].median <= 2.5 ? "yes" : "no");
    printf("| 16 MiB input nobody reads ≤ 2 × tiny echo (default) | %.2f× | %s |\n",
           standard[IGNORE_16M].median / standard[TINY].median,
           standard[IGNORE_16M].median <= 2 * standard[TINY].median ? "yes" : "no");
    printf("| 16 MiB input read through view costs one copy, as data.copy's does (÷ data.copy ≤ 1.2) | %.2f× | %s |\n",
           standard[VIEW_16M].median / copy[VIEW_16M].median,
           standard[VIEW_16M].median <= 1.2 * copy[VIEW_16M].median ? "yes" : "no");
    printf("| 16 MiB view-only input ≤ 2 × tiny echo (data.lend) | %.2f× | %s |\n",
           lend[VIEW_16M].median / lend[TINY].median, lend[VIEW_16M].median <= 2 * lend[TINY].median ? "yes" : "no");
    printf("| 16 MiB prepared bytes output ≤ 2 × tiny echo (default) | %.2f× | %s |\n",
           standard[PREPARED_16M].median / standard[TINY].median,
           standard[PREPARED_16M].median <= 2 * standard[TINY].median ? "yes" : "no");
    printf("| 4 threads ≥ 90 %% of 1-thread throughput | %.0f %% | %s |\n", 100 * throughput[0][2] / throughput[0][0],
           throughput[0][2] >= 0.9 * throughput[0][0] ? "yes" : "no");
    printf("\n### Throughput, tiny echo (200 000 calls split over the threads)\n\n");
    printf("Entry gate on (`gil.gate_us` = 50, the default) and off (0: every caller goes straight for the GIL).\n\n");
    printf("| caller threads | gate on: calls/s | vs 1 thread | p99 µs | gate off: calls/s | vs 1 thread | p99 µs |\n");
    printf("|---:|---:|---:|---:|---:|---:|---:|\n");
    for (int i = 0; i < 3; i++) {
        printf("| %d | %.0f | %.0f %% | %.1f | %.0f | %.0f %% | %.1f |\n", threadCounts[i], throughput[0][i],
               100 * throughput[0][i] / throughput[0][0], p99[0][i], throughput[1][i],
               100 * throughput[1][i] / throughput[1][0], p99[1][i]);
    }
    printf("\n### RSS (KiB) after 1 000 and after %ld calls, default mode\n\n", rssCalls);
    printf("| workload | after 1k | after %ldk | growth |\n|---|---:|---:|---:|\n", rssCalls / 1000);
    for (int w = 0; w < WORKLOADS; w++) {
        printf("| %s | %ld | %ld | %+ld |\n", workloads[w].name, rss1k[w], rssN[w], rssN[w] - rss1k[w]);
    }
    if (failures > 0) printf("\nbench: %ld calls failed\n", failures);
    return failures == 0 ? 0 : 1;
}
