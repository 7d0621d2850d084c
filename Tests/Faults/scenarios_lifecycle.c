/*
 * Lifecycle scenarios: what wrapperFini ends, wrapperFini called from inside a callback, and
 * loader threads exiting while Python objects tied to their thread state die.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "faults.h"

#define SHUT_DOWN_RET 22018
#define UNKNOWN_HANDLE 22009

/* ------------------------------------------------------------------------------------------------
 * fini-ends-everything (fixture faults, async.timeout_ms large): with 3 push and 2 pull sessions
 * open, 2 resources loaded and 5 async requests pending that wrapper.py never answers,
 * wrapperFini must, before it returns, give each request exactly one final callback with 22018,
 * run wrapper.py's wrapperDestroy for each session and wrapperUnloadRes for each resource; no
 * callback may come after it returned. After wrapperInit again, the old handles and resource ids
 * are unknown (22009).
 */

static void expect_unknown(const char *what, int code) {
    if (code != UNKNOWN_HANDLE) {
        fail("after re-init, %s returned %d (%s), expected 22009", what, code, error_text(code));
    }
}

void scenario_fini_ends_everything(void) {
    enum { PUSH = 3, PULL = 2, ASYNC = 5 };
    static const unsigned int resources[] = {101, 102};
    if (init_plugin() != 0) return;

    Tag *sessions[PUSH + PULL];
    for (int i = 0; i < PUSH + PULL; i++) {
        int push = i < PUSH, code;
        sessions[i] = push ? tag_new("fini-push-%d", i) : tag_new("fini-pull-%d", i - PUSH);
        step("wrapperCreate %s", sessions[i]->text);
        if (open_session(sessions[i], push, sessions[i]->text, NULL, 0, &code) == NULL) {
            fail("%s: wrapperCreate returned %d: %s", sessions[i]->text, code, error_text(code));
            fini_plugin();
            return;
        }
        step("wrapperWrite %s", sessions[i]->text);
        code = write_text(sessions[i]->handle, "hello", DataBegin);
        if (code != 0) fail("%s: wrapperWrite returned %d: %s", sessions[i]->text, code, error_text(code));
    }
    for (int i = 0; i < 2; i++) {
        char patch[32];
        snprintf(patch, sizeof patch, "patch-%u", resources[i]);
        Pair descPair = {"patch_id", patch};
        pDataList data = data_build("res", "voice profile", 13, DataPer, DataEnd, params_build(&descPair, 1));
        step("wrapperLoadRes(%u)", resources[i]);
        int code = P.loadRes(data, resources[i]);
        data_free(data);
        if (code != 0) fail("wrapperLoadRes(%u) returned %d: %s", resources[i], code, error_text(code));
    }
    Tag *pending[ASYNC];
    Pair mode = {"mode", "never"};
    for (int i = 0; i < ASYNC; i++) {
        pending[i] = tag_new("fini-async-%d", i);
        step("wrapperExecAsync %s (never answered, timeout 0)", pending[i]->text);
        int code = send_async(pending[i], pending[i]->text, &mode, 1, "never", 0);
        if (code != 0) fail("%s: wrapperExecAsync returned %d: %s", pending[i]->text, code, error_text(code));
    }
    sleep_ms(100);
    if (tracker_total() != 0) fail("%d callback(s) before wrapperFini", tracker_total());

    step("wrapperFini with 5 sessions, 2 resources and 5 async requests open");
    int64_t started = now_ns();
    int code = P.fini();
    int64_t returned = now_ns();
    /* What had arrived by the time wrapperFini returned. */
    int ended = 0;
    for (int i = 0; i < ASYNC; i++) {
        tracker_lock();
        Tag seen = *pending[i];
        tracker_unlock();
        if (seen.callbacks == 0) continue;
        ended++;
        if (seen.callbacks > 1) {
            fail("%s: %d callbacks during wrapperFini, expected 1", pending[i]->text, seen.callbacks);
        }
        if (seen.firstRet != SHUT_DOWN_RET) {
            fail("%s: wrapperFini ended it with ret %d (%s), expected %d", pending[i]->text, seen.firstRet,
                 error_text(seen.firstRet), SHUT_DOWN_RET);
        }
    }
    if (ended < ASYNC) {
        fail("%d of %d pending async requests had no final callback when wrapperFini returned", ASYNC - ended,
             ASYNC);
    }
    if (code != 0) fail("wrapperFini returned %d: %s", code, error_text(code));
    note("wrapperFini returned %d after %.1f ms", code, (double)(returned - started) / 1e6);
    int total = tracker_total();
    step("listening 500 ms after wrapperFini returned");
    sleep_ms(500);
    if (tracker_total() != total) fail("%d callback(s) came after wrapperFini returned", tracker_total() - total);
    int destroys = record_count("destroy "), unloads = record_count("unload ");
    if (destroys != PUSH + PULL) {
        fail("wrapper.py's wrapperDestroy ran %d time(s) during wrapperFini, expected %d", destroys, PUSH + PULL);
    }
    if (unloads != 2) fail("wrapper.py's wrapperUnloadRes ran %d time(s) during wrapperFini, expected 2", unloads);

    if (init_plugin() != 0) return;
    char what[120];
    for (int i = 0; i < PUSH + PULL; i++) {
        const void *handle = sessions[i]->handle;
        step("old handle of %s after re-init", sessions[i]->text);
        snprintf(what, sizeof what, "wrapperWrite(old %s)", sessions[i]->text);
        expect_unknown(what, write_text(handle, "again", DataContinue));
        pDataList output = NULL;
        snprintf(what, sizeof what, "wrapperRead(old %s)", sessions[i]->text);
        expect_unknown(what, P.read(handle, &output));
        snprintf(what, sizeof what, "wrapperDestroy(old %s)", sessions[i]->text);
        expect_unknown(what, P.destroy(handle));
    }
    for (int i = 0; i < 2; i++) {
        step("wrapperUnloadRes(%u) after re-init", resources[i]);
        snprintf(what, sizeof what, "wrapperUnloadRes(old %u)", resources[i]);
        expect_unknown(what, P.unloadRes(resources[i]));
    }
    fini_plugin();
}

/* ------------------------------------------------------------------------------------------------
 * fini-from-callback[-push]: a loader callback calls wrapperFini from inside itself. wrapperFini
 * must return (0, or an error with a text; then a wrapperFini from outside must work) without
 * deadlock or abort, the plugin must start again afterwards, and the process must exit normally.
 */

typedef struct {
    int code;
    int done;
} FiniContext;

static int fini_done(void *context) { return ((FiniContext *)context)->done; }

static void fini_hook(Tag *tag, int call, pDataList respData, int ret) {
    (void)respData, (void)ret;
    if (call != 1) return;
    FiniContext *context = tag->context;
    step("wrapperFini from inside the callback of %s", tag->text);
    int code = P.fini();
    step("callback of %s returning after wrapperFini", tag->text);
    tracker_lock();
    context->code = code;
    context->done = 1;
    tracker_unlock();
    tracker_notify();
}

static void fini_from_callback(int push) {
    static FiniContext context;
    if (init_plugin() != 0) return;
    Tag *tag = tag_new(push ? "fini-in-push" : "fini-in-async");
    tag->hook = fini_hook;
    tag->context = &context;
    if (push) {
        Pair extra[] = {{"deliver", "thread"}, {"results", "1"}};
        int code;
        step("wrapperCreate (push; the session's callback calls wrapperFini)");
        if (open_session(tag, 1, tag->text, extra, 2, &code) == NULL) {
            fail("wrapperCreate returned %d: %s", code, error_text(code));
            fini_plugin();
            return;
        }
        step("wrapperWrite (a Python thread delivers)");
        code = write_text(tag->handle, "go", DataEnd);
        if (code != 0) fail("wrapperWrite returned %d: %s", code, error_text(code));
    } else {
        Pair mode = {"mode", "pool"};
        step("wrapperExecAsync (a Python thread delivers; the callback calls wrapperFini)");
        int code = send_async(tag, tag->text, &mode, 1, "payload", 0);
        if (code != 0) fail("wrapperExecAsync returned %d: %s", code, error_text(code));
    }
    step("waiting for the callback that calls wrapperFini");
    if (!tracker_wait(fini_done, &context, 10000)) {
        fail("wrapperFini called inside the callback had not returned after 10 s (%d callbacks started)",
             tag->callbacks);
        abandon();
        return;
    }
    TagSet set = {&tag, 1};
    if (!tracker_wait(all_hooks_done, &set, 3000)) {
        fail("the callback did not return after its wrapperFini returned");
        abandon();
        return;
    }
    if (context.code == 0) {
        note("wrapperFini inside the callback returned 0");
    } else {
        const char *text = P.error(context.code);
        if (text == NULL || text[0] == '\0') {
            fail("wrapperFini inside the callback returned %d with no text", context.code);
        }
        note("wrapperFini inside the callback returned %d: %s; wrapperFini from outside now", context.code,
             text ? text : "(NULL)");
        if (push) P.destroy(tag->handle);
        fini_plugin();
    }
    step("wrapperInit again after wrapperFini from a callback");
    if (init_plugin() != 0) return;
    char why[300];
    step("wrapperExec after re-init");
    if (exec_echo("after-reinit", "again", why, sizeof why) != 0) fail("after re-init: %s", why);
    fini_plugin();
}

void scenario_fini_from_callback(void) { fini_from_callback(0); }
void scenario_fini_from_callback_push(void) { fini_from_callback(1); }

/* ------------------------------------------------------------------------------------------------
 * thread-exit (fixture thread_local): 40 loader threads each make one wrapperExec and exit. Each
 * leaves a threading.local() value whose __del__ calls PyGILState_Ensure/Release; it dies when the
 * plugin tears down the exiting thread's Python state. Every thread must exit, and the process
 * must finish cleanly (also under PYTHONMALLOC=debug, which the Swift test sets).
 */

enum { EXIT_THREADS = 40 };

typedef struct {
    int index;
    int code;
    char why[300];
} ExitCaller;

static void *exit_caller(void *argument) {
    ExitCaller *caller = argument;
    char tag[32], text[32];
    snprintf(tag, sizeof tag, "exit-%d", caller->index);
    snprintf(text, sizeof text, "thread-%d", caller->index);
    caller->code = exec_echo(tag, text, caller->why, sizeof caller->why);
    return NULL; /* the thread exits here: the plugin's thread-state destructor runs */
}

void scenario_thread_exit(void) {
    if (init_plugin() != 0) return;
    static ExitCaller callers[EXIT_THREADS];
    pthread_t threads[EXIT_THREADS];
    step("40 threads: one wrapperExec each, then exit");
    for (int i = 0; i < EXIT_THREADS; i++) {
        callers[i] = (ExitCaller){.index = i};
        if (pthread_create(&threads[i], NULL, exit_caller, &callers[i]) != 0) {
            fail("cannot start thread %d", i);
            return;
        }
    }
    int64_t started = now_ns();
    for (int i = 0; i < EXIT_THREADS; i++) {
        int left = 15000 - (int)ms_since(started);
        char what[64];
        snprintf(what, sizeof what, "loader thread %d (one wrapperExec, then exit)", i);
        step("joining %s", what);
        if (join_within(threads[i], left > 0 ? left : 1, what) != 0) return;
        if (callers[i].code != 0) fail("thread %d: %s", i, callers[i].why);
    }
    note("40 threads exited after %.0f ms", ms_since(started));
    fini_plugin();
    char line[200];
    if (record_find("deleted ", line, sizeof line)) {
        note("wrapper.py: %s thread-local value(s) deleted by then", line + strlen("deleted "));
    }
}
