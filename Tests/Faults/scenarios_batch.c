/*
 * Batching scenarios (config batch.max_size; fixture Tests/Fixtures/batching): per-request errors
 * inside one wrapperOnceExecBatch call, a batch that raises or returns too few results, sync and
 * async requests in one batch, output memory of requests from one batch freed independently,
 * async timeouts while queued for a batch, and wrapperFini with a batch in flight and more queued.
 *
 * The fixture echoes each request's input node "input" under its own key, adds "via" = "batch" (or
 * "once" from wrapperOnceExec), and records each call as "batch N sid,sid,..." (param "mode" picks
 * per-request behaviour; config fixture.sleep_ms makes each batch call hold a lock that long).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "faults.h"

#define PYTHON_EXCEPTION 22004
#define BAD_RETURN_TYPE 22005
#define EMPTY_RESPONSE 22007
#define INVALID_OUTPUT 22008
#define TIMEOUT_RET 22012
#define SHUT_DOWN_RET 22018

/* One wrapperExec from its own loader thread, as the loader makes it. */
typedef struct {
    char sid[48];       /* params sid, also the usrTag */
    const char *mode;   /* params mode */
    const char *code;   /* params code (mode fail), or NULL */
    char text[64];      /* the input node "input" */
    int readDelayMs;    /* wait this long after wrapperExec returned before reading its output */
    int code_;          /* what wrapperExec returned */
    int freeCode;       /* what wrapperExecFree returned */
    char got[128];      /* output "input" */
    char via[16];       /* output "via" */
    size_t sharedLen;   /* output "shared": its length, and whether it held the fixture's pattern */
    int sharedIntact;
    int64_t returnedNs; /* when wrapperExec returned */
    pthread_t thread;
} SyncCall;

static void copy_node(const ListCopy *copy, const char *key, char *into, size_t size) {
    const NodeCopy *node = list_find(copy, key);
    snprintf(into, size, "%.*s", node ? (int)node->len : 7, node ? (const char *)node->data : "missing");
}

static void *sync_call_main(void *argument) {
    SyncCall *call = argument;
    Pair pairs[3] = {{"sid", call->sid}, {"mode", call->mode}, {"code", call->code ? call->code : "7"}};
    pParamList params = params_build(pairs, 3);
    pDataList request = data_text("input", call->text, DataOnce);
    pDataList response = NULL;
    char tag[48];
    snprintf(tag, sizeof tag, "%s", call->sid);
    call->code_ = P.exec(tag, params, request, &response, NULL, 0);
    call->returnedNs = now_ns();
    params_free(params); /* the loader frees its input at once: poisoned */
    data_free(request);
    if (call->readDelayMs > 0) sleep_ms(call->readDelayMs);
    ListCopy copy = {0};
    list_copy(response, &copy);
    copy_node(&copy, "input", call->got, sizeof call->got);
    copy_node(&copy, "via", call->via, sizeof call->via);
    const NodeCopy *shared = list_find(&copy, "shared");
    if (shared != NULL) {
        call->sharedLen = shared->len;
        call->sharedIntact = 1;
        for (size_t i = 0; i < shared->len; i++) {
            if (shared->data[i] != (unsigned char)(i % 256)) call->sharedIntact = 0;
        }
    }
    list_copy_clear(&copy);
    memset(tag, POISON, sizeof tag); /* the loader frees usrTag before wrapperExecFree */
    call->freeCode = response != NULL ? P.execFree(tag, &response) : 0;
    return NULL;
}

static void start_call(SyncCall *call, const char *sid, const char *mode, const char *code, int readDelayMs) {
    memset(call, 0, sizeof *call);
    snprintf(call->sid, sizeof call->sid, "%s", sid);
    snprintf(call->text, sizeof call->text, "text of %s", sid);
    call->mode = mode;
    call->code = code;
    call->readDelayMs = readDelayMs;
    if (pthread_create(&call->thread, NULL, sync_call_main, call) != 0) fail("cannot start a thread for %s", sid);
}

static int join_call(SyncCall *call) {
    char what[96];
    snprintf(what, sizeof what, "wrapperExec of %s", call->sid);
    return join_within(call->thread, 10000, what);
}

/* The call returned `code`; for 0, its own echo came back through the batch. */
static void expect_call(const SyncCall *call, int code) {
    if (call->code_ != code) {
        fail("%s (mode %s): wrapperExec returned %d (%s), expected %d", call->sid, call->mode, call->code_,
             error_text(call->code_), code);
        return;
    }
    if (code != 0) return;
    if (strcmp(call->got, call->text) != 0) fail("%s: got \"%s\", expected its own \"%s\"", call->sid, call->got, call->text);
    if (strcmp(call->via, "batch") != 0) fail("%s: served via \"%s\", expected \"batch\"", call->sid, call->via);
    if (call->freeCode != 0) fail("%s: wrapperExecFree returned %d", call->sid, call->freeCode);
}

/* The record line of the batch holding every sid given (NULL-terminated); 0 if there is none. */
static int batch_holding(const char *const *sids, char *line, size_t size) {
    FILE *file = fopen(R.record, "r");
    if (file == NULL) return 0;
    int found = 0;
    while (!found && fgets(line, (int)size, file) != NULL) {
        if (strncmp(line, "batch ", 6) != 0) continue;
        found = 1;
        for (int i = 0; sids[i] != NULL && found; i++) {
            char needle[64];
            snprintf(needle, sizeof needle, "%s", sids[i]);
            char *at = strstr(line, needle);
            size_t len = strlen(needle);
            found = at != NULL && (at[len] == ',' || at[len] == '\n' || at[len] == '\0');
        }
    }
    fclose(file);
    if (found) line[strcspn(line, "\n")] = '\0';
    return found;
}

/* The line number (1-based) of the last record line starting with `prefix`, 0 if none. */
static int last_record_line(const char *prefix) {
    FILE *file = fopen(R.record, "r");
    if (file == NULL) return 0;
    char text[512];
    int at = 0, last = 0;
    while (fgets(text, sizeof text, file) != NULL) {
        at++;
        if (strncmp(text, prefix, strlen(prefix)) == 0) last = at;
    }
    fclose(file);
    return last;
}

/* ------------------------------------------------------------------------------------------------
 * batch-errors (batch.max_size=4, batch.max_delay_us=2000000: the four threads' requests always
 * make one batch): each request gets its own outcome — echo, wrapper.py's code 42, 22008, 22007 —
 * in one call; then a batch whose method raises fails all four with 22004, and one that returns a
 * Response too few fails all four with 22005.
 */

typedef struct {
    const char *mode;
    const char *code;
    int expected;
} Expectation;

static void batch_round(const char *round, const Expectation expected[4]) {
    SyncCall calls[4];
    const char *sids[5] = {NULL};
    char names[4][48];
    for (int i = 0; i < 4; i++) {
        snprintf(names[i], sizeof names[i], "%s-%d", round, i);
        sids[i] = names[i];
        step("%s: wrapperExec %s (mode %s) from its own thread", round, names[i], expected[i].mode);
        start_call(&calls[i], names[i], expected[i].mode, expected[i].code, 0);
    }
    for (int i = 0; i < 4; i++) {
        if (join_call(&calls[i]) != 0) return;
    }
    for (int i = 0; i < 4; i++) expect_call(&calls[i], expected[i].expected);
    char line[512];
    if (!batch_holding(sids, line, sizeof line)) fail("%s: the four requests were not in one batch", round);
    else note("%s: %s", round, line);
}

void scenario_batch_errors(void) {
    if (init_plugin() != 0) return;
    batch_round("mixed", (Expectation[4]){{"echo", NULL, 0},
                                          {"fail", "42", 42},
                                          {"bad_output", NULL, INVALID_OUTPUT},
                                          {"empty", NULL, EMPTY_RESPONSE}});
    batch_round("raising", (Expectation[4]){{"echo", NULL, PYTHON_EXCEPTION},
                                            {"echo", NULL, PYTHON_EXCEPTION},
                                            {"raise", NULL, PYTHON_EXCEPTION},
                                            {"echo", NULL, PYTHON_EXCEPTION}});
    batch_round("short", (Expectation[4]){{"echo", NULL, BAD_RETURN_TYPE},
                                          {"short", NULL, BAD_RETURN_TYPE},
                                          {"echo", NULL, BAD_RETURN_TYPE},
                                          {"echo", NULL, BAD_RETURN_TYPE}});
    const char *text = error_text(PYTHON_EXCEPTION);
    if (strstr(text, "ValueError: batch of 4 refused") == NULL) {
        fail("wrapperError(22004) is \"%s\", expected the exception's text", text);
    }
    fini_plugin();
}

/* ------------------------------------------------------------------------------------------------
 * batch-mixed (batch.max_size=4, batch.max_delay_us=2000000): two wrapperExecAsync and two
 * wrapperExec requests make one batch; each gets exactly its own result (async: one callback).
 */

void scenario_batch_mixed(void) {
    if (init_plugin() != 0) return;
    Tag *tags[2];
    Pair mode = {"mode", "echo"};
    for (int i = 0; i < 2; i++) {
        tags[i] = tag_new("mixed-async-%d", i);
        char text[64];
        snprintf(text, sizeof text, "text of %s", tags[i]->text);
        step("wrapperExecAsync %s", tags[i]->text);
        int code = send_async(tags[i], tags[i]->text, &mode, 1, text, 0);
        if (code != 0) fail("%s: wrapperExecAsync returned %d: %s", tags[i]->text, code, error_text(code));
    }
    SyncCall calls[2];
    start_call(&calls[0], "mixed-sync-0", "echo", NULL, 0);
    start_call(&calls[1], "mixed-sync-1", "echo", NULL, 0);
    for (int i = 0; i < 2; i++) {
        if (join_call(&calls[i]) != 0) return;
        expect_call(&calls[i], 0);
    }
    TagSet set = {tags, 2};
    step("waiting for the async results");
    tracker_wait(all_finished, &set, 5000);
    sleep_ms(200); /* a second callback would come now */
    for (int i = 0; i < 2; i++) {
        tracker_lock();
        Tag seen = *tags[i];
        char expected[64];
        snprintf(expected, sizeof expected, "text of %s", tags[i]->text);
        const NodeCopy *node = list_find(&tags[i]->output, "input");
        const NodeCopy *via = list_find(&tags[i]->output, "via");
        int echoed = node != NULL && node->len == strlen(expected) && memcmp(node->data, expected, node->len) == 0;
        int batched = via != NULL && via->len == 5 && memcmp(via->data, "batch", 5) == 0;
        tracker_unlock();
        if (seen.callbacks != 1 || seen.firstRet != 0) {
            fail("%s: %d callback(s), ret %d, expected one with 0", tags[i]->text, seen.callbacks, seen.firstRet);
        } else if (!echoed || !batched) {
            fail("%s: its callback did not carry its own input through the batch", tags[i]->text);
        }
    }
    const char *sids[] = {"mixed-async-0", "mixed-async-1", "mixed-sync-0", "mixed-sync-1", NULL};
    char line[512];
    if (!batch_holding(sids, line, sizeof line)) fail("the two async and two sync requests were not in one batch");
    else note("%s", line);
    fini_plugin();
}

/* ------------------------------------------------------------------------------------------------
 * batch-free-independent (batch.max_size=2, batch.max_delay_us=2000000): two requests of one batch
 * whose answers lend the same Python bytes object; one is freed at once, the other read 300 ms
 * later: it must still hold its own echo and the whole pattern (the Swift test runs this under
 * PYTHONMALLOC=debug, which poisons freed memory).
 */

void scenario_batch_free_independent(void) {
    if (init_plugin() != 0) return;
    for (int round = 0; round < 3; round++) {
        SyncCall calls[2];
        char first[32], second[32];
        snprintf(first, sizeof first, "free-%d-now", round);
        snprintf(second, sizeof second, "free-%d-later", round);
        step("round %d: two requests in one batch; %s frees at once, %s reads 300 ms later", round, first, second);
        start_call(&calls[0], first, "shared", NULL, 0);
        start_call(&calls[1], second, "shared", NULL, 300);
        for (int i = 0; i < 2; i++) {
            if (join_call(&calls[i]) != 0) return;
            expect_call(&calls[i], 0);
            if (calls[i].sharedLen != 16384 || !calls[i].sharedIntact) {
                fail("%s: its \"shared\" output (%zu bytes) was not intact when read", calls[i].sid, calls[i].sharedLen);
            }
        }
        const char *sids[] = {first, second, NULL};
        char line[256];
        if (!batch_holding(sids, line, sizeof line)) fail("round %d: the two requests were not in one batch", round);
    }
    fini_plugin();
}

/* ------------------------------------------------------------------------------------------------
 * batch-timeout-queued (batch.max_size=4, batch.max_delay_us=1000, fixture.sleep_ms=300): 8 async
 * requests with a 100 ms timeout. The first 4 make a batch that takes 300 ms; the other 4 wait in
 * the queue behind it. Every request gets exactly one callback, 22012, on time; the 4 that timed
 * out while queued are never run, and the late results of the first 4 are dropped.
 */

void scenario_batch_timeout_queued(void) {
    enum { COUNT = 8, TIMEOUT_MS = 100 };
    if (init_plugin() != 0) return;
    Tag *tags[COUNT];
    Pair mode = {"mode", "echo"};
    for (int i = 0; i < COUNT; i++) {
        tags[i] = tag_new("queued-%d", i);
        step("wrapperExecAsync %s (timeout %d ms)", tags[i]->text, TIMEOUT_MS);
        int code = send_async(tags[i], tags[i]->text, &mode, 1, "payload", TIMEOUT_MS);
        if (code != 0) fail("%s: wrapperExecAsync returned %d: %s", tags[i]->text, code, error_text(code));
    }
    TagSet set = {tags, COUNT};
    step("waiting for the timeouts");
    tracker_wait(all_finished, &set, 3000);
    step("listening 600 ms for late results");
    sleep_ms(600);
    for (int i = 0; i < COUNT; i++) {
        tracker_lock();
        Tag seen = *tags[i];
        tracker_unlock();
        double late = (double)(seen.finalNs - seen.enteredNs) / 1e6 - TIMEOUT_MS;
        if (seen.callbacks != 1 || seen.firstRet != TIMEOUT_RET) {
            fail("%s: %d callback(s), first ret %d (%s), expected one 22012", tags[i]->text, seen.callbacks,
                 seen.firstRet, error_text(seen.firstRet));
        } else if (late < 0 || late > 80) {
            fail("%s: its 22012 came %.1f ms after its timeout (allowed 0 to 80)", tags[i]->text, late);
        }
    }
    int batches = record_count("batch ");
    char line[512] = "";
    record_find("batch ", line, sizeof line);
    if (batches != 1) fail("%d batch call(s) ran, expected 1 (the queued requests timed out first)", batches);
    for (int i = 4; i < COUNT; i++) {
        if (strstr(line, tags[i]->text) != NULL) fail("%s ran in a batch after it had timed out", tags[i]->text);
    }
    note("%s", line);
    const char *state = P.debugInfo(NULL);
    if (strstr(state, "\"batch_queued\": 0") == NULL || strstr(state, "\"async_pending\": 0") == NULL) {
        fail("after the timeouts the plugin still holds requests: %s", state);
    }
    fini_plugin();
}

/* ------------------------------------------------------------------------------------------------
 * batch-fini-in-flight (batch.max_size=4, batch.max_delay_us=2000000, fixture.sleep_ms=300): two
 * async and two sync requests make batch A (300 ms); two more of each wait in the queue; then
 * wrapperFini. Before it returns every request has exactly one outcome: A's requests their results
 * (async: one callback with its echo), the queued async ones 22018, the queued sync ones their
 * results from a last batch sent at once; wrapper.py's wrapperFini runs after every batch; no
 * callback comes after it returned.
 */

void scenario_batch_fini_in_flight(void) {
    if (init_plugin() != 0) return;
    Tag *tags[4];
    Pair mode = {"mode", "echo"};
    SyncCall calls[4];
    for (int wave = 0; wave < 2; wave++) {
        for (int i = 0; i < 2; i++) {
            Tag *tag = tags[wave * 2 + i] = tag_new("fini-%s-async-%d", wave ? "queued" : "running", i);
            char text[64];
            snprintf(text, sizeof text, "text of %s", tag->text);
            step("wrapperExecAsync %s", tag->text);
            int code = send_async(tag, tag->text, &mode, 1, text, 0);
            if (code != 0) fail("%s: wrapperExecAsync returned %d: %s", tag->text, code, error_text(code));
        }
        for (int i = 0; i < 2; i++) {
            char sid[48];
            snprintf(sid, sizeof sid, "fini-%s-sync-%d", wave ? "queued" : "running", i);
            start_call(&calls[wave * 2 + i], sid, "echo", NULL, 0);
        }
        if (wave == 0) {
            step("waiting for batch A to start");
            if (!wait_record("batch 4 ", 3000)) fail("batch A did not start");
        }
    }
    sleep_ms(50);
    step("wrapperFini with batch A running and four requests queued");
    int64_t started = now_ns();
    int code = P.fini();
    int64_t returned = now_ns();
    if (code != 0) fail("wrapperFini returned %d: %s", code, error_text(code));
    note("wrapperFini returned after %.0f ms", (double)(returned - started) / 1e6);
    int total = tracker_total();
    for (int i = 0; i < 4; i++) {
        tracker_lock();
        Tag seen = *tags[i];
        char expected[64];
        snprintf(expected, sizeof expected, "text of %s", tags[i]->text);
        const NodeCopy *node = list_find(&tags[i]->output, "input");
        int echoed = node != NULL && node->len == strlen(expected) && memcmp(node->data, expected, node->len) == 0;
        tracker_unlock();
        int want = i < 2 ? 0 : SHUT_DOWN_RET;
        if (seen.callbacks != 1 || seen.firstRet != want) {
            fail("%s: %d callback(s) by the time wrapperFini returned, first ret %d (%s); expected one with %d",
                 tags[i]->text, seen.callbacks, seen.firstRet, error_text(seen.firstRet), want);
        } else if (want == 0 && !echoed) {
            fail("%s: its callback did not carry its own input", tags[i]->text);
        }
    }
    double lag = 0;
    for (int i = 0; i < 4; i++) {
        if (join_call(&calls[i]) != 0) return;
        expect_call(&calls[i], 0);
        double after = (double)(calls[i].returnedNs - returned) / 1e6;
        if (after > lag) lag = after;
        if (after > 100) fail("%s: wrapperExec returned %.1f ms after wrapperFini had returned", calls[i].sid, after);
    }
    note("every wrapperExec had returned by %.2f ms after wrapperFini returned", lag);
    const char *queued[] = {"fini-queued-sync-0", "fini-queued-sync-1", NULL};
    char line[256];
    if (!batch_holding(queued, line, sizeof line)) fail("the queued sync requests were not sent in one last batch");
    int fini = record_line("fini"), last = last_record_line("batch ");
    if (fini == 0 || fini < last) fail("wrapper.py's wrapperFini ran before the last batch (record line %d < %d)", fini, last);
    step("listening 500 ms after wrapperFini returned");
    sleep_ms(500);
    if (tracker_total() != total) fail("%d callback(s) came after wrapperFini returned", tracker_total() - total);
}

/* ------------------------------------------------------------------------------------------------
 * batch-lone-after-timeout (batch.max_size=8, batch.max_delay_us=300000): an async request with a
 * 20 ms timeout times out while queued; after its batch was due (300 ms), a lone async request (timeout 0) must still be
 * sent when its max_delay_us passed and get its own result — before the fix the batch's driver
 * thread slept on the emptied queue and the request waited for wrapperFini.
 */

void scenario_batch_lone_after_timeout(void) {
    if (init_plugin() != 0) return;
    Pair mode = {"mode", "echo"};
    Tag *first = tag_new("timed-out");
    step("wrapperExecAsync %s (timeout 20 ms, queued for 300 ms)", first->text);
    int code = send_async(first, first->text, &mode, 1, "first", 20);
    if (code != 0) fail("%s: wrapperExecAsync returned %d: %s", first->text, code, error_text(code));
    Tag *firsts[1] = {first};
    TagSet one = {firsts, 1};
    tracker_wait(all_finished, &one, 2000);
    sleep_ms(500);  // past the moment its batch was due: the queue was found empty then
    Tag *lone = tag_new("lone");
    step("wrapperExecAsync %s (no timeout)", lone->text);
    code = send_async(lone, lone->text, &mode, 1, "second", 0);
    if (code != 0) fail("%s: wrapperExecAsync returned %d: %s", lone->text, code, error_text(code));
    Tag *lones[1] = {lone};
    TagSet second = {lones, 1};
    tracker_wait(all_finished, &second, 2000);
    tracker_lock();
    Tag a = *first, b = *lone;
    tracker_unlock();
    if (a.callbacks != 1 || a.firstRet != TIMEOUT_RET) fail("%s: expected one 22012, got %d callback(s), ret %d", a.text, a.callbacks, a.firstRet);
    if (b.callbacks != 1 || b.firstRet != 0) {
        fail("%s: %d callback(s) within 2 s (ret %d), expected its result after about 300 ms", b.text, b.callbacks,
             b.firstRet);
    } else {
        note("%s: its result came %.0f ms after wrapperExecAsync", b.text, (double)(b.finalNs - b.enteredNs) / 1e6);
    }
    fini_plugin();
}

/* ------------------------------------------------------------------------------------------------
 * batch-hook-reenters (batch.max_size=8, batch.max_delay_us=2000): wrapperOnceExecBatch calls
 * callback_metric, and the loader's meter hook — on the thread running the batch — calls wrapperExec
 * (it must be served, not wait for a batch after the one it is in), then, in a second round,
 * wrapperFini (it must not wait for the very caller whose batch is running).
 */

static volatile int hookAction; /* 1: wrapperExec, 2: wrapperFini */
static volatile int hookCode = -1;

static int reentering_meter(const void *usrTag, const char *key, int count) {
    (void)usrTag, (void)key, (void)count;
    if (hookAction == 1) {
        Pair pairs[2] = {{"sid", "nested"}, {"mode", "echo"}};
        pParamList params = params_build(pairs, 2);
        pDataList request = data_text("input", "nested", DataOnce);
        pDataList response = NULL;
        hookCode = P.exec("nested", params, request, &response, NULL, 0);
        if (response != NULL) P.execFree("nested", &response);
        params_free(params);
        data_free(request);
    } else if (hookAction == 2) {
        hookCode = P.fini();
    }
    return 0;
}

void scenario_batch_hook_reenters(void) {
    for (int round = 1; round <= 2; round++) {
        hookAction = round;
        hookCode = -1;
        P.setCtrl(CTMeterCustom, (void *)reentering_meter);
        if (init_plugin() != 0) return;
        SyncCall outer;
        step("round %d: wrapperExec whose batch calls callback_metric; the hook calls %s", round,
             round == 1 ? "wrapperExec" : "wrapperFini");
        int64_t started = now_ns();
        start_call(&outer, round == 1 ? "outer-exec" : "outer-fini", "metric", NULL, 0);
        if (join_call(&outer) != 0) return;
        double took = (double)(now_ns() - started) / 1e6;
        expect_call(&outer, 0);
        if (hookCode != 0) fail("round %d: the hook's %s returned %d (%s)", round, round == 1 ? "wrapperExec" : "wrapperFini", hookCode, error_text(hookCode));
        if (took > 2000) fail("round %d: wrapperExec took %.0f ms (the hook's call waited on its own batch)", round, took);
        note("round %d: wrapperExec took %.0f ms", round, took);
        P.setCtrl(CTMeterCustom, NULL);
        if (round == 1) fini_plugin();
    }
}
