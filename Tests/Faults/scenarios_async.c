/*
 * Async scenarios: wrapperExecAsync results, failures, nested calls and timeouts. Fixtures:
 * Tests/Fixtures/faults (wrapperOnceExecAsync, behaviour by param "mode") and
 * Tests/Fixtures/faults_sync_only (only wrapperOnceExec: the plugin's fallback workers serve it).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "faults.h"

#define TIMEOUT_RET 22012

/* A snapshot of a tag's recorded fields. */
static Tag snapshot(Tag *tag) {
    tracker_lock();
    Tag copy = *tag;
    tracker_unlock();
    return copy;
}

/* Exactly one callback, with `ret`; with `expected`, one node "result" holding exactly it, final. */
static void expect_one_result(Tag *tag, int ret, const char *expected) {
    Tag seen = snapshot(tag);
    if (seen.callbacks != 1) {
        fail("%s: %d callback(s), expected exactly 1", tag->text, seen.callbacks);
        if (seen.callbacks == 0) return;
    }
    if (seen.firstRet != ret) {
        fail("%s: callback ret %d (%s), expected %d", tag->text, seen.firstRet, error_text(seen.firstRet), ret);
    }
    if (seen.wrongPointer > 0) fail("%s: the callback's usrTag was not the pointer given", tag->text);
    if (expected == NULL) return;
    tracker_lock();
    const NodeCopy *node = list_find(&tag->output, "result");
    if (node == NULL) {
        fail("%s: no \"result\" node in its callback", tag->text);
    } else if (node->len != strlen(expected) || memcmp(node->data, expected, node->len) != 0) {
        fail("%s: got \"%.*s\", expected \"%s\"", tag->text, (int)node->len, (const char *)node->data, expected);
    } else if (node->status != DataOnce && node->status != DataEnd) {
        fail("%s: result status %d is not final (DataOnce/DataEnd)", tag->text, node->status);
    }
    tracker_unlock();
}

/* ------------------------------------------------------------------------------------------------
 * async-fail-after-deliver: wrapperOnceExecAsync calls callback(resp, usrTag) and then returns 5.
 * The loader takes the 5 from wrapperExecAsync as the request's outcome, so no callback may run.
 */

void scenario_async_fail_after_deliver(void) {
    if (init_plugin() != 0) return;
    Tag *tag = tag_new("fail-after-deliver");
    Pair mode = {"mode", "deliver_fail"};
    step("wrapperExecAsync (wrapper.py delivers, then returns 5)");
    int code = send_async(tag, tag->text, &mode, 1, "payload", 0);
    if (code != 5) fail("wrapperExecAsync returned %d (%s), expected wrapper.py's 5", code, error_text(code));
    step("listening 500 ms for a callback that must not come");
    sleep_ms(500);
    int callbacks = snapshot(tag).callbacks;
    if (callbacks > 0) fail("%d callback(s) ran for a request whose wrapperExecAsync returned %d", callbacks, code);
    char line[200];
    if (record_find("cb_ret deliver_fail", line, sizeof line)) note("wrapper.py: %s", line);
    fini_plugin();
    if (snapshot(tag).callbacks > callbacks) fail("a callback ran during wrapperFini for the failed request");
}

/* The variant: a Python thread delivers while wrapperOnceExecAsync still runs, then the method
 * returns 5. The loader callback, if it ever runs, blocks until wrapperExecAsync has returned (as a
 * loader would that registers the request only after the call): wrapperExecAsync must still
 * return 5 within 2 s, and no callback may run. */

typedef struct {
    int returned;
} ReturnContext;

static int async_returned(void *context) { return ((ReturnContext *)context)->returned; }

static void wait_for_return_hook(Tag *tag, int call, pDataList respData, int ret) {
    (void)call, (void)respData, (void)ret;
    step("callback of %s waiting for wrapperExecAsync to return", tag->text);
    tracker_wait(async_returned, tag->context, 5000);
}

void scenario_async_fail_after_deliver_thread(void) {
    if (init_plugin() != 0) return;
    static ReturnContext context;
    Tag *tag = tag_new("fail-after-thread");
    tag->hook = wait_for_return_hook;
    tag->context = &context;
    Pair mode = {"mode", "thread_fail"};
    step("wrapperExecAsync (a Python thread delivers while the method runs; it returns 5)");
    int code = send_async(tag, tag->text, &mode, 1, "payload", 0);
    tracker_lock();
    context.returned = 1;
    tracker_unlock();
    tracker_notify();
    double took = (double)(tag->returnedNs - tag->enteredNs) / 1e6;
    if (code != 5) fail("wrapperExecAsync returned %d (%s), expected wrapper.py's 5", code, error_text(code));
    if (took > 2000) fail("wrapperExecAsync took %.0f ms to return (limit 2000)", took);
    note("wrapperExecAsync returned %d after %.1f ms", code, took);
    step("listening 500 ms for a callback that must not come");
    sleep_ms(500);
    Tag seen = snapshot(tag);
    if (seen.callbacks > 0) {
        fail("%d callback(s) ran for a request whose wrapperExecAsync returned %d", seen.callbacks, code);
    }
    TagSet set = {&tag, 1};
    if (seen.callbacks > 0 && !tracker_wait(all_hooks_done, &set, 3000)) {
        fail("the callback did not return");
        abandon();
        return;
    }
    char line[200];
    if (record_find("cb_ret thread_fail", line, sizeof line)) note("wrapper.py: %s", line);
    fini_plugin();
}

/* ------------------------------------------------------------------------------------------------
 * async-deliver-then-ok: wrapperOnceExecAsync delivers synchronously and returns 0: exactly one
 * callback, ret 0, with this request's data.
 */

void scenario_async_deliver_then_ok(void) {
    if (init_plugin() != 0) return;
    enum { COUNT = 3 };
    Tag *tags[COUNT];
    Pair mode = {"mode", "deliver_ok"};
    for (int i = 0; i < COUNT; i++) {
        tags[i] = tag_new("deliver-ok-%d", i);
        char payload[32];
        snprintf(payload, sizeof payload, "payload-%d", i);
        step("wrapperExecAsync %s (wrapper.py delivers, then returns 0)", tags[i]->text);
        int code = send_async(tags[i], tags[i]->text, &mode, 1, payload, 0);
        if (code != 0) fail("%s: wrapperExecAsync returned %d: %s", tags[i]->text, code, error_text(code));
    }
    TagSet set = {tags, COUNT};
    step("waiting for the results");
    tracker_wait(all_finished, &set, 2000);
    sleep_ms(300); /* a second callback would come now */
    for (int i = 0; i < COUNT; i++) {
        char expected[32];
        snprintf(expected, sizeof expected, "done:payload-%d", i);
        expect_one_result(tags[i], 0, expected);
    }
    fini_plugin();
}

/* ------------------------------------------------------------------------------------------------
 * async-callback-calls-plugin: each async callback (delivered from a Python thread) calls
 * wrapperExecAsync for a new request (answered synchronously, so its callback runs nested inside
 * this one), wrapperExec and wrapperDebugInfo(NULL). Every request gets exactly one callback.
 */

enum { OUTER = 4 };

typedef struct {
    Tag *inner;
    char why[300];
} NestContext;

static void nest_hook(Tag *tag, int call, pDataList respData, int ret) {
    (void)respData, (void)ret;
    if (call != 1) return;
    NestContext *context = tag->context;
    char payload[64];
    snprintf(payload, sizeof payload, "inner-of-%s", tag->text);
    Tag *inner = tag_new("%s-inner", tag->text);
    step("wrapperExecAsync from inside the callback of %s", tag->text);
    Pair mode = {"mode", "deliver_ok"};
    int code = send_async(inner, inner->text, &mode, 1, payload, 0);
    if (code != 0) fail("%s: wrapperExecAsync inside the callback returned %d: %s", tag->text, code, error_text(code));
    step("wrapperExec from inside the callback of %s", tag->text);
    char why[300], usrTag[80];
    snprintf(usrTag, sizeof usrTag, "%s-exec", tag->text);
    if (exec_echo(usrTag, "nested", why, sizeof why) != 0) {
        fail("%s: wrapperExec inside the callback: %s", tag->text, why);
    }
    step("wrapperDebugInfo(NULL) from inside the callback of %s", tag->text);
    const char *text = P.debugInfo(NULL);
    if (text == NULL) fail("%s: wrapperDebugInfo(NULL) inside the callback returned NULL", tag->text);
    tracker_lock();
    context->inner = inner;
    tracker_unlock();
}

void scenario_async_callback_calls_plugin(void) {
    if (init_plugin() != 0) return;
    static NestContext contexts[OUTER];
    Tag *outer[OUTER];
    Pair mode = {"mode", "pool"};
    for (int i = 0; i < OUTER; i++) {
        outer[i] = tag_new("outer-%d", i);
        outer[i]->hook = nest_hook;
        outer[i]->context = &contexts[i];
        char payload[32];
        snprintf(payload, sizeof payload, "outer-%d", i);
        step("wrapperExecAsync %s", outer[i]->text);
        int code = send_async(outer[i], outer[i]->text, &mode, 1, payload, 0);
        if (code != 0) fail("%s: wrapperExecAsync returned %d: %s", outer[i]->text, code, error_text(code));
    }
    TagSet set = {outer, OUTER};
    step("waiting for the outer callbacks (each calls into the plugin)");
    if (!tracker_wait(all_hooks_done, &set, 5000)) {
        fail("the outer callbacks had not all returned within 5 s");
        abandon();
        return;
    }
    Tag *inner[OUTER];
    int innerCount = 0;
    for (int i = 0; i < OUTER; i++) {
        if (contexts[i].inner != NULL) inner[innerCount++] = contexts[i].inner;
    }
    TagSet innerSet = {inner, innerCount};
    step("waiting for the nested requests' results");
    tracker_wait(all_finished, &innerSet, 2000);
    sleep_ms(300); /* a second callback would come now */
    for (int i = 0; i < OUTER; i++) {
        char expected[64];
        snprintf(expected, sizeof expected, "async:outer-%d", i);
        expect_one_result(outer[i], 0, expected);
        if (contexts[i].inner == NULL) continue;
        snprintf(expected, sizeof expected, "done:inner-of-outer-%d", i);
        expect_one_result(contexts[i].inner, 0, expected);
    }
    if (tracker_unknown() > 0) fail("%d callback(s) with an unknown usrTag", tracker_unknown());
    fini_plugin();
}

/* ------------------------------------------------------------------------------------------------
 * Timeouts. Lateness is measured per request from the moment its wrapperExecAsync was entered to
 * the moment its 22012 callback started, minus the timeout.
 */

/* Checks every tag got exactly one 22012 whose start was at most `slackMs` late (and not before
   `earliestMs`); prints the worst lateness among the callbacks that came. */
static void check_timeouts(Tag **tags, int count, int timeoutMs, int slackMs, int earliestMs) {
    double worst = 0;
    int missing = 0, late = 0, early = 0, wrong = 0, extra = 0;
    const char *firstLate = NULL;
    double firstLateMs = 0;
    for (int i = 0; i < count; i++) {
        Tag seen = snapshot(tags[i]);
        if (seen.callbacks == 0) {
            missing++;
            continue;
        }
        if (seen.callbacks > 1) extra++;
        if (seen.firstRet != TIMEOUT_RET) {
            if (wrong++ == 0) fail("%s: callback ret %d (%s), expected %d", tags[i]->text, seen.firstRet,
                                   error_text(seen.firstRet), TIMEOUT_RET);
        }
        double after = (double)(seen.firstNs - tags[i]->enteredNs) / 1e6;
        double lateness = after - timeoutMs;
        if (lateness > worst) worst = lateness;
        if (lateness > slackMs && late++ == 0) firstLate = tags[i]->text, firstLateMs = after;
        if (after < earliestMs) early++;
    }
    if (missing < count) {
        note("%d of %d timeout callbacks came; worst lateness %.1f ms (limit %d ms)", count - missing, count, worst,
             slackMs);
    } else {
        note("none of %d timeout callbacks came", count);
    }
    if (missing > 0) fail("%d of %d requests got no callback", missing, count);
    if (late > 0) {
        fail("%d of %d timeout callbacks started more than %d ms after their timeout (first: %s after %.0f ms; "
             "worst lateness %.0f ms)", late, count, slackMs, firstLate, firstLateMs, worst);
    }
    if (early > 0) fail("%d of %d timeout callbacks came less than %d ms after the request", early, count, earliestMs);
    if (wrong > 1) fail("%d of %d callbacks carried a ret other than %d", wrong, count, TIMEOUT_RET);
    if (extra > 0) fail("%d of %d requests got more than one callback", extra, count);
}

/* async-timeout-busy-fallback: 12, then 5 more, requests with timeout 300 ms to a wrapper whose
 * wrapperOnceExec blocks 5 s (served by at most async.fallback_threads = 4 workers). Every request
 * gets one 22012 at most 100 ms late; wrapperFini returns, and no callback comes after it. */
void scenario_async_timeout_busy_fallback(void) {
    enum { FIRST = 12, SECOND = 5, TIMEOUT = 300, SLACK = 100 };
    if (init_plugin() != 0) return;
    Tag *tags[FIRST + SECOND];
    Pair block = {"block", "1"};
    double slowestCall = 0;
    for (int i = 0; i < FIRST + SECOND; i++) {
        if (i == FIRST) {
            TagSet first = {tags, FIRST};
            step("waiting for the first %d requests' timeouts", FIRST);
            tracker_wait(all_called, &first, 1500);
        }
        tags[i] = tag_new("busy-%d", i);
        char payload[32];
        snprintf(payload, sizeof payload, "busy-%d", i);
        step("wrapperExecAsync %s (wrapperOnceExec blocks 5 s; timeout %d ms)", tags[i]->text, TIMEOUT);
        int code = send_async(tags[i], tags[i]->text, &block, 1, payload, TIMEOUT);
        if (code != 0) fail("%s: wrapperExecAsync returned %d: %s", tags[i]->text, code, error_text(code));
        double took = (double)(tags[i]->returnedNs - tags[i]->enteredNs) / 1e6;
        if (took > slowestCall) slowestCall = took;
    }
    TagSet all = {tags, FIRST + SECOND};
    step("waiting for all timeouts");
    tracker_wait(all_called, &all, 1500);
    check_timeouts(tags, FIRST + SECOND, TIMEOUT, SLACK, 0);
    note("slowest wrapperExecAsync call %.1f ms; wrapperOnceExec started %d time(s) so far", slowestCall,
         record_count("exec_start "));
    if (slowestCall > 250) fail("a wrapperExecAsync call took %.0f ms (it must return at once)", slowestCall);
    int64_t finiStarted = now_ns();
    fini_plugin();
    note("wrapperFini took %.0f ms", ms_since(finiStarted));
    int total = tracker_total();
    step("listening 500 ms after wrapperFini returned");
    sleep_ms(500);
    if (tracker_total() != total) fail("%d callback(s) after wrapperFini returned", tracker_total() - total);
    int extra = 0;
    for (int i = 0; i < FIRST + SECOND; i++) extra += snapshot(tags[i]).callbacks > 1;
    if (extra > 0) fail("%d request(s) got a second callback (a late result after the timeout)", extra);
}

/* async-timeout-blocking-callbacks: 100 requests that are never answered, timeout 200 ms; each
 * timeout callback sleeps 300 ms. Every callback must still start at most 100 ms late (the plugin
 * runs timeout callbacks concurrently). */

static void sleep_hook(Tag *tag, int call, pDataList respData, int ret) {
    (void)tag, (void)call, (void)respData, (void)ret;
    sleep_ms(300);
}

void scenario_async_timeout_blocking_callbacks(void) {
    enum { COUNT = 100, TIMEOUT = 200, SLACK = 100 };
    if (init_plugin() != 0) return;
    Tag *tags[COUNT];
    Pair mode = {"mode", "never"};
    step("100 wrapperExecAsync calls (never answered; timeout %d ms; callbacks sleep 300 ms)", TIMEOUT);
    for (int i = 0; i < COUNT; i++) {
        tags[i] = tag_new("blocking-%d", i);
        tags[i]->hook = sleep_hook;
        int code = send_async(tags[i], tags[i]->text, &mode, 1, "never", TIMEOUT);
        if (code != 0) fail("%s: wrapperExecAsync returned %d: %s", tags[i]->text, code, error_text(code));
    }
    TagSet all = {tags, COUNT};
    step("waiting for 100 timeout callbacks");
    tracker_wait(all_called, &all, 5000);
    check_timeouts(tags, COUNT, TIMEOUT, SLACK, 0);
    step("waiting for the sleeping callbacks to return");
    if (!tracker_wait(all_hooks_done, &all, 40000)) {
        fail("the timeout callbacks had not all returned");
        abandon();
        return;
    }
    fini_plugin();
}

/* async-default-timeout: with async.timeout_ms = 300, a request passed timeout 0 that is never
 * answered gets 22012 within 300 + 150 ms (and not before about 300 ms). */
void scenario_async_default_timeout(void) {
    enum { COUNT = 5, SLACK = 150 };
    const char *configured = config_value("async.timeout_ms");
    int timeout = configured ? atoi(configured) : 300;
    if (init_plugin() != 0) return;
    Tag *tags[COUNT];
    Pair mode = {"mode", "never"};
    for (int i = 0; i < COUNT; i++) {
        tags[i] = tag_new("default-timeout-%d", i);
        step("wrapperExecAsync %s with timeout 0", tags[i]->text);
        int code = send_async(tags[i], tags[i]->text, &mode, 1, "never", 0);
        if (code != 0) fail("%s: wrapperExecAsync returned %d: %s", tags[i]->text, code, error_text(code));
    }
    TagSet all = {tags, COUNT};
    step("waiting for the default timeout (async.timeout_ms=%d)", timeout);
    tracker_wait(all_called, &all, timeout + 2000);
    note("async.timeout_ms=%d", timeout);
    check_timeouts(tags, COUNT, timeout, SLACK, timeout - 50);
    fini_plugin();
}

/* ------------------------------------------------------------------------------------------------
 * async-duplicate-sid: two requests in flight share a sid. callback(resp, sid) is ambiguous:
 * wrapper.py gets 22015 and neither request gets that result; each then gets its own by usrTag.
 */

void scenario_async_duplicate_sid(void) {
    if (init_plugin() != 0) return;
    Tag *tags[2] = {tag_new("dup-a"), tag_new("dup-b")};
    const char *payloads[2] = {"A-data", "B-data"};
    Pair mode = {"mode", "dup_sid"};
    for (int i = 0; i < 2; i++) {
        step("wrapperExecAsync %s with sid dup-sid-1", tags[i]->text);
        int code = send_async(tags[i], "dup-sid-1", &mode, 1, payloads[i], 0);
        if (code != 0) fail("%s: wrapperExecAsync returned %d: %s", tags[i]->text, code, error_text(code));
    }
    TagSet all = {tags, 2};
    step("waiting for both results");
    tracker_wait(all_finished, &all, 3000);
    sleep_ms(300);
    for (int i = 0; i < 2; i++) {
        char expected[64];
        snprintf(expected, sizeof expected, "for-%s:%s", tags[i]->text, payloads[i]);
        expect_one_result(tags[i], 0, expected);
    }
    char line[200];
    if (!record_find("dup_sid_ret ", line, sizeof line)) {
        fail("wrapper.py recorded no callback(resp, sid) return code");
    } else if (strcmp(line, "dup_sid_ret 22015") != 0) {
        fail("callback(resp, sid) for a sid shared by two requests returned \"%s\" to Python, expected 22015",
             line + strlen("dup_sid_ret "));
    }
    fini_plugin();
}
