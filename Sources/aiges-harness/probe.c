/*
 * probe mode: calls the ABI the wrong way on purpose and checks the plugin answers with an
 * error code and text instead of crashing. Prints "ok NAME" or "FAIL NAME: why" per check.
 * Expects a wrapper.py that echoes its input nodes (examples/echo).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "options.h"

static int failures;

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

typedef struct {
    Plugin *plugin;
    int thread;
    int wrong;
} EchoThread;

static void *echo_thread(void *argument) {
    EchoThread *self = argument;
    for (int call = 0; call < 100; call++) {
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
        printf("probe: %d failed\n", failures);
        return 1;
    }
    report(1, "init", "");
    expect_error(plugin, "init-twice", harness_init(options, plugin), "already");

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
        /* NULL lists and NULL usrTag must not be dereferenced; an echo of nothing is an empty-list error. */
        int code = plugin->exec(NULL, NULL, NULL, &response, NULL, 0);
        snprintf(why, sizeof why, "returned %d", code);
        report(code != 0 && response == NULL, "exec-null-lists", why);
        struct ParamList paramHead = {0};
        struct DataList dataHead = {0};
        code = plugin->exec("t", &paramHead, &dataHead, &response, NULL, 0);
        snprintf(why, sizeof why, "returned %d", code);
        report(code != 0 && response == NULL, "exec-empty-head-nodes", why);
    }
    {
        int code = exec_simple(plugin, "hello", &response);
        report(code == 0 && response != NULL && response->len == 5 && memcmp(response->data, "hello", 5) == 0,
               "exec-echo", "echo of \"hello\" failed");
        pDataList stale = response;
        report(plugin->execFree("freed-tag", &response) == 0 && response == NULL, "execfree", "wrapperExecFree failed");
        expect_error(plugin, "execfree-twice", plugin->execFree(NULL, &stale), "wrapperExecFree");
        expect_error(plugin, "execfree-null", plugin->execFree(NULL, NULL), NULL);
        pDataList nothing = NULL;
        report(plugin->execFree(NULL, &nothing) == 0, "execfree-null-list", "freeing a NULL list failed");
        struct DataList foreign = {.key = "mine"};
        pDataList foreignList = &foreign;
        expect_error(plugin, "execfree-foreign-list", plugin->execFree(NULL, &foreignList), NULL);
    }
    {
        int code = exec_simple(plugin, "stable", &response);
        int failing = plugin->exec("t", NULL, NULL, NULL, NULL, 0);
        const char *text = plugin->error(failing);
        char copy[1024];
        snprintf(copy, sizeof copy, "%s", text);
        for (int i = 0; i < 20; i++) plugin->error(22001 + i % 14);
        report(code == 0 && strcmp(text, copy) == 0, "error-text-stays-valid", "text changed after later calls");
        if (response != NULL) plugin->execFree(NULL, &response);
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
            report(plugin->write(handle, request) == 0, "session-write", "wrapperWrite failed");
            data_free(request);
            report(plugin->read(handle, NULL) != 0, "session-read-null-respdata", "accepted NULL respData");
            int code = plugin->read(handle, &response);
            report(code == 0 && response != NULL && response->len == 8 && memcmp(response->data, "streamed", 8) == 0,
                   "session-read", "wrapperRead did not return the written chunk");
            code = plugin->read(handle, &response);
            report(code == 0 && response == NULL, "session-read-nothing-ready", "expected success with no data");
            const char *debug = plugin->debugInfo(handle);
            report(debug != NULL && debug[0] != '\0', "session-debuginfo", "empty debug text");
            report(plugin->destroy(handle) == 0, "session-destroy", "wrapperDestroy failed");
            expect_error(plugin, "session-read-after-destroy", plugin->read(handle, &response), NULL);
            expect_error(plugin, "session-write-after-destroy", plugin->write(handle, NULL), NULL);
            expect_error(plugin, "session-destroy-twice", plugin->destroy(handle), NULL);
        }
    }
    {
        EchoThread threads[4];
        pthread_t ids[4];
        for (int t = 0; t < 4; t++) {
            threads[t] = (EchoThread){plugin, t, 0};
            pthread_create(&ids[t], NULL, echo_thread, &threads[t]);
        }
        int wrong = 0;
        for (int t = 0; t < 4; t++) {
            pthread_join(ids[t], NULL);
            wrong += threads[t].wrong;
        }
        snprintf(why, sizeof why, "%d of 400 concurrent echoes were wrong", wrong);
        report(wrong == 0, "exec-4-threads", why);
    }

    report(plugin->fini() == 0, "fini", "wrapperFini failed");
    expect_error(plugin, "exec-after-fini", exec_simple(plugin, "x", &response), NULL);
    expect_error(plugin, "fini-twice", plugin->fini(), NULL);
    {
        /* The interpreter stays up: a second wrapperInit loads wrapper.py afresh. */
        int code = harness_init(options, plugin);
        int served = code == 0 && exec_simple(plugin, "again", &response) == 0 && response != NULL &&
                     response->len == 5 && memcmp(response->data, "again", 5) == 0;
        if (response != NULL) plugin->execFree(NULL, &response);
        report(served, "init-after-fini", "wrapperInit after wrapperFini did not serve");
        report(code == 0 && plugin->fini() == 0, "fini-after-reinit", "wrapperFini failed");
    }

    printf("probe: %d failed\n", failures);
    return failures == 0 ? 0 : 1;
}
