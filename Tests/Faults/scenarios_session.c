/*
 * Session scenarios (fixture Tests/Fixtures/faults): loader calls made from inside a push
 * session's callback, a callback that blocks, and pull-mode reads.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "faults.h"

/* Checks that a call made where it makes no sense either succeeded or failed with a real error text. */
static void expect_clear(const char *what, int code) {
    if (code == 0) {
        note("%s returned 0", what);
        return;
    }
    const char *text = P.error(code);
    if (text == NULL || text[0] == '\0') {
        fail("%s returned %d with no wrapperError text", what, code);
    } else {
        note("%s returned %d: %s", what, code, text);
    }
}

/* ------------------------------------------------------------------------------------------------
 * push-destroy-in-callback[-thread]: the first callback destroys its own session. The destroy must
 * return 0 (not deadlock on the delivery in progress, not abort), no callback may start after it
 * returned, and a second destroy is 22009.
 */

typedef struct {
    int destroyCode;
    int done;
} DestroyContext;

static int destroy_done(void *context) { return ((DestroyContext *)context)->done; }

static void destroy_hook(Tag *tag, int call, pDataList respData, int ret) {
    (void)respData, (void)ret;
    DestroyContext *context = tag->context;
    if (call != 1) return;
    step("wrapperDestroy of session %s from inside its own callback", tag->text);
    int code = P.destroy(tag->handle);
    tag_close(tag); /* from here on, a callback for this session is a failure */
    step("callback of %s returning after wrapperDestroy", tag->text);
    tracker_lock();
    context->destroyCode = code;
    context->done = 1;
    tracker_unlock();
    tracker_notify();
}

static void push_destroy(const char *deliver) {
    if (init_plugin() != 0) return;
    Tag *tag = tag_new("destroy-%s", deliver);
    static DestroyContext context; /* static: a late callback may still reach the hook */
    context = (DestroyContext){.destroyCode = -1};
    tag->hook = destroy_hook;
    tag->context = &context;
    Pair extra[] = {{"deliver", deliver}, {"results", "3"}, {"gap_ms", "30"}};
    int code;
    step("wrapperCreate (push)");
    if (open_session(tag, 1, tag->text, extra, 3, &code) == NULL) {
        fail("wrapperCreate returned %d: %s", code, error_text(code));
        fini_plugin();
        return;
    }
    step("wrapperWrite; wrapper.py delivers 3 results (%s); the first callback destroys the session", deliver);
    code = write_text(tag->handle, "chunk", DataBegin);
    note("wrapperWrite returned %d", code);
    step("waiting for the callback that destroys its session");
    if (!tracker_wait(destroy_done, &context, 3000)) {
        fail("the callback calling wrapperDestroy had not returned 3 s after the write (%d callbacks started)",
             tag->callbacks);
        abandon();
        return;
    }
    sleep_ms(300); /* the remaining two results (30 ms apart in the thread variant) must not arrive */
    tracker_lock();
    int afterClose = tag->afterClose, callbacks = tag->callbacks;
    tracker_unlock();
    if (context.destroyCode != 0) {
        fail("wrapperDestroy inside the callback returned %d: %s", context.destroyCode,
             error_text(context.destroyCode));
    }
    if (afterClose > 0) fail("%d callback(s) for the session started after its wrapperDestroy returned", afterClose);
    note("%d callback(s) in all; wrapper.py's wrapperDestroy ran %d time(s)", callbacks, record_count("destroy "));
    step("second wrapperDestroy");
    code = P.destroy(tag->handle);
    if (code != 22009) fail("a second wrapperDestroy returned %d (%s), expected 22009", code, error_text(code));
    fini_plugin();
}

void scenario_push_destroy_in_callback(void) { push_destroy("sync"); }
void scenario_push_destroy_in_callback_thread(void) { push_destroy("thread"); }

/* ------------------------------------------------------------------------------------------------
 * push-debuginfo-in-callback: from inside a push callback, wrapperDebugInfo of the same session
 * (wrapper.py's own text, so the plugin needs the GIL) and a one-shot wrapperExec both work.
 * Once with the result delivered inside wrapperWrite, once from a Python thread.
 */

static void debuginfo_hook(Tag *tag, int call, pDataList respData, int ret) {
    (void)respData, (void)ret;
    if (call != 1) return;
    step("wrapperDebugInfo of session %s from inside its callback", tag->text);
    const char *text = P.debugInfo(tag->handle);
    char expected[96];
    snprintf(expected, sizeof expected, "faults debug %s", tag->text);
    if (text == NULL || strstr(text, expected) == NULL) {
        fail("%s: wrapperDebugInfo inside the callback returned \"%s\", expected wrapper.py's \"%s\"", tag->text,
             text ? text : "(NULL)", expected);
    } else {
        note("%s: wrapperDebugInfo inside the callback: \"%s\"", tag->text, text);
    }
    step("wrapperExec from inside the callback of %s", tag->text);
    char why[300], usrTag[80];
    snprintf(usrTag, sizeof usrTag, "exec-in-%s", tag->text);
    if (exec_echo(usrTag, "inner", why, sizeof why) != 0) {
        fail("%s: wrapperExec inside the callback: %s", tag->text, why);
    }
}

void scenario_push_debuginfo_in_callback(void) {
    if (init_plugin() != 0) return;
    const char *modes[] = {"sync", "thread"};
    for (int i = 0; i < 2; i++) {
        Tag *tag = tag_new("debug-%s", modes[i]);
        tag->hook = debuginfo_hook;
        Pair extra[] = {{"deliver", modes[i]}, {"results", "1"}};
        int code;
        step("wrapperCreate (push, %s)", modes[i]);
        if (open_session(tag, 1, tag->text, extra, 2, &code) == NULL) {
            fail("wrapperCreate returned %d: %s", code, error_text(code));
            continue;
        }
        step("wrapperWrite to %s (its callback calls wrapperDebugInfo and wrapperExec)", tag->text);
        code = write_text(tag->handle, "chunk", DataEnd);
        if (code != 0) fail("%s: wrapperWrite returned %d: %s", tag->text, code, error_text(code));
        TagSet set = {&tag, 1};
        step("waiting for the callback of %s", tag->text);
        if (!tracker_wait(all_hooks_done, &set, 5000)) {
            fail("%s: the callback had not finished 5 s after the write (%d started)", tag->text, tag->callbacks);
            abandon();
            return;
        }
        step("wrapperDestroy of %s", tag->text);
        code = P.destroy(tag->handle);
        if (code != 0) fail("%s: wrapperDestroy returned %d: %s", tag->text, code, error_text(code));
    }
    fini_plugin();
}

/* ------------------------------------------------------------------------------------------------
 * blocked-callback: session A's callback blocks for 2 s. Meanwhile, each on its own thread,
 * wrapperDebugInfo(B), wrapperDebugInfo(A), wrapperExec, and wrapperCreate + wrapperDestroy of a
 * new session must each finish in under 800 ms: nothing may wait for a callback in progress.
 */

#define BLOCK_MS 2000
#define PROBE_LIMIT_MS 800.0

typedef struct Probe Probe;
struct Probe {
    const char *what;
    void (*run)(Probe *);
    const void *handle;  /* the session whose debug info is asked */
    const char *sid;
    pthread_t thread;
    double ms;
    int done;
    char why[300]; /* empty: the call worked */
};

typedef struct {
    int blocked;
} BlockContext;

static int block_started(void *context) { return ((BlockContext *)context)->blocked; }

static void block_hook(Tag *tag, int call, pDataList respData, int ret) {
    (void)respData, (void)ret;
    if (call != 1) return;
    BlockContext *context = tag->context;
    tracker_lock();
    context->blocked = 1;
    tracker_unlock();
    tracker_notify();
    sleep_ms(BLOCK_MS); /* the loader's callback writing to a full Go channel */
}

static void probe_debuginfo(Probe *probe) {
    const char *text = P.debugInfo(probe->handle);
    char expected[96];
    snprintf(expected, sizeof expected, "faults debug %s", probe->sid);
    if (text == NULL || strstr(text, expected) == NULL) {
        snprintf(probe->why, sizeof probe->why, "returned \"%s\", expected \"%s\"", text ? text : "(NULL)", expected);
    }
}

static void probe_exec(Probe *probe) { exec_echo("blocked-exec", "probe", probe->why, sizeof probe->why); }

static void probe_create_destroy(Probe *probe) {
    Tag *tag = tag_new("blocked-other");
    int code;
    if (open_session(tag, 1, tag->text, NULL, 0, &code) == NULL) {
        snprintf(probe->why, sizeof probe->why, "wrapperCreate returned %d: %s", code, error_text(code));
        return;
    }
    code = P.destroy(tag->handle);
    if (code != 0) snprintf(probe->why, sizeof probe->why, "wrapperDestroy returned %d: %s", code, error_text(code));
}

static void *probe_main(void *argument) {
    Probe *probe = argument;
    int64_t started = now_ns();
    probe->run(probe);
    double ms = ms_since(started);
    tracker_lock();
    probe->ms = ms;
    probe->done = 1;
    tracker_unlock();
    tracker_notify();
    return NULL;
}

typedef struct {
    Probe *probes;
    int count;
} ProbeSet;

static int probes_done(void *argument) {
    ProbeSet *set = argument;
    for (int i = 0; i < set->count; i++) {
        if (!set->probes[i].done) return 0;
    }
    return 1;
}

void scenario_blocked_callback(void) {
    if (init_plugin() != 0) return;
    Tag *a = tag_new("blocked-a"), *b = tag_new("blocked-b");
    static BlockContext context; /* static: the hook may outlive this function */
    a->hook = block_hook;
    a->context = &context;
    Pair deliver[] = {{"deliver", "thread"}, {"results", "1"}};
    int code;
    step("wrapperCreate of sessions A and B (push)");
    if (open_session(a, 1, a->text, deliver, 2, &code) == NULL || open_session(b, 1, b->text, NULL, 0, &code) == NULL) {
        fail("wrapperCreate returned %d: %s", code, error_text(code));
        fini_plugin();
        return;
    }
    step("wrapperWrite to A (a Python thread delivers; A's callback then blocks %d ms)", BLOCK_MS);
    code = write_text(a->handle, "go", DataEnd);
    if (code != 0) fail("wrapperWrite to A returned %d: %s", code, error_text(code));
    if (!tracker_wait(block_started, &context, 3000)) {
        fail("A's callback did not start within 3 s of the write");
        fini_plugin();
        return;
    }

    static Probe probes[4]; /* static: a stuck probe thread may outlive this function */
    probes[0] = (Probe){.what = "wrapperDebugInfo(B)", .run = probe_debuginfo, .handle = b->handle, .sid = b->text};
    probes[1] = (Probe){.what = "wrapperDebugInfo(A) (its callback is blocked)", .run = probe_debuginfo,
                        .handle = a->handle, .sid = a->text};
    probes[2] = (Probe){.what = "wrapperExec", .run = probe_exec};
    probes[3] = (Probe){.what = "wrapperCreate + wrapperDestroy of another session", .run = probe_create_destroy};
    ProbeSet set = {probes, (int)(sizeof probes / sizeof probes[0])};
    step("probes running while A's callback blocks");
    for (int i = 0; i < set.count; i++) pthread_create(&probes[i].thread, NULL, probe_main, &probes[i]);
    tracker_wait(probes_done, &set, BLOCK_MS + 1500);
    int stuck = 0;
    for (int i = 0; i < set.count; i++) {
        Probe *probe = &probes[i];
        tracker_lock();
        int done = probe->done;
        tracker_unlock();
        if (!done) {
            fail("%s had not returned %d ms after it was called", probe->what, BLOCK_MS + 1500);
            pthread_detach(probe->thread);
            stuck = 1;
            continue;
        }
        pthread_join(probe->thread, NULL);
        if (probe->why[0] != '\0') fail("%s: %s", probe->what, probe->why);
        if (probe->ms >= PROBE_LIMIT_MS) {
            fail("%s took %.0f ms while A's callback was blocked (limit %.0f ms)", probe->what, probe->ms,
                 PROBE_LIMIT_MS);
        } else {
            note("%s: %.1f ms", probe->what, probe->ms);
        }
    }
    if (stuck) {
        abandon();
        return;
    }
    TagSet blocked = {&a, 1};
    step("waiting for A's callback to return");
    if (!tracker_wait(all_hooks_done, &blocked, 3000)) {
        fail("A's callback had not returned 3 s after it stopped blocking");
        abandon();
        return;
    }
    step("wrapperDestroy of A and B");
    if ((code = P.destroy(a->handle)) != 0) fail("wrapperDestroy(A) returned %d: %s", code, error_text(code));
    if ((code = P.destroy(b->handle)) != 0) fail("wrapperDestroy(B) returned %d: %s", code, error_text(code));
    fini_plugin();
}

/* ------------------------------------------------------------------------------------------------
 * bad-calls-in-callback: from inside a push callback, wrapperRead on the push session, wrapperWrite
 * to its own session, wrapperDestroy(NULL) and wrapperExecFree of a list the plugin never returned.
 * Each must return 0 or an error with a text (NULL handle and foreign list: an error); none may
 * crash, hang or free the driver's memory.
 */

static void bad_calls_hook(Tag *tag, int call, pDataList respData, int ret) {
    (void)respData, (void)ret;
    if (call != 1) return;
    char what[160];

    step("wrapperRead on push session %s from inside its callback", tag->text);
    pDataList output = NULL;
    snprintf(what, sizeof what, "%s: wrapperRead on its own push session", tag->text);
    expect_clear(what, P.read(tag->handle, &output));

    step("wrapperWrite to session %s from inside its callback", tag->text);
    pDataList request = data_text("input", "quiet", DataContinue); /* wrapper.py delivers nothing for it */
    int code = P.write(tag->handle, request);
    data_free(request);
    snprintf(what, sizeof what, "%s: wrapperWrite to its own session", tag->text);
    expect_clear(what, code);

    step("wrapperDestroy(NULL) from inside the callback of %s", tag->text);
    code = P.destroy(NULL);
    if (code != 22009) {
        fail("%s: wrapperDestroy(NULL) returned %d (%s), expected 22009", tag->text, code, error_text(code));
    }

    step("wrapperExecFree of a foreign list from inside the callback of %s", tag->text);
    pDataList foreign = data_text("foreign", "not the plugin's", DataOnce), original = foreign;
    code = P.execFree("foreign-tag", &foreign);
    if (code == 0) {
        fail("%s: wrapperExecFree of a list the plugin never returned returned 0", tag->text);
    } else {
        snprintf(what, sizeof what, "%s: wrapperExecFree of a foreign list", tag->text);
        expect_clear(what, code);
    }
    data_free(original); /* crashes here if the plugin freed it */
}

void scenario_bad_calls_in_callback(void) {
    if (init_plugin() != 0) return;
    const char *modes[] = {"sync", "thread"};
    for (int i = 0; i < 2; i++) {
        Tag *tag = tag_new("bad-calls-%s", modes[i]);
        tag->hook = bad_calls_hook;
        Pair extra[] = {{"deliver", modes[i]}, {"results", "1"}};
        int code;
        step("wrapperCreate (push, %s)", modes[i]);
        if (open_session(tag, 1, tag->text, extra, 2, &code) == NULL) {
            fail("wrapperCreate returned %d: %s", code, error_text(code));
            continue;
        }
        step("wrapperWrite to %s (its callback makes bad calls)", tag->text);
        code = write_text(tag->handle, "chunk", DataEnd);
        if (code != 0) fail("%s: wrapperWrite returned %d: %s", tag->text, code, error_text(code));
        TagSet set = {&tag, 1};
        step("waiting for the callback of %s", tag->text);
        if (!tracker_wait(all_hooks_done, &set, 5000)) {
            fail("%s: the callback had not finished 5 s after the write (%d started)", tag->text, tag->callbacks);
            abandon();
            return;
        }
        step("wrapperDestroy of %s", tag->text);
        code = P.destroy(tag->handle);
        if (code != 0) fail("%s: wrapperDestroy returned %d: %s", tag->text, code, error_text(code));
    }
    fini_plugin();
}

/* ------------------------------------------------------------------------------------------------
 * pull-read-unique-keys: wrapper.py delivers "result" r1, r2, "other" o1, "result" r3 (DataEnd)
 * with callback(resp, sid). Every wrapperRead list must have unique keys (the loader's JSON keeps
 * one node per key), and reading until DataEnd must yield r1, r2, r3 in order and o1 once.
 * A read during which wrapper.py's own wrapperRead raises must return an error code and lose
 * nothing: three sessions —
 *   plain          results delivered in wrapperWrite; no raise
 *   queued-raise   results delivered in wrapperWrite; wrapper.py's first wrapperRead call raises
 *                  (if the plugin calls it while results are queued: that read fails, the results stay)
 *   read-raise     wrapper.py's first wrapperRead call delivers the results, then raises: that first
 *                  read must fail, and the next reads return the results
 */

/* Reads until a DataEnd node (at most 50 reads, 20 ms apart) and checks what came. A read that
   returns non-zero is counted in *errors (and allowed) when errors is not NULL, else a failure. */
static void read_until_end(const void *handle, const char *session, int *errors) {
    char results[64] = "";
    int others = 0, sawEnd = 0, reads = 0;
    while (!sawEnd && reads < 50) {
        reads++;
        step("wrapperRead #%d of %s", reads, session);
        pDataList output = NULL;
        int code = P.read(handle, &output);
        if (code != 0) {
            if (errors == NULL) {
                fail("%s: wrapperRead #%d returned %d: %s", session, reads, code, error_text(code));
                return;
            }
            (*errors)++;
            note("%s: wrapperRead #%d returned %d: %s", session, reads, code, error_text(code));
            sleep_ms(20);
            continue;
        }
        ListCopy copy = {0};
        list_copy(output, &copy); /* valid until the next read: copy now */
        char duplicate[64];
        if (list_has_duplicate_key(&copy, duplicate, sizeof duplicate)) {
            fail("%s: wrapperRead #%d returned %d nodes with key \"%s\" twice (the loader keeps only one)", session,
                 reads, copy.count, duplicate);
        }
        for (int i = 0; i < copy.count; i++) {
            const NodeCopy *node = &copy.nodes[i];
            if (strcmp(node->key, "result") == 0) {
                size_t used = strlen(results);
                snprintf(results + used, sizeof results - used, "%s%.*s", used ? "," : "", (int)node->len,
                         (const char *)node->data);
            } else if (strcmp(node->key, "other") == 0) {
                others++;
                if (node->len != 2 || memcmp(node->data, "o1", 2) != 0) {
                    fail("%s: \"other\" is \"%.*s\", expected \"o1\"", session, (int)node->len,
                         (const char *)node->data);
                }
            } else {
                fail("%s: unexpected output key \"%s\"", session, node->key);
            }
        }
        if (copy.count > 0) note("%s: read #%d: %d node(s)", session, reads, copy.count);
        sawEnd = list_has_final(&copy);
        list_copy_clear(&copy);
        if (!sawEnd) sleep_ms(20);
    }
    if (!sawEnd) fail("%s: no DataEnd result after %d reads (results so far: \"%s\")", session, reads, results);
    if (strcmp(results, "r1,r2,r3") != 0) {
        fail("%s: reads returned \"result\" values \"%s\", expected \"r1,r2,r3\"", session, results);
    }
    if (others != 1) fail("%s: \"other\" came %d times, expected once", session, others);
}

void scenario_pull_read_unique_keys(void) {
    static const struct {
        const char *name;
        Pair params[3];
    } sessions[] = {
        {"pull-plain", {{"deliver", "pull4"}, {"raise_read", "0"}, {"read_delivers", "0"}}},
        {"pull-queued-raise", {{"deliver", "pull4"}, {"raise_read", "1"}, {"read_delivers", "0"}}},
        {"pull-read-raise", {{"deliver", "none"}, {"raise_read", "1"}, {"read_delivers", "1"}}},
    };
    if (init_plugin() != 0) return;
    for (int i = 0; i < 3; i++) {
        Tag *tag = tag_new("%s", sessions[i].name);
        int code;
        step("wrapperCreate (pull) %s", tag->text);
        if (open_session(tag, 0, tag->text, sessions[i].params, 3, &code) == NULL) {
            fail("wrapperCreate returned %d: %s", code, error_text(code));
            continue;
        }
        step("wrapperWrite to %s", tag->text);
        code = write_text(tag->handle, "go", DataEnd);
        if (code != 0) fail("%s: wrapperWrite returned %d: %s", tag->text, code, error_text(code));
        char raised[96];
        snprintf(raised, sizeof raised, "read_raise %s", tag->text);
        if (i == 0) {
            read_until_end(tag->handle, tag->text, NULL);
        } else if (i == 1) {
            int errors = 0;
            read_until_end(tag->handle, tag->text, &errors);
            int raises = record_count(raised);
            if (errors != raises) {
                fail("%s: %d wrapperRead call(s) failed but wrapper.py's wrapperRead raised %d time(s)", tag->text,
                     errors, raises);
            }
            note("%s: wrapper.py's wrapperRead raised %d time(s) while results were queued", tag->text, raises);
        } else {
            step("wrapperRead of %s (wrapper.py's wrapperRead delivers, then raises)", tag->text);
            pDataList output = NULL;
            code = P.read(tag->handle, &output);
            if (code == 0) {
                fail("%s: wrapperRead returned 0 although wrapper.py's wrapperRead raised (recorded: %d)", tag->text,
                     record_count(raised));
            } else {
                note("%s: the failing wrapperRead returned %d: %s", tag->text, code, error_text(code));
            }
            read_until_end(tag->handle, tag->text, NULL);
        }
        step("wrapperDestroy of %s", tag->text);
        code = P.destroy(tag->handle);
        if (code != 0) fail("%s: wrapperDestroy returned %d: %s", tag->text, code, error_text(code));
    }
    if (tracker_total() != 0) fail("%d callback(s) arrived for pull sessions", tracker_total());
    fini_plugin();
}

/* ------------------------------------------------------------------------------------------------
 * lend-pull (config data.lend=true): a pull session whose wrapperWrite delivers the input node's
 * node.view itself — with data.lend, a view straight over the loader's buffer — with
 * callback(resp, sid) during the call (create param deliver=view). The loader frees its input when
 * the write returns (here: poisoned, freed, and the memory reused); the result waits for the next
 * read. The write must return 0 and that read must return the exact input bytes, not freed memory.
 */

enum { LEND_BYTES = 4096, LEND_JUNK = 64 };

void scenario_lend_pull(void) {
    const char *lend = config_value("data.lend");
    if (init_plugin() != 0) return;
    Tag *tag = tag_new("lend-pull");
    Pair extra[] = {{"deliver", "view"}};
    int code;
    step("wrapperCreate (pull, deliver=view) with data.lend=%s", lend ? lend : "(unset)");
    if (open_session(tag, 0, tag->text, extra, 1, &code) == NULL) {
        fail("wrapperCreate returned %d: %s", code, error_text(code));
        fini_plugin();
        return;
    }
    static unsigned char input[LEND_BYTES];
    for (int i = 0; i < LEND_BYTES; i++) input[i] = (unsigned char)(i * 7 + 1); /* never 0xAB at offset 0 */
    pDataList request = data_build("audio", input, LEND_BYTES, DataAudio, DataEnd, NULL);
    step("wrapperWrite of %d bytes (wrapper.py delivers node.view with callback(resp, sid) during the call)",
         LEND_BYTES);
    code = P.write(tag->handle, request);
    data_free(request); /* the loader frees its input when the call returns */
    if (code != 0) fail("wrapperWrite returned %d: %s", code, error_text(code));
    void *junk[LEND_JUNK]; /* reuse the freed input's memory */
    for (int i = 0; i < LEND_JUNK; i++) {
        junk[i] = malloc(LEND_BYTES);
        if (junk[i] != NULL) memset(junk[i], 'Z', LEND_BYTES);
    }
    step("wrapperRead after the input was freed");
    pDataList output = NULL;
    code = P.read(tag->handle, &output);
    if (code != 0) fail("wrapperRead returned %d: %s", code, error_text(code));
    pDataList echo = NULL;
    for (pDataList node = output; node != NULL; node = node->next) {
        if (node->key != NULL && strcmp(node->key, "echo") == 0) echo = node;
    }
    char delivered[96] = "cb_ret view (not recorded)";
    record_find("cb_ret view", delivered, sizeof delivered);
    if (code == 0 && echo == NULL) {
        fail("wrapperRead returned no \"echo\" node (wrapper.py recorded \"%s\")", delivered);
    } else if (echo != NULL) {
        const unsigned char *data = echo->data;
        int firstDiff = -1, differing = 0;
        for (int i = 0; i < LEND_BYTES && i < (int)echo->len && data != NULL; i++) {
            if (data[i] != input[i] && differing++ == 0) firstDiff = i;
        }
        if (echo->len != LEND_BYTES || data == NULL) {
            fail("\"echo\" is %u bytes, expected the %d input bytes", echo->len, LEND_BYTES);
        } else if (differing > 0) {
            fail("\"echo\" differs from the input in %d of %d bytes (first at offset %d: 0x%02x, expected 0x%02x%s): "
                 "the plugin lent the loader's freed input buffer",
                 differing, LEND_BYTES, firstDiff, data[firstDiff], input[firstDiff],
                 data[firstDiff] == POISON ? ", the driver's poison" : data[firstDiff] == 'Z' ? ", reused memory" : "");
        } else {
            note("\"echo\" is the exact %d input bytes, read after the input was freed", LEND_BYTES);
        }
        if (echo->status != DataEnd) fail("\"echo\" has status %d, expected DataEnd", echo->status);
    }
    for (int i = 0; i < LEND_JUNK; i++) free(junk[i]);
    step("wrapperDestroy");
    code = P.destroy(tag->handle);
    if (code != 0) fail("wrapperDestroy returned %d: %s", code, error_text(code));
    fini_plugin();
}

/* ------------------------------------------------------------------------------------------------
 * read-many: a pull session whose wrapperWrite queues 20,000 results with distinct keys (one
 * callback(resp, sid) of 20,000 nodes; keys share a 206-character prefix, as real keys may).
 * One wrapperRead must return them all, in order, within 1 s (the check that keys are unique
 * within a read must not be quadratic); the next read returns nothing.
 */

/* 206 characters: keys that share a long prefix are the worst case for comparing keys one by one. */
#define MANY_PREFIX                                                                                                 \
    "results/of/a/pull/session/with/twenty/thousand/distinct/keys/that/share/a/long/common/prefix/as/real/keys/do/" \
    "results/of/a/pull/session/with/twenty/thousand/distinct/keys/that/share/a/long/common/prefix/key="

void scenario_read_many(void) {
    enum { COUNT = 20000, LIMIT_MS = 1000 };
    if (init_plugin() != 0) return;
    Tag *tag = tag_new("read-many");
    char count[16];
    snprintf(count, sizeof count, "%d", COUNT);
    Pair extra[] = {{"deliver", "many"}, {"results", count}, {"key_prefix", MANY_PREFIX}};
    int code;
    step("wrapperCreate (pull, deliver=many)");
    if (open_session(tag, 0, tag->text, extra, 3, &code) == NULL) {
        fail("wrapperCreate returned %d: %s", code, error_text(code));
        fini_plugin();
        return;
    }
    step("wrapperWrite (wrapper.py queues %d results with distinct keys)", COUNT);
    int64_t writeStarted = now_ns();
    code = write_text(tag->handle, "go", DataEnd);
    double writeMs = ms_since(writeStarted);
    if (code != 0) fail("wrapperWrite returned %d: %s", code, error_text(code));
    char line[200];
    if (record_find("cb_ret many", line, sizeof line) && strcmp(line, "cb_ret many 0") != 0) {
        fail("wrapper.py's callback(resp, sid) of %d nodes returned \"%s\", expected 0", COUNT,
             line + strlen("cb_ret many "));
    }

    step("one wrapperRead of %d queued results", COUNT);
    pDataList output = NULL;
    int64_t readStarted = now_ns();
    code = P.read(tag->handle, &output);
    double readMs = ms_since(readStarted);
    if (code != 0) fail("wrapperRead returned %d: %s", code, error_text(code));
    int nodes = 0, wrong = 0, finals = 0;
    char expectedKey[256], expectedData[16];
    for (pDataList node = output; node != NULL && nodes <= COUNT; node = node->next, nodes++) {
        snprintf(expectedKey, sizeof expectedKey, "%s%05d", MANY_PREFIX, nodes);
        int dataLen = snprintf(expectedData, sizeof expectedData, "%d", nodes);
        if (node->status == DataEnd) finals++;
        if (node->key != NULL && strcmp(node->key, expectedKey) == 0 && node->len == (unsigned)dataLen &&
            node->data != NULL && memcmp(node->data, expectedData, (size_t)dataLen) == 0) {
            continue;
        }
        if (wrong++ == 0) {
            fail("node %d of the read is \"%s\" = \"%.*s\", expected \"%s\" = \"%s\"", nodes,
                 node->key ? node->key : "(NULL)", node->data ? (int)(node->len < 20 ? node->len : 20) : 6,
                 node->data ? (const char *)node->data : "(NULL)", expectedKey, expectedData);
        }
    }
    note("wrapperWrite (wrapper.py building and delivering %d results) took %.0f ms; one wrapperRead returned %d "
         "node(s) in %.1f ms (limit %d ms)",
         COUNT, writeMs, nodes, readMs, LIMIT_MS);
    if (nodes != COUNT) fail("one wrapperRead returned %d of the %d queued results (distinct keys)", nodes, COUNT);
    if (wrong > 1) fail("%d of the %d nodes read were not the expected key and data in order", wrong, nodes);
    if (finals != 1) fail("%d node(s) with status DataEnd in the read, expected 1 (the last)", finals);
    if (readMs > LIMIT_MS) {
        fail("one wrapperRead of %d queued results took %.0f ms (limit %d ms)", COUNT, readMs, LIMIT_MS);
    }

    step("a second wrapperRead (nothing left)");
    output = NULL;
    code = P.read(tag->handle, &output);
    int left = 0;
    for (pDataList node = output; node != NULL && left <= COUNT; node = node->next) left++;
    if (code != 0) fail("the second wrapperRead returned %d: %s", code, error_text(code));
    if (left > 0) fail("the second wrapperRead returned %d node(s), expected none", left);
    step("wrapperDestroy");
    code = P.destroy(tag->handle);
    if (code != 0) fail("wrapperDestroy returned %d: %s", code, error_text(code));
    fini_plugin();
}
