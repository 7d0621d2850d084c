/*
 * bench mode: per-call latency of wrapperExec + wrapperExecFree from a loader-style thread, for each
 * workload of scripts/bench/wrapper.py, in the three data modes — default (copy-on-read inputs),
 * lend (config data.lend: inputs are the loader's memory) and copy (config data.copy) — next to the
 * floor (the same Python method called directly from Python); RSS after 1k and after N calls;
 * throughput with 1, 2 and 4 caller threads. Then worker processes (config workers): CPU-bound
 * throughput with workers=2 against in-process, tiny echo and a 16 MiB view-only input with workers=1,
 * the harness's RSS over N worker-mode calls, and recovery after kill -9 of the worker under load.
 * Last, bench_threads.c's rows: dynamic batching, and tiny calls from several loader threads.
 * Prints Markdown tables.
 *
 * Only the two plugin calls are timed: each thread builds its request list once and reuses it.
 */
#define _GNU_SOURCE /* pthread_timedjoin_np */
#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench_threads.h"
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

/* wrapperInit for a workload in a data mode, with `extra` config pairs (e.g. workers) after the others. */
static int init_with(const Options *options, Plugin *plugin, const char *workload, int mode, const Pair *extra,
                     int extraCount) {
    Options local = *options;
    if (local.configCount + 2 + extraCount > MAX_PAIRS) return -1;
    local.config[local.configCount++] = (Pair){"bench.workload", (char *)workload};
    if (modeKeys[mode] != NULL) local.config[local.configCount++] = (Pair){(char *)modeKeys[mode], "1"};
    for (int i = 0; i < extraCount; i++) local.config[local.configCount++] = extra[i];
    return harness_init(&local, plugin);
}

static int init_for(const Options *options, Plugin *plugin, const char *workload, int mode) {
    return init_with(options, plugin, workload, mode, NULL, 0);
}

typedef struct {
    double median, p99;
} Latency;

static Latency measure(const Options *options, Plugin *plugin, const Workload *workload, int mode, long calls,
                       long *failures, const Pair *extra, int extraCount) {
    Latency result = {0, 0};
    if (init_with(options, plugin, workload->workload, mode, extra, extraCount) != 0) {
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

/* Worker processes (config workers). */

/* ~2 ms of pure Python per call (bench.cpu_loops, calibrated in-process), 8 B out. */
static const Workload cpuWorkload = {"cpu-bound (~2 ms of Python per call)", "cpu", 1024, 0, 0};
#define CPU_TARGET_US 2000.0
#define CPU_ROUNDS 5     /* in-process and workers=2 alternate this many times */
#define CPU_CALLS 150    /* per caller thread per round */
#define CPU_THREADS 4
#define VIEW_WORKER_CALLS 500
#define COPY_SAMPLES 25  /* memcpy timings before and after the 16 MiB worker run, each */
#define RSS_FLAT_KIB 256 /* "flat": the harness's RSS grows by at most this from 1k to N calls */
#define KILL_THREADS 4
#define WORKER_LOST 22017

typedef struct {
    long cpuLoops;
    double cpuCallUs;                    /* one cpu call in-process, one thread, with cpuLoops */
    double cpuThroughput[2][CPU_ROUNDS]; /* calls/s with 4 callers: [0] in-process, [1] workers=2 */
    double cpuOthers[2][CPU_ROUNDS];     /* share of all CPUs' time other processes used meanwhile */
    double cpuStolen[2][CPU_ROUNDS];     /* share the hypervisor stole */
    double cpuMedian[2];
    Latency tiny, view16;                /* workers=1 */
    double copy16, copy16Max;            /* µs: median and slowest memcpy of 16 MiB */
    long rss1k, rssN;                    /* harness RSS, workers=1, tiny echo */
    int killed;                          /* a worker process was found and killed */
    pid_t killedPid, newPid;
    long killOk, killLost, killOther;    /* calls by result over the whole kill run */
    int otherCode;
    long lostAfterRecovery;              /* 22017 results of calls begun after the first recovered call */
    double recoveryMs;                   /* kill to the end of the first successful call begun after it; -1: none */
    double killRunSeconds;
    int hung;                            /* callers still blocked 30 s after being told to stop */
} WorkerFigures;

static double median_of(double *values, int count) {
    double sorted[16];
    memcpy(sorted, values, sizeof *values * (size_t)count);
    for (int i = 1; i < count; i++) { /* insertion sort: a handful of values */
        for (int j = i; j > 0 && sorted[j] < sorted[j - 1]; j--) {
            double swap = sorted[j];
            sorted[j] = sorted[j - 1];
            sorted[j - 1] = swap;
        }
    }
    return sorted[count / 2];
}

/* Timings of memcpy of 16 MiB between two buffers whose pages are already touched. */
static volatile unsigned char copySink;
static void time_copies(long *samples, int count) {
    size_t size = 16 << 20;
    unsigned char *from = malloc(size), *to = malloc(size);
    if (from == NULL || to == NULL) exit(4);
    memset(from, 1, size);
    memset(to, 2, size);
    memcpy(to, from, size);
    for (int i = 0; i < count; i++) {
        from[i] = (unsigned char)i; /* a different source each time */
        long start = now_ns();
        memcpy(to, from, size);
        samples[i] = now_ns() - start;
        copySink = to[i];
    }
    free(from);
    free(to);
}

static int check_fini(Plugin *plugin, const char *what) {
    int code = plugin->fini();
    if (code != 0) printf("bench: wrapperFini (%s) returned %d: %s\n", what, code, plugin->error(code));
    return code != 0;
}

/* Scans /proc for this process's aiges-worker children; returns the first one's pid (0: none) and
 * adds their CPU time (clock ticks) to *ticks if ticks is not NULL. */
static pid_t scan_workers(long *ticks) {
    DIR *proc = opendir("/proc");
    if (proc == NULL) return 0;
    pid_t found = 0, self = getpid();
    struct dirent *entry;
    while ((entry = readdir(proc)) != NULL) {
        if (entry->d_name[0] < '1' || entry->d_name[0] > '9') continue;
        char path[300], line[1024];
        snprintf(path, sizeof path, "/proc/%s/stat", entry->d_name);
        FILE *file = fopen(path, "r");
        if (file == NULL) continue;
        int got = fgets(line, sizeof line, file) != NULL;
        fclose(file);
        char *name = got ? strchr(line, '(') : NULL, *end = got ? strrchr(line, ')') : NULL;
        if (name == NULL || end == NULL || end - name - 1 != 12 || strncmp(name + 1, "aiges-worker", 12) != 0) continue;
        int parent = -1;
        unsigned long user = 0, system = 0;
        /* after the name: state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt utime stime */
        if (sscanf(end + 1, " %*c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &parent, &user, &system) != 3) {
            continue;
        }
        if (parent != self) continue;
        if (found == 0) found = (pid_t)atoi(entry->d_name);
        if (ticks != NULL) *ticks += (long)(user + system);
    }
    closedir(proc);
    return found;
}

/* CPU time in clock ticks: the machine's (all CPUs: total, busy, stolen by the hypervisor) and this
 * process's with its aiges-worker children. */
typedef struct {
    long total, busy, steal, ours;
} Ticks;

static Ticks ticks_now(void) {
    Ticks ticks = {0, 0, 0, 0};
    unsigned long user, nice, system, idle, iowait, irq, softirq, steal;
    FILE *file = fopen("/proc/stat", "r");
    if (file != NULL) {
        if (fscanf(file, "cpu %lu %lu %lu %lu %lu %lu %lu %lu", &user, &nice, &system, &idle, &iowait, &irq, &softirq,
                   &steal) == 8) {
            ticks.busy = (long)(user + nice + system + irq + softirq);
            ticks.steal = (long)steal;
            ticks.total = ticks.busy + (long)(idle + iowait + steal);
        }
        fclose(file);
    }
    char line[1024];
    unsigned long ownUser = 0, ownSystem = 0;
    if ((file = fopen("/proc/self/stat", "r")) != NULL) {
        char *end = fgets(line, sizeof line, file) ? strrchr(line, ')') : NULL;
        if (end != NULL) sscanf(end + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ownUser, &ownSystem);
        fclose(file);
    }
    ticks.ours = (long)(ownUser + ownSystem);
    scan_workers(&ticks.ours);
    return ticks;
}

/* Calls/s of the cpu workload from 4 caller threads, in-process (workers "0") or in worker processes;
 * the share of the machine's CPU time other processes used, and the hypervisor stole, meanwhile. */
static double cpu_throughput(const Options *options, Plugin *plugin, const char *loops, const char *workers,
                             double *others, double *stolen, long *failures) {
    Pair extra[2] = {{"bench.cpu_loops", (char *)loops}, {"workers", (char *)workers}};
    if (init_with(options, plugin, cpuWorkload.workload, 0, extra, 2) != 0) {
        (*failures)++;
        return 0;
    }
    Run runs[CPU_THREADS];
    for (int t = 0; t < CPU_THREADS; t++) runs[t] = (Run){plugin, &cpuWorkload, 3, NULL, 0, 0, NULL, 0, 0};
    drive(runs, CPU_THREADS); /* warm: every worker has run the loop */
    for (int t = 0; t < CPU_THREADS; t++) *failures += runs[t].failures;
    for (int t = 0; t < CPU_THREADS; t++) runs[t] = (Run){plugin, &cpuWorkload, CPU_CALLS, NULL, 0, 0, NULL, 0, 0};
    Ticks before = ticks_now();
    long wall = drive(runs, CPU_THREADS);
    Ticks after = ticks_now();
    long total = after.total - before.total;
    *others = total > 0 ? (double)(after.busy - before.busy - (after.ours - before.ours)) / total : 0;
    *stolen = total > 0 ? (double)(after.steal - before.steal) / total : 0;
    if (*others < 0) *others = 0;
    for (int t = 0; t < CPU_THREADS; t++) *failures += runs[t].failures;
    *failures += check_fini(plugin, "cpu");
    return (double)CPU_THREADS * CPU_CALLS / (wall / 1e9);
}

/* The loop count that makes one cpu call take ~2 ms in-process, one thread; its measured time in *callUs. */
static long calibrate_cpu(const Options *options, Plugin *plugin, double *callUs, long *failures) {
    long loops = 20000;
    for (int pass = 0; pass < 3; pass++) {
        char text[32];
        snprintf(text, sizeof text, "%ld", loops);
        Pair extra[1] = {{"bench.cpu_loops", text}};
        Latency one = measure(options, plugin, &cpuWorkload, 0, 21, failures, extra, 1);
        *callUs = one.median;
        if (one.median <= 0) break;
        if (pass < 2) loops = (long)(loops * CPU_TARGET_US / one.median) + 1; /* the last pass only checks */
    }
    return loops;
}

/* One caller of the kill run: tiny echo calls until told to stop, counted by result. */
typedef struct {
    Plugin *plugin;
    long ok, lost, other;
    int otherCode;
    long firstOkAfterKill; /* end (ns) of this thread's first successful call begun after the kill; 0: none */
    long lostAfterRecovery;
} KillCaller;

static long killedAt;    /* ns of the kill, published once kill() returned; 0 before */
static long recoveredAt; /* ns of the first recovered call's end; 0 before */
static int stopCalling;

static void *kill_caller(void *argument) {
    KillCaller *caller = argument;
    size_t input = workloads[TINY].input;
    unsigned char *payload = malloc(input);
    if (payload == NULL) exit(4);
    for (size_t i = 0; i < input; i++) payload[i] = (unsigned char)(i * 31 + 7);
    Pair params[2] = {{"sid", "bench-kill"}, {"appid", "bench"}};
    NodeSpec spec = {.key = "data", .bytes = payload, .len = input, .type = DataAudio, .status = DataOnce};
    pParamList paramList = params_build(params, 2);
    pDataList request = data_build(&spec, 1, NULL);
    while (!__atomic_load_n(&stopCalling, __ATOMIC_ACQUIRE)) {
        long killed = __atomic_load_n(&killedAt, __ATOMIC_ACQUIRE);
        long recovered = __atomic_load_n(&recoveredAt, __ATOMIC_ACQUIRE);
        pDataList response = NULL;
        int code = caller->plugin->exec("bench", paramList, request, &response, NULL, 0);
        if (code == 0 && (response == NULL || response->len != input || memcmp(response->data, payload, input) != 0)) {
            code = -1; /* a wrong echo */
        }
        if (response != NULL) {
            int freed = caller->plugin->execFree("bench", &response);
            if (code == 0) code = freed;
        }
        long end = now_ns();
        if (code == 0) {
            caller->ok++;
            if (killed != 0 && caller->firstOkAfterKill == 0) {
                caller->firstOkAfterKill = end;
                long none = 0;
                __atomic_compare_exchange_n(&recoveredAt, &none, end, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
            }
        } else if (code == WORKER_LOST) {
            caller->lost++;
            if (recovered != 0) caller->lostAfterRecovery++;
        } else {
            caller->other++;
            caller->otherCode = code;
        }
    }
    params_free(paramList);
    data_free(request);
    free(payload);
    return NULL;
}

/* workers=1, 4 threads calling tiny echo continuously; kill -9 the worker, count results, time recovery. */
static void kill_run(const Options *options, Plugin *plugin, WorkerFigures *figures, long *failures) {
    figures->recoveryMs = -1;
    Pair extra[1] = {{"workers", "1"}};
    if (init_with(options, plugin, "echo", 0, extra, 1) != 0) {
        (*failures)++;
        return;
    }
    __atomic_store_n(&killedAt, 0, __ATOMIC_RELEASE);
    __atomic_store_n(&recoveredAt, 0, __ATOMIC_RELEASE);
    __atomic_store_n(&stopCalling, 0, __ATOMIC_RELEASE);
    static KillCaller callers[KILL_THREADS]; /* static: a hung caller may outlive this function */
    pthread_t ids[KILL_THREADS];
    long start = now_ns();
    for (int t = 0; t < KILL_THREADS; t++) {
        callers[t] = (KillCaller){.plugin = plugin};
        pthread_create(&ids[t], NULL, kill_caller, &callers[t]);
    }
    sleep_ms(300);
    figures->killedPid = scan_workers(NULL);
    if (figures->killedPid > 0) {
        long killTime = now_ns();
        figures->killed = kill(figures->killedPid, SIGKILL) == 0;
        __atomic_store_n(&killedAt, killTime, __ATOMIC_RELEASE); /* calls begun from here cannot reach it alive */
        while (figures->killed && __atomic_load_n(&recoveredAt, __ATOMIC_ACQUIRE) == 0 &&
               now_ns() - killTime < 10000000000L) {
            sleep_ms(1);
        }
        long recovered = __atomic_load_n(&recoveredAt, __ATOMIC_ACQUIRE);
        if (recovered != 0) figures->recoveryMs = (recovered - killTime) / 1e6;
        sleep_ms(300); /* served on after the recovery */
        figures->newPid = scan_workers(NULL);
    }
    __atomic_store_n(&stopCalling, 1, __ATOMIC_RELEASE);
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 30;
    for (int t = 0; t < KILL_THREADS; t++) {
        if (pthread_timedjoin_np(ids[t], NULL, &deadline) != 0) {
            figures->hung = 1;
            continue;
        }
        figures->killOk += callers[t].ok;
        figures->killLost += callers[t].lost;
        figures->killOther += callers[t].other;
        figures->lostAfterRecovery += callers[t].lostAfterRecovery;
        if (callers[t].other > 0) figures->otherCode = callers[t].otherCode;
    }
    figures->killRunSeconds = (now_ns() - start) / 1e9;
    if (figures->hung) {
        printf("bench: kill run: caller threads still blocked 30 s after being told to stop (left running)\n");
        (*failures)++;
        return; /* wrapperFini with callers inside the plugin is not the loader's contract */
    }
    if (!figures->killed) {
        printf("bench: kill run: no aiges-worker child process found to kill\n");
        (*failures)++;
    }
    if (figures->killOther > 0) {
        printf("bench: kill run: %ld calls got neither 0 nor %d (last: %d: %s)\n", figures->killOther, WORKER_LOST,
               figures->otherCode, figures->otherCode > 0 ? plugin->error(figures->otherCode) : "wrong echo");
        (*failures)++;
    }
    *failures += check_fini(plugin, "kill run");
}

static void measure_workers(const Options *options, Plugin *plugin, long rssCalls, WorkerFigures *figures,
                            long *failures) {
    memset(figures, 0, sizeof *figures);
    fprintf(stderr, "bench: worker processes\n");
    figures->cpuLoops = calibrate_cpu(options, plugin, &figures->cpuCallUs, failures);
    char loops[32];
    snprintf(loops, sizeof loops, "%ld", figures->cpuLoops);
    for (int round = 0; round < CPU_ROUNDS; round++) {
        for (int i = 0; i < 2; i++) {
            figures->cpuThroughput[i][round] = cpu_throughput(options, plugin, loops, i == 0 ? "0" : "2",
                                                              &figures->cpuOthers[i][round],
                                                              &figures->cpuStolen[i][round], failures);
        }
    }
    for (int i = 0; i < 2; i++) figures->cpuMedian[i] = median_of(figures->cpuThroughput[i], CPU_ROUNDS);

    Pair one[1] = {{"workers", "1"}};
    figures->tiny = measure(options, plugin, &workloads[TINY], 0, workloads[TINY].calls, failures, one, 1);
    long copies[2 * COPY_SAMPLES];
    time_copies(copies, COPY_SAMPLES);
    figures->view16 = measure(options, plugin, &workloads[VIEW_16M], 0, VIEW_WORKER_CALLS, failures, one, 1);
    time_copies(copies + COPY_SAMPLES, COPY_SAMPLES);
    qsort(copies, 2 * COPY_SAMPLES, sizeof *copies, compare_long);
    figures->copy16 = copies[COPY_SAMPLES] / 1000.0;
    figures->copy16Max = copies[2 * COPY_SAMPLES - 1] / 1000.0;

    if (init_with(options, plugin, "echo", 0, one, 1) == 0) {
        Run rss = {plugin, &workloads[TINY], rssCalls, NULL, 0, 0, NULL, 0, 0};
        drive(&rss, 1);
        figures->rss1k = rss.rssAt1k;
        figures->rssN = rss_kib();
        *failures += rss.failures;
        *failures += check_fini(plugin, "rss");
    } else {
        (*failures)++;
    }

    kill_run(options, plugin, figures, failures);
}

static void print_workers(const WorkerFigures *figures, double inProcessTiny, long rssCalls) {
    double ratio = figures->cpuMedian[0] > 0 ? figures->cpuMedian[1] / figures->cpuMedian[0] : 0;
    double above = figures->view16.median - figures->tiny.median;
    long growth = figures->rssN - figures->rss1k;
    int recovered = figures->recoveryMs >= 0 && figures->recoveryMs <= 1000;
    printf("\n### Worker processes (config workers)\n\n");
    printf("| target | measured | met |\n|---|---:|---|\n");
    printf("| ~2 ms of Python per call, %d caller threads: workers=2 ≥ 1.8 × in-process (workers=0) throughput | "
           "%.2f× | %s |\n",
           CPU_THREADS, ratio, ratio >= 1.8 ? "yes" : "no");
    printf("| tiny echo, workers=1 ≤ 10 × in-process (default) median | %.1f× | %s |\n",
           inProcessTiny > 0 ? figures->tiny.median / inProcessTiny : 0,
           figures->tiny.median <= 10 * inProcessTiny ? "yes" : "no");
    printf("| 16 MiB in, view only, workers=1: ≤ one 16 MiB memcpy above tiny echo (workers=1) | %+.0f µs (memcpy "
           "%.0f µs) | %s |\n",
           above, figures->copy16, above <= figures->copy16 ? "yes" : "no");
    printf("| harness RSS flat over tiny echo calls, workers=1 (grows ≤ %d KiB from call 1 000 to %ld) | %+ld KiB | "
           "%s |\n",
           RSS_FLAT_KIB, rssCalls, growth, growth <= RSS_FLAT_KIB ? "yes" : "no");
    if (figures->recoveryMs >= 0) {
        printf("| kill -9 of the worker under load (workers=1, %d threads): a call succeeds again within 1 s, "
               "others get 22017, the harness lives | %.0f ms | %s |\n",
               KILL_THREADS, figures->recoveryMs,
               recovered && figures->killOther == 0 && !figures->hung ? "yes" : "no");
    } else {
        printf("| kill -9 of the worker under load (workers=1, %d threads): a call succeeds again within 1 s, "
               "others get 22017, the harness lives | %s | no |\n",
               KILL_THREADS, figures->killed ? "no success within 10 s" : "no worker found");
    }
    printf("\nRaw figures:\n\n");
    printf("- CPU-bound: `bench.cpu_loops` = %ld, calibrated in-process to %.0f µs per call (one thread). "
           "Calls/s with %d caller threads, %d calls each, rounds alternating:",
           figures->cpuLoops, figures->cpuCallUs, CPU_THREADS, CPU_CALLS);
    for (int i = 0; i < 2; i++) {
        printf("%s", i == 0 ? " workers=0" : "; workers=2");
        for (int round = 0; round < CPU_ROUNDS; round++) {
            printf("%s %.0f", round ? "," : "", figures->cpuThroughput[i][round]);
        }
    }
    printf(" (medians %.0f and %.0f; one call every %.0f µs in-process at the median). Share of the machine's CPU "
           "time other processes used during these rounds, and the hypervisor stole:",
           figures->cpuMedian[0], figures->cpuMedian[1], figures->cpuMedian[0] > 0 ? 1e6 / figures->cpuMedian[0] : 0);
    for (int i = 0; i < 2; i++) {
        printf("%s", i == 0 ? " workers=0" : "; workers=2");
        for (int round = 0; round < CPU_ROUNDS; round++) {
            printf("%s %.0f %%/%.0f %%", round ? "," : "", 100 * figures->cpuOthers[i][round],
                   100 * figures->cpuStolen[i][round]);
        }
    }
    printf(".\n");
    printf("- Tiny echo (1 KiB), workers=1: median %.2f µs, p99 %.2f µs (%d calls); in-process (default) median "
           "%.2f µs.\n",
           figures->tiny.median, figures->tiny.p99, workloads[TINY].calls, inProcessTiny);
    printf("- 16 MiB in, view only, workers=1: median %.0f µs, p99 %.0f µs (%d calls); memcpy of 16 MiB between "
           "touched buffers: median %.0f µs, slowest %.0f µs (%d copies, before and after).\n",
           figures->view16.median, figures->view16.p99, VIEW_WORKER_CALLS, figures->copy16, figures->copy16Max,
           2 * COPY_SAMPLES);
    printf("- Harness RSS, workers=1, tiny echo: %ld KiB after 1 000 calls, %ld KiB after %ld (%+ld KiB).\n",
           figures->rss1k, figures->rssN, rssCalls, growth);
    printf("- kill -9 (worker pid %d, %d caller threads, %.1f s of calls): %ld calls got 0, %ld got 22017 (%ld of "
           "them begun after the first recovered call), %ld got another result%s; recovery %s%.0f ms; new worker "
           "pid %d; the harness lived on%s.\n",
           (int)figures->killedPid, KILL_THREADS, figures->killRunSeconds, figures->killOk, figures->killLost,
           figures->lostAfterRecovery, figures->killOther, figures->killOther > 0 ? " (see above)" : "",
           figures->recoveryMs >= 0 ? "" : "none, ", figures->recoveryMs >= 0 ? figures->recoveryMs : 0,
           (int)figures->newPid, figures->hung ? " (callers hung)" : "");
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
                                     &failures, NULL, 0);
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

    WorkerFigures workerFigures;
    measure_workers(options, plugin, rssCalls, &workerFigures, &failures);
    BatchFigures batchFigures;
    measure_batching(options, plugin, &batchFigures, &failures);
    ContentionFigures contentionFigures;
    measure_contention(options, plugin, &contentionFigures, &failures);

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
    print_workers(&workerFigures, standard[TINY].median, rssCalls);
    print_batching(&batchFigures);
    print_contention(&contentionFigures);
    if (failures > 0) printf("\nbench: %ld calls failed\n", failures);
    return failures == 0 ? 0 : 1;
}
