/*
 * exec mode: one-shot requests through wrapperExec / wrapperExecFree, from N loader-style threads.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>


#include "options.h"

typedef struct {
    const Options *options;
    Plugin *plugin;
    int thread;
    int failures;
    int call;      /* --churn: the one request this thread makes */
    long *samples; /* ns of wrapperExec + wrapperExecFree per request, indexed by call; NULL: not kept */
} Caller;

static pthread_mutex_t printLock = PTHREAD_MUTEX_INITIALIZER;

/* One request, built and freed like the loader does; returns 0 on success. */
static int one_request(Caller *caller, int call) {
    const Options *options = caller->options;
    char suffix[64] = "", sid[64];
    if (options->unique) snprintf(suffix, sizeof suffix, "#%d-%d", caller->thread, call);
    snprintf(sid, sizeof sid, "harness-%d-%d", caller->thread, call);

    pParamList paramList = request_params(options, sid);
    pDataList request = data_build(options->inputs, options->inputCount, suffix);
    pDataList response = NULL;
    char usrTag[64];
    snprintf(usrTag, sizeof usrTag, "tag-%d-%d", caller->thread, call);

    long start = now_ns();
    int code = caller->plugin->exec(usrTag, paramList, request, &response, (unsigned int *)options->persIds,
                                    options->persCount);
    long elapsed = now_ns() - start;
    /* The loader frees its input right after the call: poisoned, so any late read shows. */
    params_free(paramList);
    data_free(request);

    int failed = code != 0;
    if (options->readDelayMs > 0) sleep_ms(options->readDelayMs);
    pthread_mutex_lock(&printLock);
    if (code != 0) {
        printf("request %d.%d: wrapperExec returned %d: %s\n", caller->thread, call, code, caller->plugin->error(code));
    } else {
        int first = caller->thread == 0 && call == 0;
        if (!options->quiet && (first || options->repeat * options->threads <= 8)) {
            printf("request %d.%d: ok\n", caller->thread, call);
            print_output(response, "  ");
        }
        if (options->checkEcho && check_echo(options, response, suffix) != 0) failed = 1;
        if (caller->thread == 0 && options->outDir != NULL && write_output(response, options->outDir) != 0) failed = 1;
    }
    pthread_mutex_unlock(&printLock);

    if (response != NULL) {
        memset(usrTag, 0xDB, sizeof usrTag); /* the loader frees usrTag before wrapperExecFree */
        start = now_ns();
        int freed = caller->plugin->execFree(usrTag, &response);
        elapsed += now_ns() - start;
        if (freed != 0 || response != NULL) {
            printf("request %d.%d: wrapperExecFree returned %d\n", caller->thread, call, freed);
            failed = 1;
        }
    }
    if (caller->samples != NULL) caller->samples[call] = elapsed;
    return failed;
}

static void *churn_main(void *argument) {
    Caller *caller = argument;
    caller->failures += one_request(caller, caller->call);
    return NULL;
}

static void *caller_main(void *argument) {
    Caller *caller = argument;
    for (int call = 0; call < caller->options->repeat; call++) caller->failures += one_request(caller, call);
    return NULL;
}

/* The second summary line: requests per second over the requests' wall time, and latency percentiles. */
static void print_throughput(const Options *options, long *samples, int total, long wallNs) {
    if (samples == NULL || total == 0) return;
    qsort(samples, (size_t)total, sizeof *samples, compare_long);
    double seconds = wallNs / 1e9;
    printf("exec throughput: %.1f requests/s (%d in %.3f s, %d thread%s%s); latency of wrapperExec + "
           "wrapperExecFree: p50 %.1f µs, p90 %.1f µs, p99 %.1f µs, max %.1f µs\n",
           seconds > 0 ? total / seconds : 0.0, total, seconds, options->churn ? 1 : options->threads,
           !options->churn && options->threads > 1 ? "s" : "", options->churn ? ", a new one per request" : "",
           samples[(long)total * 50 / 100] / 1e3, samples[(long)total * 90 / 100] / 1e3,
           samples[(long)total * 99 / 100] / 1e3, samples[total - 1] / 1e3);
}

int run_exec(const Options *options, Plugin *plugin) {
    if (!options->noInit && harness_init(options, plugin) != 0) return 1;
    if (load_resources(options, plugin) != 0) return 1;
    int total = options->churn ? options->repeat : options->threads * options->repeat;
    long *samples = calloc((size_t)total, sizeof *samples); /* NULL (too many): no latency line */
    long rssBefore = rss_kib();
    Caller callers[256];
    pthread_t threads[256];
    int failures = 0;
    long start = now_ns();
    for (int call = 0; options->churn && call < options->repeat; call++) {
        Caller caller = {options, plugin, 0, 0, call, samples};
        pthread_t thread;
        if (pthread_create(&thread, NULL, churn_main, &caller) != 0) return 1;
        pthread_join(thread, NULL);
        failures += caller.failures;
    }
    for (int t = 0; !options->churn && t < options->threads; t++) {
        callers[t] = (Caller){options, plugin, t, 0, 0, samples ? samples + (long)t * options->repeat : NULL};
        if (pthread_create(&threads[t], NULL, caller_main, &callers[t]) != 0) {
            fprintf(stderr, "harness: cannot start thread %d\n", t);
            return 1;
        }
    }
    for (int t = 0; !options->churn && t < options->threads; t++) {
        pthread_join(threads[t], NULL);
        failures += callers[t].failures;
    }
    long wall = now_ns() - start;
    failures += unload_resources(options, plugin);
    print_stats(options, plugin);
    if (!options->noInit) {
        int code = plugin->fini();
        if (code != 0) {
            printf("wrapperFini returned %d: %s\n", code, plugin->error(code));
            failures++;
        }
    }
    printf("exec: %d requests, %d failed (rss %+ld KiB)\n", total, failures, rss_kib() - rssBefore);
    print_throughput(options, samples, total, wall);
    free(samples);
    return failures == 0 ? 0 : 1;
}
