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

/* ------------------------------------------------------------------------------------------------
 * fini-race: wrapperFini is called while a wrapperExecAsync is still inside wrapper.py's
 * wrapperOnceExecAsync (mode "slow": it sleeps 300 ms, then returns param "ret" without delivering).
 * wrapperFini ends every pending request with 22018 before it returns, this one included; that
 * callback blocks 500 ms, so wrapper.py's method returns while it (and wrapperFini) still runs.
 * The request must still have exactly one outcome for the loader: if the 22018 callback came,
 * wrapperExecAsync must return 0 (a non-zero return as well would answer the request twice), and
 * if none came, it must return non-zero. Once with wrapper.py returning 5, once returning 0.
 */

static void block_500_hook(Tag *tag, int call, pDataList respData, int ret) {
    (void)tag, (void)call, (void)respData, (void)ret;
    sleep_ms(500);
}

typedef struct {
    Tag *tag;
    Pair extra[3];
} RaceCall;

static void *race_call_main(void *argument) {
    RaceCall *call = argument;
    step("wrapperExecAsync %s (wrapper.py sleeps 300 ms, then returns %s)", call->tag->text, call->extra[1].value);
    send_async(call->tag, call->tag->text, call->extra, 3, "payload", 0);
    return NULL;
}

static void fini_race_round(const char *ret) {
    if (init_plugin() != 0) return;
    static RaceCall calls[2]; /* static: a stuck call thread may outlive this function */
    RaceCall *call = &calls[strcmp(ret, "0") == 0];
    call->tag = tag_new("fini-race-ret%s", ret);
    call->extra[0] = (Pair){"mode", "slow"};
    call->extra[1] = (Pair){"ret", ret};
    call->extra[2] = (Pair){"sleep_ms", "300"};
    Tag *tag = call->tag;
    tag->hook = block_500_hook;
    pthread_t thread;
    if (pthread_create(&thread, NULL, race_call_main, call) != 0) {
        fail("cannot start the wrapperExecAsync thread");
        return;
    }
    char entered[96];
    snprintf(entered, sizeof entered, "async slow %s", tag->text);
    step("waiting for wrapper.py's wrapperOnceExecAsync of %s to start", tag->text);
    if (!wait_record(entered, 3000)) fail("%s: wrapper.py's wrapperOnceExecAsync did not start within 3 s", tag->text);

    step("wrapperFini while wrapperOnceExecAsync of %s still runs", tag->text);
    int64_t finiStarted = now_ns();
    int finiCode = P.fini();
    int64_t finiReturned = now_ns();
    tracker_lock();
    Tag atReturn = *tag;
    tracker_unlock();
    if (finiCode != 0) fail("wrapperFini returned %d: %s", finiCode, error_text(finiCode));
    if (atReturn.hooksRunning > 0) fail("%s: its callback was still running when wrapperFini returned", tag->text);
    char what[96];
    snprintf(what, sizeof what, "wrapperExecAsync of %s", tag->text);
    if (join_within(thread, 5000, what) != 0) return;
    int returnedBeforeFini = tag->returnedNs < finiStarted;
    int total = tracker_total();
    step("listening 300 ms after wrapperFini returned");
    sleep_ms(300);
    if (tracker_total() != total) fail("%d callback(s) came after wrapperFini returned", tracker_total() - total);

    tracker_lock();
    Tag seen = *tag;
    tracker_unlock();
    TagSet set = {&call->tag, 1};
    if (seen.callbacks > 0 && !tracker_wait(all_hooks_done, &set, 3000)) {
        fail("%s: its callback did not return", tag->text);
        abandon();
        return;
    }
    char returnPrefix[96], returned[96] = "(nothing)";
    snprintf(returnPrefix, sizeof returnPrefix, "slow_return %s ", tag->text);
    record_find(returnPrefix, returned, sizeof returned);
    note("%s: wrapper.py recorded \"%s\"; wrapperExecAsync returned %d (%s) after %.0f ms%s; %d callback(s)%s%s; "
         "wrapperFini took %.0f ms",
         tag->text, returned, tag->asyncCode, tag->asyncCode ? error_text(tag->asyncCode) : "ok",
         (double)(tag->returnedNs - tag->enteredNs) / 1e6,
         seen.callbacks && tag->returnedNs < seen.firstNs + 500000000LL ? " (its 22018 callback still blocking)" : "",
         seen.callbacks, seen.callbacks ? ", ret " : "", seen.callbacks ? error_text(seen.firstRet) : "",
         (double)(finiReturned - finiStarted) / 1e6);
    if (returnedBeforeFini) {
        fail("%s: wrapperExecAsync had returned before wrapperFini was called: the race was not exercised",
             tag->text);
    }
    if (seen.callbacks > 1) fail("%s: %d callbacks, expected at most 1", tag->text, seen.callbacks);
    if (seen.callbacks >= 1 && tag->asyncCode != 0) {
        fail("%s: two outcomes: a callback with ret %d came during wrapperFini, and wrapperExecAsync returned %d (%s) "
             "too (it must return 0 once the request was answered)",
             tag->text, seen.firstRet, tag->asyncCode, error_text(tag->asyncCode));
    }
    if (seen.callbacks == 0 && tag->asyncCode == 0) {
        fail("%s: no outcome: wrapperExecAsync returned 0 but no callback came before wrapperFini returned", tag->text);
    }
    if (seen.callbacks >= 1 && seen.firstRet != SHUT_DOWN_RET) {
        fail("%s: its callback had ret %d (%s), expected %d (wrapper.py never delivers)", tag->text, seen.firstRet,
             error_text(seen.firstRet), SHUT_DOWN_RET);
    }
    if (seen.callbacks >= 1 && seen.firstNs > finiReturned) {
        fail("%s: its callback started %.1f ms after wrapperFini returned", tag->text,
             (double)(seen.firstNs - finiReturned) / 1e6);
    }
}

void scenario_fini_race(void) {
    fini_race_round("5");
    if (abandoned()) return;
    fini_race_round("0");
}

/* ------------------------------------------------------------------------------------------------
 * fini-after-held: wrapperOnceExecAsync delivers its result inside the call (mode "deliver_ok"),
 * so the plugin holds it until the call returned 0 and then passes it on from another thread. The
 * loader callback blocks 300 ms. wrapperFini is called right after wrapperExecAsync returned
 * (after 0, 10 and 100 ms: before the held result started on its way, while it starts, and while
 * its callback blocks): when wrapperFini returns, no callback may still be running, none may start
 * later, and the request gets exactly one callback — its own result, which was already on its way.
 */

static void block_300_hook(Tag *tag, int call, pDataList respData, int ret) {
    (void)tag, (void)call, (void)respData, (void)ret;
    sleep_ms(300);
}

void scenario_fini_after_held(void) {
    static const int delays[] = {0, 10, 100};
    for (int round = 0; round < 3; round++) {
        if (init_plugin() != 0) return;
        Tag *tag = tag_new("held-%d", round);
        tag->hook = block_300_hook;
        char payload[32], expected[40];
        snprintf(payload, sizeof payload, "held-%d", round);
        snprintf(expected, sizeof expected, "done:%s", payload);
        Pair mode = {"mode", "deliver_ok"};
        step("wrapperExecAsync %s (wrapper.py delivers inside the call; the callback blocks 300 ms)", tag->text);
        int code = send_async(tag, tag->text, &mode, 1, payload, 0);
        if (code != 0) fail("%s: wrapperExecAsync returned %d: %s", tag->text, code, error_text(code));
        if (delays[round] > 0) sleep_ms(delays[round]);

        step("wrapperFini %d ms after wrapperExecAsync of %s returned", delays[round], tag->text);
        int64_t finiStarted = now_ns();
        code = P.fini();
        int64_t finiReturned = now_ns();
        tracker_lock();
        Tag atReturn = *tag;
        tracker_unlock();
        if (code != 0) fail("wrapperFini returned %d: %s", code, error_text(code));
        if (atReturn.hooksRunning > 0) {
            fail("%s: its callback (started %.1f ms before) was still running when wrapperFini returned after %.1f ms",
                 tag->text, (double)(finiReturned - atReturn.firstNs) / 1e6,
                 (double)(finiReturned - finiStarted) / 1e6);
        }
        int total = tracker_total();
        step("listening 400 ms after wrapperFini returned");
        sleep_ms(400);
        TagSet set = {&tag, 1};
        if (tracker_total() != total) {
            fail("%d callback(s) started after wrapperFini returned", tracker_total() - total);
        }
        if (atReturn.callbacks > 0 && !tracker_wait(all_hooks_done, &set, 3000)) {
            fail("%s: its callback did not return", tag->text);
            abandon();
            return;
        }
        tracker_lock();
        Tag seen = *tag;
        const NodeCopy *node = list_find(&tag->output, "result");
        int good = node != NULL && node->len == strlen(expected) && memcmp(node->data, expected, node->len) == 0;
        tracker_unlock();
        note("wrapperFini %d ms after the call: it took %.1f ms; %d callback(s) by its return, %d in all (ret %d)",
             delays[round], (double)(finiReturned - finiStarted) / 1e6, atReturn.callbacks, seen.callbacks,
             seen.firstRet);
        if (seen.callbacks != 1) {
            fail("%s: %d callbacks, expected exactly 1", tag->text, seen.callbacks);
        } else if (seen.firstRet != 0 || !good) {
            fail("%s: its callback had ret %d (%s)%s, expected its own result \"%s\" (delivered before the call "
                 "returned 0, so already on its way)",
                 tag->text, seen.firstRet, error_text(seen.firstRet), good ? "" : " and no matching \"result\"",
                 expected);
        }
    }
}

/* ------------------------------------------------------------------------------------------------
 * fini-waits-fallback (fixture faults_sync_only): an async request is served by the fallback
 * worker running wrapper.py's wrapperOnceExec, which sleeps 500 ms and then uses the model that
 * wrapper.py's wrapperFini closes. wrapperFini is called while it sleeps: it must end the request
 * (one callback, before it returns) and run wrapper.py's wrapperFini only after that wrapperOnceExec
 * returned (the record file has "exec_end" before "fini", and no "exec_model_closed"), and return 0.
 */

void scenario_fini_waits_fallback(void) {
    if (init_plugin() != 0) return;
    Tag *tag = tag_new("fallback-running");
    Pair extra[] = {{"block", "1"}, {"sleep_s", "0.5"}, {"use_model", "1"}};
    step("wrapperExecAsync %s (the fallback wrapperOnceExec sleeps 500 ms, then uses the model)", tag->text);
    int code = send_async(tag, tag->text, extra, 3, "payload", 0);
    if (code != 0) {
        fail("wrapperExecAsync returned %d: %s", code, error_text(code));
        fini_plugin();
        return;
    }
    char started[96], ended[96], closed[96];
    snprintf(started, sizeof started, "exec_start %s", tag->text);
    snprintf(ended, sizeof ended, "exec_end %s", tag->text);
    snprintf(closed, sizeof closed, "exec_model_closed %s", tag->text);
    step("waiting for the fallback wrapperOnceExec to start");
    if (!wait_record(started, 3000)) fail("the fallback wrapperOnceExec did not start within 3 s");

    step("wrapperFini while the fallback wrapperOnceExec sleeps");
    int64_t finiStarted = now_ns();
    code = P.fini();
    int64_t finiReturned = now_ns();
    double took = (double)(finiReturned - finiStarted) / 1e6;
    tracker_lock();
    Tag atReturn = *tag;
    tracker_unlock();
    int execEnd = record_line(ended), fini = record_line("fini"), usedClosed = record_line(closed);
    note("wrapperFini returned %d after %.0f ms; record: exec_end at line %d, fini at line %d%s", code, took,
         execEnd, fini, usedClosed ? ", exec_model_closed" : "");
    if (code != 0) fail("wrapperFini returned %d: %s", code, error_text(code));
    if (usedClosed) {
        fail("wrapper.py's wrapperFini ran while the fallback wrapperOnceExec was still running: it found the model "
             "closed (record line %d)", usedClosed);
    }
    if (fini == 0) {
        fail("wrapper.py's wrapperFini did not run before wrapperFini returned");
    } else if (execEnd == 0) {
        fail("the fallback wrapperOnceExec had not finished when wrapperFini returned after %.0f ms (wrapper.py's "
             "wrapperFini ran at record line %d)", took, fini);
    } else if (execEnd > fini) {
        fail("wrapper.py's wrapperFini (record line %d) ran before the fallback wrapperOnceExec returned (line %d)",
             fini, execEnd);
    }
    if (atReturn.callbacks != 1) {
        fail("%s: %d callback(s) by the time wrapperFini returned, expected exactly 1", tag->text, atReturn.callbacks);
    } else if (atReturn.firstRet != SHUT_DOWN_RET && atReturn.firstRet != 0) {
        fail("%s: its callback had ret %d (%s), expected %d or its result", tag->text, atReturn.firstRet,
             error_text(atReturn.firstRet), SHUT_DOWN_RET);
    }
    int total = tracker_total();
    step("listening 300 ms after wrapperFini returned");
    sleep_ms(300);
    if (tracker_total() != total) fail("%d callback(s) came after wrapperFini returned", tracker_total() - total);
}
