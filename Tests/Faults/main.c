/*
 * aiges-faults: adversarial scenarios against libwrapper.so, one per run.
 *
 *   aiges-faults [--so PATH] SCENARIO [--so PATH] [-c K=V ...] [--timeout S] [--keep]
 *   aiges-faults --list
 *
 * Prints "ok SCENARIO" and exits 0, or prints "FAIL SCENARIO: reason" and exits 1 (2: bad command
 * line, 3: the plugin cannot be loaded). A watchdog fails the run if it is still going after
 * --timeout seconds (default 45, or the scenario's own bound, e.g. stress.seconds + 90 for stress),
 * and a crash prints a FAIL line naming the step it happened in.
 */
#define _GNU_SOURCE
#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "faults.h"

static const Scenario scenarios[] = {
    {"push-destroy-in-callback", scenario_push_destroy_in_callback, NULL,
     "a push callback (result delivered inside wrapperWrite) destroys its own session"},
    {"push-destroy-in-callback-thread", scenario_push_destroy_in_callback_thread, NULL,
     "a push callback (result delivered from a Python thread) destroys its own session"},
    {"push-debuginfo-in-callback", scenario_push_debuginfo_in_callback, NULL,
     "a push callback calls wrapperDebugInfo on its own session and wrapperExec"},
    {"blocked-callback", scenario_blocked_callback, NULL,
     "while one push callback blocks 2 s, other calls (same and other sessions) stay fast"},
    {"bad-calls-in-callback", scenario_bad_calls_in_callback, NULL,
     "wrong calls from inside a push callback fail cleanly"},
    {"pull-read-unique-keys", scenario_pull_read_unique_keys, NULL,
     "each wrapperRead list has unique keys; nothing lost; a failing read loses nothing"},
    {"lend-pull", scenario_lend_pull, "data.lend=true",
     "data.lend: node.view delivered with callback(resp, sid) inside wrapperWrite reads back exactly after the "
     "input was freed"},
    {"read-many", scenario_read_many, NULL, "one wrapperRead returns 20,000 queued results with distinct keys in 1 s"},
    {"async-fail-after-deliver", scenario_async_fail_after_deliver, NULL,
     "wrapperOnceExecAsync delivers, then returns 5: no callback, wrapperExecAsync returns 5"},
    {"async-fail-after-deliver-thread", scenario_async_fail_after_deliver_thread, NULL,
     "as above, delivered from a Python thread while the method runs; callback would block"},
    {"async-deliver-then-ok", scenario_async_deliver_then_ok, NULL,
     "wrapperOnceExecAsync delivers, then returns 0: exactly one callback with its data"},
    {"async-callback-calls-plugin", scenario_async_callback_calls_plugin, NULL,
     "an async callback calls wrapperExecAsync, wrapperExec and wrapperDebugInfo(NULL)"},
    {"async-timeout-busy-fallback", scenario_async_timeout_busy_fallback, NULL,
     "timeouts fire on time while every fallback worker is busy"},
    {"async-timeout-blocking-callbacks", scenario_async_timeout_blocking_callbacks, NULL,
     "100 timeouts fire on time while timeout callbacks block 300 ms each"},
    {"async-default-timeout", scenario_async_default_timeout, "async.timeout_ms=300",
     "timeout 0 means async.timeout_ms"},
    {"async-duplicate-sid", scenario_async_duplicate_sid, NULL,
     "a sid shared by two requests in flight is not a delivery target"},
    {"timer-leak", scenario_timer_leak, NULL,
     "100 requests with 1 ms timeouts while the GIL is busy: after the 22012s, no pending request or timer is left"},
    {"runner-starve", scenario_runner_starve, NULL,
     "with a warm idle runner thread, 100 timeouts whose callbacks block 300 ms all fire on time"},
    {"fallback-backlog-memory", scenario_fallback_backlog_memory, "async.fallback_threads=1",
     "10 requests of 256 KiB always waiting for one fallback thread for backlog.seconds (4): RSS stays flat"},
    {"fini-ends-everything", scenario_fini_ends_everything, "async.timeout_ms=600000",
     "wrapperFini ends requests (22018), sessions and resources; old handles are unknown after re-init"},
    {"fini-from-callback", scenario_fini_from_callback, NULL, "an async callback calls wrapperFini"},
    {"fini-from-callback-push", scenario_fini_from_callback_push, NULL, "a push callback calls wrapperFini"},
    {"thread-exit", scenario_thread_exit, NULL,
     "40 loader threads exit after one call each; a thread-local's __del__ takes the GIL"},
    {"fini-race", scenario_fini_race, NULL,
     "wrapperFini while wrapperOnceExecAsync still runs (returns 5, then 0): one outcome per request"},
    {"fini-after-held", scenario_fini_after_held, NULL,
     "wrapperFini right after a held result went on its way: no callback runs or starts after it returned"},
    {"fini-waits-fallback", scenario_fini_waits_fallback, NULL,
     "wrapperFini while a fallback wrapperOnceExec runs: wrapper.py's wrapperFini runs after it returned"},
    {"long-lists", scenario_long_lists, NULL,
     "100,000-node request and params lists reach wrapper.py whole; cyclic lists fail with 22003 at once"},
    {"batch-errors", scenario_batch_errors, "batch.max_size=4;batch.max_delay_us=2000000",
     "batching: per-request errors in one batch; a batch that raises (22004) or returns too few (22005)"},
    {"batch-mixed", scenario_batch_mixed, "batch.max_size=4;batch.max_delay_us=2000000",
     "batching: two async and two sync requests in one batch, each gets exactly its own result"},
    {"batch-free-independent", scenario_batch_free_independent, "batch.max_size=2;batch.max_delay_us=2000000",
     "batching: one request's wrapperExecFree leaves the other's output (same Python buffer) intact"},
    {"batch-timeout-queued", scenario_batch_timeout_queued,
     "batch.max_size=4;batch.max_delay_us=1000;fixture.sleep_ms=300",
     "batching: async requests time out on time while their batch runs or while queued; queued ones never run"},
    {"batch-fini-in-flight", scenario_batch_fini_in_flight,
     "batch.max_size=4;batch.max_delay_us=2000000;fixture.sleep_ms=300",
     "batching: wrapperFini with a batch in flight and requests queued: one outcome each before it returns"},
    {"batch-lone-after-timeout", scenario_batch_lone_after_timeout, "batch.max_size=8;batch.max_delay_us=300000",
     "batching: a lone async request is still sent after an earlier one timed out while queued"},
    {"batch-hook-reenters", scenario_batch_hook_reenters, "batch.max_size=8;batch.max_delay_us=2000",
     "batching: a meter hook inside a batch calls wrapperExec, then wrapperFini; neither waits on its own batch"},
    {"stress", scenario_stress, "async.timeout_ms=30000",
     "8 threads mix exec, async (timeouts), pull and push sessions for stress.seconds (60); wrapperFini "
     "with work pending; RSS stays flat",
     stress_watchdog_seconds},
};
static const int scenarioCount = (int)(sizeof scenarios / sizeof scenarios[0]);

static const char *scenarioName = "?";
static int timeoutSeconds = 45;

static void usage(FILE *out) {
    fprintf(out, "usage: aiges-faults [--so PATH] SCENARIO [-c K=V ...] [--timeout S] [--keep]\n"
                 "       aiges-faults --list\n\nscenarios:\n");
    for (int i = 0; i < scenarioCount; i++) fprintf(out, "  %-34s %s\n", scenarios[i].name, scenarios[i].summary);
}

/* The watchdog: a run still going at the deadline is a hang, reported and ended here. */
static void *watchdog(void *unused) {
    (void)unused;
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += timeoutSeconds;
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &deadline, NULL) != 0) {
    }
    dprintf(STDOUT_FILENO, "FAIL %s: hang: still running after %d s; stuck in: %s\n", scenarioName, timeoutSeconds,
            current_step());
    _exit(1);
    return NULL;
}

/* Crashes: name the step, then let the previous handler (or the default action) run. */
static const int crashSignals[] = {SIGSEGV, SIGBUS, SIGILL, SIGTRAP, SIGABRT, SIGFPE};
static struct sigaction previous[sizeof crashSignals / sizeof crashSignals[0]];

static void crashed(int signal) {
    char text[512];
    const char *own = thread_step(); /* the crashing thread's step, if the driver set one on it */
    int len = own[0] != '\0'
                  ? snprintf(text, sizeof text, "FAIL %s: crash: signal %d (%s) in: %s\n", scenarioName, signal,
                             strsignal(signal), own)
                  : snprintf(text, sizeof text, "FAIL %s: crash: signal %d (%s) on a plugin thread; last step: %s\n",
                             scenarioName, signal, strsignal(signal), current_step());
    if (len > 0) (void)!write(STDOUT_FILENO, text, (size_t)len < sizeof text ? (size_t)len : sizeof text - 1);
    for (size_t i = 0; i < sizeof crashSignals / sizeof crashSignals[0]; i++) {
        if (crashSignals[i] == signal) sigaction(signal, &previous[i], NULL);
    }
    raise(signal);
}

static void install_crash_report(void) {
    static char alternate[1 << 16]; /* so a stack overflow can still be reported */
    stack_t stack = {.ss_sp = alternate, .ss_size = sizeof alternate};
    sigaltstack(&stack, NULL);
    for (size_t i = 0; i < sizeof crashSignals / sizeof crashSignals[0]; i++) {
        struct sigaction action = {.sa_handler = crashed, .sa_flags = SA_ONSTACK | SA_NODEFER};
        sigemptyset(&action.sa_mask);
        sigaction(crashSignals[i], &action, &previous[i]);
    }
}

static int has_config(const char *key) { return config_value(key) != NULL; }

static void add_config(const char *key, const char *value) {
    if (R.configCount == MAX_CONFIG) {
        fprintf(stderr, "aiges-faults: too many config entries\n");
        exit(2);
    }
    R.config[R.configCount++] = (Pair){strdup(key), strdup(value)};
}

/* "k=v;k=v" defaults of a scenario, unless -c gave the key. */
static void add_defaults(const char *defaults) {
    if (defaults == NULL) return;
    char *copy = strdup(defaults), *save = NULL;
    for (char *entry = strtok_r(copy, ";", &save); entry != NULL; entry = strtok_r(NULL, ";", &save)) {
        char *equals = strchr(entry, '=');
        if (equals == NULL) continue;
        *equals = '\0';
        if (!has_config(entry)) add_config(entry, equals + 1);
    }
    free(copy);
}

static int remove_entry(const char *path, const struct stat *status, int flag, struct FTW *walk) {
    (void)status, (void)flag, (void)walk;
    return remove(path);
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *library = NULL, *name = NULL;
    int keep = 0, timeoutGiven = 0;
    for (int i = 1; i < argc; i++) {
        const char *argument = argv[i];
        if (strcmp(argument, "--so") == 0 && i + 1 < argc) {
            library = argv[++i];
        } else if ((strcmp(argument, "-c") == 0 || strcmp(argument, "--config") == 0) && i + 1 < argc) {
            char *pair = argv[++i], *equals = strchr(pair, '=');
            if (equals == NULL || equals == pair) {
                fprintf(stderr, "aiges-faults: bad config \"%s\" (K=V)\n", pair);
                return 2;
            }
            *equals = '\0';
            add_config(pair, equals + 1);
        } else if (strcmp(argument, "--timeout") == 0 && i + 1 < argc) {
            timeoutSeconds = atoi(argv[++i]);
            if (timeoutSeconds < 1) timeoutSeconds = 1;
            timeoutGiven = 1;
        } else if (strcmp(argument, "--keep") == 0) {
            keep = 1;
        } else if (strcmp(argument, "--list") == 0 || strcmp(argument, "-h") == 0 || strcmp(argument, "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (argument[0] != '-' && name == NULL) {
            name = argument;
        } else {
            fprintf(stderr, "aiges-faults: bad argument \"%s\"\n\n", argument);
            usage(stderr);
            return 2;
        }
    }
    const Scenario *scenario = NULL;
    for (int i = 0; name != NULL && i < scenarioCount; i++) {
        if (strcmp(scenarios[i].name, name) == 0) scenario = &scenarios[i];
    }
    if (scenario == NULL) {
        fprintf(stderr, "aiges-faults: %s\n\n", name ? "unknown scenario" : "no scenario given");
        usage(stderr);
        return 2;
    }
    scenarioName = scenario->name;
    R.scenario = scenario->name;

    /* A fresh directory for the plugin's log and wrapper.py's record file. */
    snprintf(R.tmpdir, sizeof R.tmpdir, "%s/aiges-faults-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (mkdtemp(R.tmpdir) == NULL) {
        perror("aiges-faults: mkdtemp");
        return 2;
    }
    char logDir[300];
    snprintf(logDir, sizeof logDir, "%s/log", R.tmpdir);
    if (!has_config("log.dir")) add_config("log.dir", logDir);
    if (!has_config("record")) {
        snprintf(R.record, sizeof R.record, "%s/record", R.tmpdir);
        add_config("record", R.record);
    } else {
        snprintf(R.record, sizeof R.record, "%s", config_value("record"));
    }
    add_defaults(scenario->defaults);
    if (!timeoutGiven && scenario->watchdogSeconds != NULL) timeoutSeconds = scenario->watchdogSeconds();
    if (!has_config("wrapper.file")) fprintf(stderr, "aiges-faults: warning: no -c wrapper.file=... given\n");

    if (aiges_plugin_load(&P, library ? library : aiges_default_library(), "aiges-faults") != 0) return 3;
    install_crash_report(); /* after dlopen, so the plugin's runtime cannot replace it */
    pthread_t guard;
    pthread_create(&guard, NULL, watchdog, NULL);
    pthread_detach(guard);

    printf("scenario %s: %s\n", scenario->name, scenario->summary);
    scenario->run();

    int count = failures();
    if (count == 0) {
        printf("ok %s\n", scenario->name);
    } else {
        printf("FAIL %s: %s%s\n", scenario->name, first_failure(), count > 1 ? " (and more, see above)" : "");
        printf("  (plugin log and record kept in %s)\n", R.tmpdir);
    }
    fflush(stdout);
    if (abandoned()) _exit(count == 0 ? 0 : 1); /* threads are stuck in the plugin: do not run exit handlers */
    if (count == 0 && !keep) nftw(R.tmpdir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    step("process exit (exit handlers)");
    return count == 0 ? 0 : 1;
}
