/*
 * probe mode: calls the ABI the wrong way on purpose and checks the plugin answers with an
 * error code and text instead of crashing. Prints "ok NAME", "FAIL NAME: why" or "skip NAME: why"
 * per check, then "probe: N failed, M skipped".
 *
 * Works with any wrapper.py. A few checks need one that echoes its input nodes, one-shot and in
 * pull sessions (examples/echo): whether it does is found out once, with a one-node request, and
 * for a wrapper.py that does not they are skipped (or reduced to what holds for any wrapper).
 * The checks of successful calls send -p/-i if given (so a wrapper.py that needs particular
 * inputs can be probed), else one text node "probe".
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "options.h"

static int failures, skipped;
static int echoes;     /* wrapper.py echoes its input: the echo checks run */
static int servedCode; /* not echo: what the served request returns alone */

static void skip(const char *name) {
    printf("skip %s: needs a wrapper.py that echoes its input (examples/echo)\n", name);
    skipped++;
}

static void report(int passed, const char *name, const char *why) {
    if (passed) {
        printf("ok %s\n", name);
    } else {
        printf("FAIL %s: %s\n", name, why);
        failures++;
    }
}

/* Checks that code is an error whose wrapperError text is non-empty (and contains needle, if given). */
static void expect_error(Plugin *plugin, const char *name, int code, const char *needle) {
    char why[512];
    if (code == 0) {
        report(0, name, "returned 0, expected an error code");
        return;
    }
    const char *text = plugin->error(code);
    if (text == NULL || text[0] == '\0') {
        snprintf(why, sizeof why, "code %d has no wrapperError text", code);
        report(0, name, why);
    } else if (needle != NULL && strstr(text, needle) == NULL) {
        snprintf(why, sizeof why, "text for %d lacks \"%s\": %s", code, needle, text);
        report(0, name, why);
    } else {
        printf("   %s -> %d: %s\n", name, code, text);
        report(1, name, "");
    }
}

static int exec_simple(Plugin *plugin, const char *payload, pDataList *response) {
    Pair sid = {"sid", "probe"};
    NodeSpec spec = {.key = "probe", .bytes = (unsigned char *)payload, .len = strlen(payload), .status = DataOnce};
    pParamList params = params_build(&sid, 1);
    pDataList request = data_build(&spec, 1, NULL);
    int code = plugin->exec("probe-tag", params, request, response, NULL, 0);
    params_free(params);
    data_free(request);
    return code;
}

/* The request the checks of successful calls send: -p/-i if given, else one text node "probe". */
static int exec_served(const Options *options, Plugin *plugin, pDataList *response) {
    if (options->inputCount == 0) return exec_simple(plugin, "probe", response);
    pParamList params = request_params(options, "probe");
    pDataList request = data_build(options->inputs, options->inputCount, NULL);
    int code = plugin->exec("probe-tag", params, request, response, (unsigned int *)options->persIds,
                            options->persCount);
    params_free(params);
    data_free(request);
    return code;
}

/* Whether wrapper.py answers a one-node request with that node: key "probe", the same bytes. */
static int find_echo(Plugin *plugin) {
    pDataList response = NULL;
    int code = exec_simple(plugin, "hello", &response);
    pDataList node = response;
    while (node != NULL && node->key == NULL) node = node->next;
    int echo = code == 0 && node != NULL && strcmp(node->key, "probe") == 0 && node->len == 5 &&
               memcmp(node->data, "hello", 5) == 0;
    if (echo) {
        printf("   wrapper.py echoes its input: the echo checks run too\n");
    } else if (code != 0) {
        printf("   wrapper.py does not echo its input (a one-node request \"probe\"=\"hello\" returned %d: %s): "
               "the checks that need an echo wrapper.py are skipped\n",
               code, plugin->error(code));
    } else {
        printf("   wrapper.py does not echo its input (a one-node request \"probe\"=\"hello\" came back otherwise): "
               "the checks that need an echo wrapper.py are skipped\n");
    }
    if (response != NULL) plugin->execFree(NULL, &response);
    return echo;
}

typedef struct {
    const Options *options;
    Plugin *plugin;
    int thread;
    int wrong;
    int expected; /* not echo: every call must return this code (the served request's) */
} EchoThread;

static void *echo_thread(void *argument) {
    EchoThread *self = argument;
    for (int call = 0; call < 100 && !echoes; call++) {
        pDataList response = NULL;
        if (exec_served(self->options, self->plugin, &response) != self->expected) self->wrong++;
        if (response != NULL) self->plugin->execFree(NULL, &response);
    }
    for (int call = 0; call < 100 && echoes; call++) {
        char payload[64];
        snprintf(payload, sizeof payload, "thread-%d-call-%d", self->thread, call);
        pDataList response = NULL;
        int code = exec_simple(self->plugin, payload, &response);
        if (code != 0 || response == NULL || response->len != strlen(payload) ||
            memcmp(response->data, payload, response->len) != 0) {
            self->wrong++;
        }
        if (response != NULL) self->plugin->execFree(NULL, &response);
    }
    return NULL;
}

static int meter_hook(const void *usrTag, const char *key, int count) {
    (void)usrTag, (void)key, (void)count;
    return 0;
}

int run_probe(const Options *options, Plugin *plugin) {
    pDataList response = NULL;
    char why[256];

    const char *version = plugin->version();
    report(version != NULL && version[0] != '\0', "version", "wrapperVersion returned nothing");

    report(plugin->setCtrl(CTMeterCustom, (void *)meter_hook) == 0, "setctrl-before-init", "wrapperSetCtrl failed");
    expect_error(plugin, "setctrl-unknown-type", plugin->setCtrl((CtrlType)99, (void *)meter_hook), NULL);

    expect_error(plugin, "exec-before-init", exec_simple(plugin, "x", &response), "wrapperInit");
    report(response == NULL, "exec-before-init-leaves-respdata-null", "respData was set");
    expect_error(plugin, "fini-before-init", plugin->fini(), NULL);

    if (harness_init(options, plugin) != 0) {
        report(0, "init", "wrapperInit failed; the remaining checks need it");
        printf("probe: %d failed, %d skipped\n", failures, skipped);
        return 1;
    }
    report(1, "init", "");
    expect_error(plugin, "init-twice", harness_init(options, plugin), "already");
    echoes = find_echo(plugin);

    expect_error(plugin, "exec-null-respdata", exec_simple(plugin, "x", NULL), "respData");

    {
        struct DataList node = {.key = "broken", .data = NULL, .len = 5, .status = DataOnce};
        struct DataList head = {.next = &node};
        expect_error(plugin, "exec-null-data-nonzero-len", plugin->exec("t", NULL, &head, &response, NULL, 0), "NULL");
        report(response == NULL, "exec-null-data-leaves-respdata-null", "respData was set");
    }
    {
        /* A list whose last node points back at itself must end in an error, not a hang. */
        struct DataList loop = {.key = "loop", .data = "x", .len = 1, .status = DataOnce};
        loop.next = &loop;
        struct ParamList paramLoop = {.key = "k", .value = "v", .vlen = 1};
        paramLoop.next = &paramLoop;
        expect_error(plugin, "exec-cyclic-request", plugin->exec("t", NULL, &loop, &response, NULL, 0), "cyclic");
        expect_error(plugin, "exec-cyclic-params", plugin->exec("t", &paramLoop, NULL, &response, NULL, 0), "cyclic");
    }
    {
        /* NULL lists and NULL usrTag must not be dereferenced. Any wrapper.py: an error leaves respData NULL,
         * a success is freed. An echo of nothing is an empty-list error. */
        const char *names[2] = {"exec-null-lists", "exec-empty-head-nodes"};
        for (int i = 0; i < 2; i++) {
            struct ParamList paramHead = {0};
            struct DataList dataHead = {0};
            int code = i == 0 ? plugin->exec(NULL, NULL, NULL, &response, NULL, 0)
                              : plugin->exec("t", &paramHead, &dataHead, &response, NULL, 0);
            snprintf(why, sizeof why, "returned %d%s", code, response != NULL ? " and set respData" : "");
            if (echoes) {
                report(code != 0 && response == NULL, names[i], why);
            } else {
                report(code != 0 ? response == NULL : plugin->execFree(NULL, &response) == 0, names[i], why);
            }
            response = NULL;
        }
    }
    if (echoes) {
        int code = exec_simple(plugin, "hello", &response);
        report(code == 0 && response != NULL && response->len == 5 && memcmp(response->data, "hello", 5) == 0,
               "exec-echo", "echo of \"hello\" failed");
    } else {
        skip("exec-echo");
    }
    {
        if (response == NULL) {
            int code = exec_served(options, plugin, &response);
            if (code != 0) {
                printf("   the request the checks of served calls send returned %d: %s%s\n", code, plugin->error(code),
                       options->inputCount ? "" : " (give -p/-i the request wrapper.py expects)");
            }
        }
        if (response != NULL) {
            pDataList stale = response;
            report(plugin->execFree("freed-tag", &response) == 0 && response == NULL, "execfree",
                   "wrapperExecFree failed");
            expect_error(plugin, "execfree-twice", plugin->execFree(NULL, &stale), "wrapperExecFree");
        } else {
            printf("skip execfree: no request was served, so there is no output list to free\n");
            printf("skip execfree-twice: no request was served, so there is no output list to free\n");
            skipped += 2;
        }
        expect_error(plugin, "execfree-null", plugin->execFree(NULL, NULL), NULL);
        pDataList nothing = NULL;
        report(plugin->execFree(NULL, &nothing) == 0, "execfree-null-list", "freeing a NULL list failed");
        struct DataList foreign = {.key = "mine"};
        pDataList foreignList = &foreign;
        expect_error(plugin, "execfree-foreign-list", plugin->execFree(NULL, &foreignList), NULL);
    }
    {
        /* An error text stays valid while other calls make other texts. */
        int failing = plugin->exec("t", NULL, NULL, NULL, NULL, 0);
        const char *text = plugin->error(failing);
        char copy[1024];
        snprintf(copy, sizeof copy, "%s", text);
        int code = exec_served(options, plugin, &response);
        if (response != NULL) plugin->execFree(NULL, &response);
        for (int i = 0; i < 20; i++) plugin->error(22001 + i % 14);
        if (code != 0) plugin->error(code);
        report(strcmp(text, copy) == 0, "error-text-stays-valid", "text changed after later calls");
    }
    {
        int bogus = 42;
        expect_error(plugin, "write-unknown-handle", plugin->write(&bogus, NULL), NULL);
        expect_error(plugin, "read-unknown-handle", plugin->read(&bogus, &response), NULL);
        expect_error(plugin, "destroy-null-handle", plugin->destroy(NULL), NULL);
        report(plugin->debugInfo(NULL) != NULL, "debuginfo-null-handle", "returned NULL");
        expect_error(plugin, "unloadres-unknown", plugin->unloadRes(12345), NULL);
        expect_error(plugin, "execasync-null-callback", plugin->execAsync("t", NULL, NULL, NULL, 0, NULL, 0), NULL);

        int errNum = 0;
        const void *handle = plugin->create("probe-session", NULL, NULL, NULL, 0, &errNum);
        if (handle == NULL) {
            expect_error(plugin, "create-fails-cleanly", errNum, NULL);
        } else {
            report(errNum == 0, "create", "errNum set on success");
            NodeSpec chunk = {.key = "chunk", .bytes = (unsigned char *)"streamed", .len = 8, .status = DataEnd};
            pDataList request = data_build(&chunk, 1, NULL);
            int code = plugin->write(handle, request);
            data_free(request);
            if (echoes) {
                report(code == 0, "session-write", "wrapperWrite failed");
            } else {
                /* Another wrapper.py may refuse the probe's chunk: then it must say why. */
                printf("   session-write of a chunk \"chunk\"=\"streamed\" returned %d%s%s\n", code, code ? ": " : "",
                       code ? plugin->error(code) : "");
                if (code != 0) expect_error(plugin, "session-write", code, NULL);
                else report(1, "session-write", "");
            }
            report(plugin->read(handle, NULL) != 0, "session-read-null-respdata", "accepted NULL respData");
            code = plugin->read(handle, &response);
            if (echoes) {
                report(code == 0 && response != NULL && response->len == 8 &&
                           memcmp(response->data, "streamed", 8) == 0,
                       "session-read", "wrapperRead did not return the written chunk");
                code = plugin->read(handle, &response);
                report(code == 0 && response == NULL, "session-read-nothing-ready", "expected success with no data");
            } else {
                /* Any wrapper.py: a read succeeds (with or without data) or fails with a text. */
                if (code != 0) expect_error(plugin, "session-read-answers", code, NULL);
                else report(1, "session-read-answers", "");
                skip("session-read");
                skip("session-read-nothing-ready");
            }
            const char *debug = plugin->debugInfo(handle);
            report(debug != NULL && debug[0] != '\0', "session-debuginfo", "empty debug text");
            report(plugin->destroy(handle) == 0, "session-destroy", "wrapperDestroy failed");
            expect_error(plugin, "session-read-after-destroy", plugin->read(handle, &response), NULL);
            expect_error(plugin, "session-write-after-destroy", plugin->write(handle, NULL), NULL);
            expect_error(plugin, "session-destroy-twice", plugin->destroy(handle), NULL);
        }
    }
    {
        /* Echo: each of 400 concurrent requests gets its own payload back. Otherwise: each returns the code
         * the served request returned alone. */
        response = NULL; /* a session read's list is the plugin's until the next read or destroy */
        if (!echoes) {
            servedCode = exec_served(options, plugin, &response);
            if (response != NULL) plugin->execFree(NULL, &response);
        }
        int expected = echoes ? 0 : servedCode;
        EchoThread threads[4];
        pthread_t ids[4];
        for (int t = 0; t < 4; t++) {
            threads[t] = (EchoThread){options, plugin, t, 0, expected};
            pthread_create(&ids[t], NULL, echo_thread, &threads[t]);
        }
        int wrong = 0;
        for (int t = 0; t < 4; t++) {
            pthread_join(ids[t], NULL);
            wrong += threads[t].wrong;
        }
        if (echoes) snprintf(why, sizeof why, "%d of 400 concurrent echoes were wrong", wrong);
        else snprintf(why, sizeof why, "%d of 400 concurrent requests did not return %d as one alone did", wrong, expected);
        report(wrong == 0, "exec-4-threads", why);
    }

    print_stats(options, plugin);
    report(plugin->fini() == 0, "fini", "wrapperFini failed");
    expect_error(plugin, "exec-after-fini", exec_simple(plugin, "x", &response), NULL);
    expect_error(plugin, "fini-twice", plugin->fini(), NULL);
    {
        /* The interpreter stays up: a second wrapperInit loads wrapper.py afresh. */
        response = NULL;
        int code = harness_init(options, plugin);
        int served;
        if (echoes) {
            served = code == 0 && exec_simple(plugin, "again", &response) == 0 && response != NULL &&
                     response->len == 5 && memcmp(response->data, "again", 5) == 0;
        } else {
            served = code == 0 && exec_served(options, plugin, &response) == servedCode;
        }
        if (response != NULL) plugin->execFree(NULL, &response);
        report(served, "init-after-fini", "wrapperInit after wrapperFini did not serve");
        report(code == 0 && plugin->fini() == 0, "fini-after-reinit", "wrapperFini failed");
    }

    printf("probe: %d failed, %d skipped\n", failures, skipped);
    return failures == 0 ? 0 : 1;
}
