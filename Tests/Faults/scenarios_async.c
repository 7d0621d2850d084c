/*
 * Async scenarios: wrapperExecAsync results, failures, nested calls and timeouts. Fixtures:
 * Tests/Fixtures/faults (wrapperOnceExecAsync, behaviour by param "mode") and
 * Tests/Fixtures/faults_sync_only (only wrapperOnceExec: the plugin's fallback workers serve it).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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
   `earliestMs`); prints the worst lateness among the callbacks that came. Tag i's timeout is
   each[i] when `each` is not NULL, else timeoutMs. */
static void check_timeouts_each(Tag **tags, int count, int timeoutMs, const int *each, int slackMs, int earliestMs) {
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
        double lateness = after - (each != NULL ? each[i] : timeoutMs);
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

static void check_timeouts(Tag **tags, int count, int timeoutMs, int slackMs, int earliestMs) {
    check_timeouts_each(tags, count, timeoutMs, NULL, slackMs, earliestMs);
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

/* ------------------------------------------------------------------------------------------------
 * timer-leak: 100 requests with a 1 ms timeout that wrapper.py never answers, while a Python
 * thread keeps the GIL busy (mode "spin"), so each wrapperExecAsync waits for the GIL for up to a
 * switch interval (5 ms) and its timeout passes while the call still runs. Every request gets one
 * 22012, and once the last one came, the plugin holds nothing for them: wrapperDebugInfo(NULL)
 * shows "async_pending": 0 and "timers": 0 (re-checked for at most 500 ms), and 10 new requests
 * reusing their sids and usrTags each get their own result by callback(resp, usrTag).
 */

/* The integer after "\"key\":" in a JSON text, or -1. */
static long json_int(const char *json, const char *key) {
    char quoted[64];
    snprintf(quoted, sizeof quoted, "\"%s\":", key);
    const char *found = json != NULL ? strstr(json, quoted) : NULL;
    if (found == NULL) return -1;
    char *end = NULL;
    long value = strtol(found + strlen(quoted), &end, 10);
    return end == found + strlen(quoted) ? -1 : value;
}

void scenario_timer_leak(void) {
    enum { COUNT = 100, RECHECK_MS = 500 };
    if (init_plugin() != 0) return;
    Tag *tags[COUNT];
    Pair mode = {"mode", "spin"};
    int slowCalls = 0, failed = 0;
    step("%d wrapperExecAsync calls with timeout 1 ms while a Python thread keeps the GIL busy", COUNT);
    for (int i = 0; i < COUNT; i++) {
        tags[i] = tag_new("leak-%d", i);
        int code = send_async(tags[i], tags[i]->text, &mode, 1, "never", 1);
        if (code != 0 && failed++ == 0) {
            fail("%s: wrapperExecAsync returned %d: %s", tags[i]->text, code, error_text(code));
        }
        if (tags[i]->returnedNs - tags[i]->enteredNs > 1000000) slowCalls++;
        sleep_ms(1); /* the spinner takes the GIL back meanwhile: the next call waits for it */
    }
    note("%d of %d wrapperExecAsync calls took longer than their 1 ms timeout (GIL busy)", slowCalls, COUNT);
    if (slowCalls == 0) fail("no wrapperExecAsync call outlived its 1 ms timeout: nothing raced, nothing was tested");
    TagSet all = {tags, COUNT};
    step("waiting for %d timeout callbacks", COUNT);
    tracker_wait(all_hooks_done, &all, 5000); /* the callbacks have returned */
    int missing = 0, extra = 0, wrong = 0;
    for (int i = 0; i < COUNT; i++) {
        Tag seen = snapshot(tags[i]);
        if (seen.callbacks == 0) missing++;
        if (seen.callbacks > 1) extra++;
        if (seen.callbacks > 0 && seen.firstRet != TIMEOUT_RET && wrong++ == 0) {
            fail("%s: callback ret %d (%s), expected %d", tags[i]->text, seen.firstRet, error_text(seen.firstRet),
                 TIMEOUT_RET);
        }
    }
    if (missing > 0) fail("%d of %d requests got no callback within 5 s", missing, COUNT);
    if (extra > 0) fail("%d of %d requests got more than one callback", extra, COUNT);

    step("wrapperDebugInfo(NULL) after the last timeout callback");
    int64_t lastCallback = tracker_last_ns();
    const char *state = P.debugInfo(NULL);
    long pending = json_int(state, "async_pending"), timers = json_int(state, "timers");
    int64_t firstCheck = now_ns();
    while ((pending != 0 || timers != 0) && ms_since(firstCheck) < RECHECK_MS) {
        sleep_ms(20);
        state = P.debugInfo(NULL);
        pending = json_int(state, "async_pending");
        timers = json_int(state, "timers");
    }
    note("%.0f ms after the last callback: %s", (double)(now_ns() - lastCallback) / 1e6, state ? state : "(NULL)");
    if (pending != 0 || timers != 0) {
        fail("after all %d requests timed out, wrapperDebugInfo(NULL) still shows async_pending %ld and timers %ld "
             "(%d ms later): the plugin leaked what it kept for them",
             COUNT, pending, timers, RECHECK_MS);
    }

    /* The sids and usrTags of expired requests are free again: new requests using them get their
       results by callback(resp, usrTag). A tag an expired request left behind would make that lookup
       ambiguous (22015 to wrapper.py, the result dropped), and the request would time out instead. */
    enum { REUSE = 10 };
    Tag *again[REUSE];
    Pair pool = {"mode", "pool"};
    step("%d new requests reusing the sids and usrTags of expired ones", REUSE);
    for (int i = 0; i < REUSE; i++) {
        again[i] = tag_new("leak-%d", i * (COUNT / REUSE)); /* the tracker now matches this one */
        char payload[32];
        snprintf(payload, sizeof payload, "again-%d", i);
        int code = send_async(again[i], again[i]->text, &pool, 1, payload, 2000);
        if (code != 0) fail("%s (again): wrapperExecAsync returned %d: %s", again[i]->text, code, error_text(code));
    }
    TagSet reused = {again, REUSE};
    tracker_wait(all_finished, &reused, 3000);
    sleep_ms(100); /* a second callback would come now */
    for (int i = 0; i < REUSE; i++) {
        char expected[32];
        snprintf(expected, sizeof expected, "async:again-%d", i);
        expect_one_result(again[i], 0, expected);
    }
    int delivered = record_count("cb_ret pool "), refused = delivered - record_count("cb_ret pool 0");
    note("the %d requests reusing expired sids: wrapper.py's callback(resp, usrTag) returned 0 %d time(s), an error "
         "%d time(s)", REUSE, delivered - refused, refused);
    fini_plugin();
}

/* ------------------------------------------------------------------------------------------------
 * runner-starve: one expired request first (timeout 100 ms), whose callback blocks 300 ms: when it
 * returned, the plugin's callback runner pool has a warm idle thread. Then 100 requests that are
 * never answered (mode "silent": the calls return at once), sent one a millisecond with timeouts
 * from 150 down to 51 ms, so that all expire together (the timeouts reach the runner pool in one
 * burst, faster than an idle thread wakes up), and whose callbacks block 300 ms each. No timeout
 * may queue behind a blocked callback on that warm thread: every 22012 starts at most 100 ms after
 * its deadline.
 */

/* Sleeps until 200 us before `deadline` (monotonic ns), then spins: wakes to the microsecond. */
static void wait_until_ns(int64_t deadline) {
    while (deadline - now_ns() > 200000) {
        struct timespec pause = {0, 100000};
        nanosleep(&pause, NULL);
    }
    while (now_ns() < deadline) {
    }
}

void scenario_runner_starve(void) {
    enum { COUNT = 100, TIMEOUT = 100, DEADLINE = 150, SLACK = 100 };
    if (init_plugin() != 0) return;
    Pair mode = {"mode", "silent"}; /* calls that return at once: precise send times */
    Tag *warm = tag_new("starve-warm");
    warm->hook = sleep_hook;
    step("warm-up: one request expiring after %d ms; its callback blocks 300 ms", TIMEOUT);
    int code = send_async(warm, warm->text, &mode, 1, "never", TIMEOUT);
    if (code != 0) fail("%s: wrapperExecAsync returned %d: %s", warm->text, code, error_text(code));
    TagSet warmSet = {&warm, 1};
    if (!tracker_wait(all_hooks_done, &warmSet, 3000)) {
        fail("the warm-up request's callback had not returned 3 s after the request");
        abandon();
        return;
    }
    check_timeouts(&warm, 1, TIMEOUT, SLACK, 0);

    Tag *tags[COUNT];
    int timeouts[COUNT];
    step("%d wrapperExecAsync calls, one a millisecond, all expiring %d ms from now; callbacks block 300 ms", COUNT,
         DEADLINE);
    int64_t burst = now_ns();
    for (int i = 0; i < COUNT; i++) {
        tags[i] = tag_new("starve-%d", i);
        tags[i]->hook = sleep_hook;
        /* Sent at burst + i ms (to the microsecond) with timeout DEADLINE - i ms: one deadline. */
        int64_t at = burst + (int64_t)i * 1000000LL;
        wait_until_ns(at);
        timeouts[i] = DEADLINE - i;
        code = send_async(tags[i], tags[i]->text, &mode, 1, "never", timeouts[i]);
        if (code != 0) fail("%s: wrapperExecAsync returned %d: %s", tags[i]->text, code, error_text(code));
    }
    int64_t earliest = INT64_MAX, latest = 0;
    for (int i = 0; i < COUNT; i++) {
        int64_t deadline = tags[i]->enteredNs + (int64_t)timeouts[i] * 1000000LL;
        if (deadline < earliest) earliest = deadline;
        if (deadline > latest) latest = deadline;
    }
    note("the %d deadlines lie within %.0f us", COUNT, (double)(latest - earliest) / 1e3);
    TagSet all = {tags, COUNT};
    step("waiting for %d timeout callbacks", COUNT);
    tracker_wait(all_called, &all, 5000);
    check_timeouts_each(tags, COUNT, DEADLINE, timeouts, SLACK, 0);
    if (failures() > 0) {
        abandon(); /* late callbacks may still be queued behind blocked ones for long: do not wait */
        return;
    }
    step("waiting for the blocking callbacks to return");
    if (!tracker_wait(all_hooks_done, &all, 40000)) {
        fail("the timeout callbacks had not all returned");
        abandon();
        return;
    }
    fini_plugin();
}

/* ------------------------------------------------------------------------------------------------
 * fallback-backlog-memory (fixture faults_sync_only, async.fallback_threads=1): a wrapper without
 * wrapperOnceExecAsync, served by one fallback thread; its wrapperOnceExec takes 4 ms. 256 KiB
 * requests keep 10 waiting at all times for backlog.seconds (4), so the fallback queue never
 * drains. What a request holds must be released when it has run: RSS may grow at most
 * backlog.rss_mib (40) MiB between a 1 s warm-up and the end (the peak counts; a plugin that keeps
 * each served request's 256 KiB until the queue drains grows by about 50 MiB a second here).
 * Every request gets exactly its own echo.
 */

enum { BACKLOG = 10, BACKLOG_BYTES = 256 * 1024 };

static unsigned char backlogPayload[BACKLOG_BYTES];

/* wrapperExecAsync of one 256 KiB node (the payload, its first 8 bytes replaced by the index). */
static int send_backlog_request(Tag *tag, int index) {
    char sid[32];
    snprintf(sid, sizeof sid, "%s", tag->text);
    Pair pairs[] = {{"sid", sid}, {"block", "1"}, {"sleep_s", "0.004"}};
    pParamList params = params_build(pairs, 3);
    char digits[16];
    snprintf(digits, sizeof digits, "%08d", index);
    memcpy(backlogPayload, digits, 8);
    pDataList request = data_build("audio", backlogPayload, BACKLOG_BYTES, DataAudio, DataOnce, NULL);
    tag->enteredNs = now_ns();
    int code = P.execAsync(tag->text, params, request, tracker_callback, 0, NULL, 0);
    tag->returnedNs = now_ns();
    tag->asyncCode = code;
    params_free(params);
    data_free(request);
    return code;
}

/* Whether a request got exactly its own echo: "echo:" + its 256 KiB input. Writes why not. */
static int backlog_outcome_ok(Tag *tag, int index, char *why, size_t size) {
    tracker_lock();
    Tag seen = *tag;
    const NodeCopy *echo = list_find(&tag->output, "echo");
    char head[16];
    snprintf(head, sizeof head, "echo:%08d", index);
    int good = echo != NULL && echo->len == 5 + BACKLOG_BYTES && memcmp(echo->data, head, 13) == 0 &&
               memcmp(echo->data + 13, backlogPayload + 8, BACKLOG_BYTES - 8) == 0;
    size_t len = echo != NULL ? echo->len : 0;
    tracker_unlock();
    if (seen.callbacks != 1) {
        snprintf(why, size, "%s: %d callbacks, expected 1", tag->text, seen.callbacks);
    } else if (seen.firstRet != 0) {
        snprintf(why, size, "%s: callback ret %d (%s)", tag->text, seen.firstRet, error_text(seen.firstRet));
    } else if (!good) {
        snprintf(why, size, "%s: \"echo\" is %zu bytes, not \"echo:\" + its own %d-byte input", tag->text, len,
                 BACKLOG_BYTES);
    } else {
        return 1;
    }
    return 0;
}

typedef struct {
    Tag **slots;
} BacklogSlots;

/* Some in-flight request's callback has returned (or a slot is free). */
static int backlog_slot_done(void *argument) {
    Tag **slots = ((BacklogSlots *)argument)->slots;
    for (int i = 0; i < BACKLOG; i++) {
        if (slots[i] == NULL || (slots[i]->hooksDone > 0 && slots[i]->hooksRunning == 0)) return 1;
    }
    return 0;
}

void scenario_fallback_backlog_memory(void) {
    int seconds = config_int("backlog.seconds", 4), limitMiB = config_int("backlog.rss_mib", 40);
    const int warmMs = 1000;
    if (init_plugin() != 0) return;
    for (int i = 0; i < BACKLOG_BYTES; i++) backlogPayload[i] = (unsigned char)(i * 131 + 17);
    static Tag *slots[BACKLOG];
    static int indexes[BACKLOG];
    BacklogSlots set = {slots};
    int issued = 0, completed = 0, bad = 0, sendFailed = 0;
    long rssWarm = -1, rssPeak = -1;
    int completedWarm = 0;
    char why[300];
    int64_t started = now_ns(), lastSample = 0;
    step("keeping %d requests of %d KiB waiting for one fallback thread for %d s", BACKLOG, BACKLOG_BYTES / 1024,
         seconds);
    while (ms_since(started) < seconds * 1000.0) {
        for (int i = 0; i < BACKLOG; i++) {
            Tag *tag = slots[i];
            if (tag != NULL) {
                tracker_lock();
                int done = tag->hooksDone > 0 && tag->hooksRunning == 0;
                tracker_unlock();
                if (!done) continue;
                if (!backlog_outcome_ok(tag, indexes[i], why, sizeof why) && bad++ == 0) fail("%s", why);
                completed++;
                tag_retire(tag); /* frees its copy of the output */
            }
            slots[i] = tag_new("backlog-%d", issued);
            indexes[i] = issued;
            int code = send_backlog_request(slots[i], issued++);
            if (code != 0) {
                if (sendFailed++ == 0) {
                    fail("%s: wrapperExecAsync returned %d: %s", slots[i]->text, code, error_text(code));
                }
                tag_retire(slots[i]);
                slots[i] = NULL;
            }
        }
        if (ms_since(lastSample) >= 50) {
            lastSample = now_ns();
            long rss = rss_kib();
            if (rssWarm < 0 && ms_since(started) >= warmMs) {
                rssWarm = rssPeak = rss;
                completedWarm = completed;
            } else if (rssWarm >= 0 && rss > rssPeak) {
                rssPeak = rss;
            }
        }
        tracker_wait(backlog_slot_done, &set, 20);
    }
    long rssEnd = rss_kib();
    if (rssEnd > rssPeak) rssPeak = rssEnd;
    const char *state = P.debugInfo(NULL);
    note("at the end: %s", state ? state : "(NULL)");
    step("waiting for the last %d requests", BACKLOG);
    for (int i = 0; i < BACKLOG; i++) {
        if (slots[i] == NULL) continue;
        TagSet one = {&slots[i], 1};
        if (!tracker_wait(all_hooks_done, &one, 5000)) {
            fail("%s: no callback within 5 s after the run", slots[i]->text);
            continue;
        }
        if (!backlog_outcome_ok(slots[i], indexes[i], why, sizeof why) && bad++ == 0) fail("%s", why);
        completed++;
    }
    long growth = rssPeak - rssWarm;
    note("%d requests served in %.1f s (%d after the warm-up); rss %ld KiB after the %d ms warm-up, peak %ld KiB "
         "(%+ld KiB; limit %d MiB)",
         completed, ms_since(started) / 1000, completed - completedWarm, rssWarm, warmMs, rssPeak, growth, limitMiB);
    if (bad > 1) fail("%d of %d requests did not get exactly their own echo", bad, completed);
    if (completed - completedWarm < 100) {
        fail("only %d requests were served after the warm-up: the backlog was not exercised",
             completed - completedWarm);
    }
    if (rssWarm < 0 || rssPeak < 0) {
        fail("could not read RSS from /proc/self/statm");
    } else if (growth > (long)limitMiB * 1024) {
        fail("RSS grew by %ld KiB (%ld -> peak %ld KiB) over %d requests after the warm-up while %d always waited "
             "(limit %d MiB): served requests are not released",
             growth, rssWarm, rssPeak, completed - completedWarm, BACKLOG, limitMiB);
    }
    fini_plugin();
}
