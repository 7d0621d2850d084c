/*
 * session mode: wrapperCreate / wrapperWrite × chunks / wrapperRead or callback / wrapperDestroy,
 * for N sessions whose writes are interleaved, repeated R rounds.
 * Each -i is one chunk: the first is sent as DataBegin, the last as DataEnd (a single chunk: DataEnd).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "callbacks.h"
#include "options.h"

static long now_ms(void) {
    struct timespec time;
    clock_gettime(CLOCK_MONOTONIC, &time);
    return time.tv_sec * 1000L + time.tv_nsec / 1000000L;
}

static DataStatus chunk_status(int index, int count) {
    if (index == count - 1) return DataEnd;
    return index == 0 ? DataBegin : DataContinue;
}

/* Pull mode: one wrapperRead, results recorded like a callback; returns 0 on success. */
static int read_once(Plugin *plugin, const void *handle, Pending *record, int session) {
    pDataList response = NULL;
    int code = plugin->read(handle, &response);
    if (code != 0) {
        printf("session %d: wrapperRead returned %d: %s\n", session, code, plugin->error(code));
        return 1;
    }
    if (response != NULL) callbacks_receive(record->tagPointer, response, 0);
    return 0;
}

static int write_outputs(const Options *options, Pending *record, int session) {
    for (int k = 0; k < record->keyCount; k++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%d.%s", options->outDir, session, record->keys[k]);
        FILE *file = fopen(path, "wb");
        if (file == NULL || (record->len[k] > 0 && fwrite(record->data[k], 1, record->len[k], file) != record->len[k])) {
            perror(path);
            if (file != NULL) fclose(file);
            return 1;
        }
        fclose(file);
    }
    return 0;
}

static int one_round(const Options *options, Plugin *plugin, int round, int count, int last) {
    int failures = 0;
    const void **handles = calloc((size_t)count, sizeof *handles);
    if (handles == NULL) exit(4);
    callbacks_reset(plugin, count, options->nestedExec);
    for (int s = 0; s < count; s++) {
        char tag[64], sid[64];
        snprintf(tag, sizeof tag, "session-%d-%d", round, s);
        snprintf(sid, sizeof sid, "sid-%d-%d", round, s);
        const char *usrTag = callbacks_register(s, tag);
        pParamList list = request_params(options, sid);
        int errNum = 0;
        handles[s] = plugin->create(usrTag, list, options->push ? callbacks_receive : NULL,
                                    (unsigned int *)options->persIds, options->persCount, &errNum);
        params_free(list);
        if (handles[s] == NULL) {
            printf("session %d: wrapperCreate failed: %d: %s\n", s, errNum, plugin->error(errNum));
            callbacks_abandon(s); /* nothing will arrive */
            failures++;
        }
    }
    for (int c = 0; c < options->inputCount; c++) {
        for (int s = 0; s < count; s++) {
            if (handles[s] == NULL) continue;
            NodeSpec chunk = options->inputs[c];
            chunk.status = chunk_status(c, options->inputCount);
            char suffix[32] = "";
            if (options->unique) snprintf(suffix, sizeof suffix, "#%d", s);
            pDataList request = data_build(&chunk, 1, suffix);
            int code = plugin->write(handles[s], request);
            data_free(request); /* freed and poisoned at once, as the loader does */
            if (code != 0) {
                printf("session %d: wrapperWrite returned %d: %s\n", s, code, plugin->error(code));
                failures++;
            }
            if (!options->push && !callbacks_get(s)->finished) failures += read_once(plugin, handles[s], callbacks_get(s), s);
        }
    }
    if (options->push) {
        callbacks_wait(options->waitMs);
    } else {
        for (long deadline = now_ms() + options->waitMs; now_ms() < deadline;) {
            int open = 0;
            for (int s = 0; s < count; s++) {
                if (handles[s] == NULL || callbacks_get(s)->finished) continue;
                open++;
                failures += read_once(plugin, handles[s], callbacks_get(s), s);
            }
            if (open == 0) break;
            sleep_ms(options->pollMs);
        }
    }
    if (options->lingerMs > 0) sleep_ms(options->lingerMs);
    for (int s = 0; s < count; s++) {
        if (handles[s] == NULL) continue;
        Pending *record = callbacks_get(s);
        const char *debug = plugin->debugInfo(handles[s]);
        if (options->debugCalls > 0) {
            /* Asked many times: the texts must not pile up (each stays valid only for a while). */
            long before = rss_kib();
            for (int call = 0; call < options->debugCalls; call++) {
                plugin->debugInfo(handles[s]);
                plugin->debugInfo(NULL);
            }
            debug = plugin->debugInfo(handles[s]);
            printf("session %d: %d more wrapperDebugInfo calls, rss %+ld KiB\n", s, options->debugCalls,
                   rss_kib() - before);
        }
        if (!options->quiet) {
            printf("session %d: %d results, %d nodes, final %s, late %d\n", s, record->results, record->nodes,
                   record->finished ? "yes" : "no", record->late);
            for (int k = 0; k < record->keyCount; k++) {
                printf("  %s: %zu bytes \"%.*s\"%s\n", record->keys[k], record->len[k],
                       (int)(record->len[k] < 60 ? record->len[k] : 60), record->data[k] ? (char *)record->data[k] : "",
                       record->len[k] > 60 ? "..." : "");
            }
            printf("  debug: %s\n", debug ? debug : "(null)");
        }
        int code = plugin->destroy(handles[s]);
        if (code != 0) {
            printf("session %d: wrapperDestroy returned %d: %s\n", s, code, plugin->error(code));
            failures++;
        }
        if (!record->finished) printf("session %d: no final result within %d ms\n", s, options->waitMs), failures++;
        if (record->late > 0) printf("session %d: %d results after the final one\n", s, record->late), failures++;
        if (record->wrongPointer > 0) printf("session %d: callback usrTag was not the pointer given\n", s), failures++;
        if (last && options->outDir != NULL) failures += write_outputs(options, record, s);
    }
    if (callbacks_unknown() > 0) printf("%d callbacks with an unknown usrTag\n", callbacks_unknown()), failures++;
    free(handles);
    return failures;
}

int run_session(const Options *options, Plugin *plugin) {
    if (!options->noInit && harness_init(options, plugin) != 0) return 1;
    if (load_resources(options, plugin) != 0) return 1;
    int count = options->sessions > 0 ? options->sessions : 1, failures = 0;
    long rssFirst = 0;
    for (int round = 0; round < options->repeat; round++) {
        failures += one_round(options, plugin, round, count, round == options->repeat - 1);
        if (round == 0) rssFirst = rss_kib();
    }
    if (options->repeat > 1) {
        printf("rss: %ld KiB after the first round, %ld KiB after %d rounds\n", rssFirst, rss_kib(), options->repeat);
    }
    callbacks_clear();
    failures += unload_resources(options, plugin);
    print_stats(options, plugin);
    if (!options->noInit && plugin->fini() != 0) failures++;
    printf("session: %d sessions, %d failed\n", count * options->repeat, failures);
    return failures == 0 ? 0 : 1;
}
