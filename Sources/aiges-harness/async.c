/*
 * async mode: one-shot requests through wrapperExecAsync from N threads; waits for every
 * request's callback and checks each got exactly one result, with its own usrTag.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "callbacks.h"
#include "options.h"

typedef struct {
    const Options *options;
    Plugin *plugin;
    int thread;
    int failures;
} Issuer;

static void suffix_for(const Options *options, int thread, int call, char *suffix, size_t size) {
    suffix[0] = '\0';
    if (options->unique) snprintf(suffix, size, "#%d-%d", thread, call);
}

static void *issue(void *argument) {
    Issuer *self = argument;
    const Options *options = self->options;
    for (int call = 0; call < options->repeat; call++) {
        int index = self->thread * options->repeat + call;
        char tag[64], sid[64], suffix[64];
        snprintf(tag, sizeof tag, "async-%d-%d", self->thread, call);
        snprintf(sid, sizeof sid, "sid-%d-%d", self->thread, call);
        suffix_for(options, self->thread, call, suffix, sizeof suffix);
        const char *usrTag = callbacks_register(index, tag);
        pParamList list = request_params(options, sid);
        pDataList request = data_build(options->inputs, options->inputCount, suffix);
        int code = self->plugin->execAsync(usrTag, list, request, callbacks_receive, options->timeoutMs,
                                           (unsigned int *)options->persIds, options->persCount);
        params_free(list);
        data_free(request);
        if (code != 0) {
            printf("request %s: wrapperExecAsync returned %d: %s\n", tag, code, self->plugin->error(code));
            callbacks_abandon(index);
            self->failures++;
        }
    }
    return NULL;
}

/* Each input, plus suffix, must come back under its key. */
static int echo_matches(const Options *options, Pending *record, const char *suffix) {
    size_t extra = strlen(suffix);
    for (int i = 0; i < options->inputCount; i++) {
        const NodeSpec *spec = &options->inputs[i];
        int k = 0;
        while (k < record->keyCount && strcmp(record->keys[k], spec->key) != 0) k++;
        if (k == record->keyCount || record->len[k] != spec->len + extra ||
            (spec->len && memcmp(record->data[k], spec->bytes, spec->len) != 0) ||
            memcmp(record->data[k] + spec->len, suffix, extra) != 0) {
            return 0;
        }
    }
    return 1;
}

int run_async(const Options *options, Plugin *plugin) {
    if (!options->noInit && harness_init(options, plugin) != 0) return 1;
    if (load_resources(options, plugin) != 0) return 1;
    int total = options->threads * options->repeat, failures = 0;
    callbacks_reset(plugin, total, options->nestedExec);
    Issuer issuers[256];
    pthread_t threads[256];
    for (int t = 0; t < options->threads; t++) {
        issuers[t] = (Issuer){options, plugin, t, 0};
        pthread_create(&threads[t], NULL, issue, &issuers[t]);
    }
    for (int t = 0; t < options->threads; t++) {
        pthread_join(threads[t], NULL);
        failures += issuers[t].failures;
    }
    int open = callbacks_wait(options->waitMs);
    if (options->lingerMs > 0) sleep_ms(options->lingerMs);
    for (int index = 0; index < total; index++) {
        Pending *record = callbacks_get(index);
        if (record->tagPointer == NULL) continue;
        char suffix[64];
        suffix_for(options, index / options->repeat, index % options->repeat, suffix, sizeof suffix);
        int wrong = !record->finished || record->results != 1 || record->lastRet != options->expectRet ||
                    record->late > 0 || record->wrongPointer > 0 ||
                    (options->checkEcho && !echo_matches(options, record, suffix));
        if (wrong || (!options->quiet && total <= 8)) {
            printf("%s %s: %d results, ret %d (%s), late %d%s\n", wrong ? "FAIL" : "callback", record->tag,
                   record->results, record->lastRet, record->lastRet ? plugin->error(record->lastRet) : "ok",
                   record->late, record->wrongPointer ? ", usrTag pointer differs" : "");
            for (int k = 0; k < record->keyCount; k++) {
                printf("  %s: %zu bytes \"%.*s\"%s\n", record->keys[k], record->len[k],
                       (int)(record->len[k] < 60 ? record->len[k] : 60), record->data[k] ? (char *)record->data[k] : "",
                       record->len[k] > 60 ? "..." : "");
            }
        }
        failures += wrong;
    }
    if (callbacks_unknown() > 0) printf("%d callbacks with an unknown usrTag\n", callbacks_unknown()), failures++;
    callbacks_clear();
    if (!options->noInit) printf("state: %s\n", plugin->debugInfo(NULL)); /* the plugin's own summary */
    failures += unload_resources(options, plugin);
    print_stats(options, plugin);
    if (!options->noInit && plugin->fini() != 0) failures++;
    printf("async: %d requests, %d unfinished, %d failed\n", total, open, failures);
    return failures == 0 ? 0 : 1;
}
