/*
 * stress (fixture Tests/Fixtures/stress): driver threads (config stress.threads, default 8) for a
 * while (stress.seconds, default 60) each loop over a random mix of
 *   exec   wrapperExec of a unique payload (8 B to 2 KiB); the output must be exactly its own input
 *          reversed, its own sid and its own usrTag (no cross-talk)
 *   async  wrapperExecAsync answered after 0-30 ms from a Python thread (1 in 10 inside the call),
 *          by usrTag or sid, with timeouts of 10/20/50/1000 ms or 0 (= async.timeout_ms, 30 s here),
 *          so that many expire: exactly one final callback each, ret 0 with ITS OWN result or 22012
 *          no earlier than its timeout and at most stress.late_ms (100) after it
 *   pull   a pull session: 1-5 writes, each delivering two "result" nodes by callback(resp, tag|sid|
 *          handle); reads until DataEnd, every read without duplicate keys, all results in order
 *   push   a push session whose results come from its Python thread; half are read to DataEnd, half
 *          destroyed while results are still coming: no callback may start after wrapperDestroy
 *          returned, and what came is an in-order prefix of the session's own results
 * Requests and sessions are checked 200 ms after they ended (a second callback would have come), and
 * their tags retired: any later callback for them counts as unknown, which fails the run.
 * At the end each thread sends 4 async requests answered only after 2 s (timeout 0) and leaves a pull
 * and a push session open (the push one still delivering); then wrapperFini must return within 10 s,
 * each of those requests must have had exactly one final callback (22018, or its result), wrapper.py's
 * wrapperDestroy must have run for the open sessions, and no callback may come in the 500 ms after
 * wrapperFini returned (nor when the 2 s answers fire).
 * RSS (/proc/self/statm) after a warm-up (10 % of the run, at least 2 s) and at the end of the run:
 * growth over stress.rss_mib (20 MiB; 0: only reported) fails. stress.seed makes the mix repeatable.
 */
#define _GNU_SOURCE
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "faults.h"

#define TIMEOUT_RET 22012
#define SHUT_DOWN_RET 22018

enum {
    MAX_THREADS = 64,
    MAX_PENDING = 256,   /* async requests and closed push sessions awaiting their check, per thread */
    GRACE_MS = 200,      /* how long after its end a request is watched for a second callback */
    FINAL_ASYNC = 4,     /* per thread, pending at wrapperFini */
    FINAL_DELAY_MS = 2000,
    MAX_REPORTS = 25,    /* failures printed; the rest are counted */
    PAYLOAD_MAX = 2048,
};

/* The timeouts an async request gets (0: async.timeout_ms). 10 and 20 ms expire often (delay 0-30 ms). */
static const int timeouts[] = {10, 10, 10, 20, 50, 1000, 0};

typedef enum { PENDING_ASYNC, PENDING_PUSH } PendingKind;

typedef struct {
    PendingKind kind;
    Tag *tag;
    int64_t sentNs;     /* async: wrapperExecAsync entered; push: wrapperCreate */
    int timeoutMs;      /* async: as passed */
    int effectiveMs;    /* async: the timeout that applies */
    int delayMs;        /* async: wrapper.py's delay */
    int raced;          /* push: destroyed while results were coming */
    int writes, results;
    char payload[64];
} Pending;

typedef struct {
    long exec, async, asyncOk, asyncTimeout, asyncShutdown, asyncSync, asyncOkAfterDeadline;
    long pull, pullReads, pullResults;
    long push, pushRaced, pushCallbacks, pushCut; /* pushCut: raced sessions that lost results to the destroy */
    double worstLateMs, worstOkAfterDeadlineMs;
    char worstLateTag[64];
} Counts;

typedef struct {
    int index;
    uint64_t rng;
    pthread_t thread;
    long serial;
    Pending pending[MAX_PENDING];
    int pendingCount;
    Counts counts;
    Tag *final[FINAL_ASYNC];
    char finalPayload[FINAL_ASYNC][64];
    int finalCount;
    Tag *openPull, *openPush;
    int finished; /* under the tracker lock */
} Driver;

static atomic_int stopping;
static atomic_long operations; /* exec calls, async requests and sessions started */
static atomic_int reports, suppressed;
static int lateLimitMs = 100, defaultTimeoutMs = 30000;

/* fail(), but only the first MAX_REPORTS are printed (a broken plugin fails thousands of requests). */
static void sfail(const char *format, ...) __attribute__((format(printf, 1, 2)));
static void sfail(const char *format, ...) {
    if (atomic_fetch_add(&reports, 1) >= MAX_REPORTS) {
        atomic_fetch_add(&suppressed, 1);
        return;
    }
    char text[480];
    va_list arguments;
    va_start(arguments, format);
    vsnprintf(text, sizeof text, format, arguments);
    va_end(arguments);
    fail("%s", text);
}

static uint64_t next_random(Driver *driver) { /* xorshift64* */
    driver->rng ^= driver->rng >> 12;
    driver->rng ^= driver->rng << 25;
    driver->rng ^= driver->rng >> 27;
    return driver->rng * 2685821657736338717ULL;
}

static unsigned pick(Driver *driver, unsigned below) { return (unsigned)(next_random(driver) >> 33) % below; }

int stress_watchdog_seconds(void) { return config_int("stress.seconds", 60) + 90; }

static Tag snapshot(Tag *tag) {
    tracker_lock();
    Tag copy = *tag;
    tracker_unlock();
    return copy;
}

/* Whether `node` holds exactly `expected` (len bytes). */
static int node_is(const NodeCopy *node, const void *expected, size_t len) {
    return node != NULL && node->len == len && memcmp(node->data, expected, len) == 0;
}

/* ------------------------------------------------------------------------------------------------
 * exec
 */

static void do_exec(Driver *driver) {
    long serial = ++driver->serial;
    char usrTag[64], sid[64];
    snprintf(usrTag, sizeof usrTag, "t%d-e%ld", driver->index, serial);
    snprintf(sid, sizeof sid, "sid-%s", usrTag);
    static __thread unsigned char payload[PAYLOAD_MAX], expected[PAYLOAD_MAX + 8];
    int head = snprintf((char *)payload, sizeof payload, "x%d-%ld:", driver->index, serial);
    size_t len = (size_t)head + pick(driver, PAYLOAD_MAX - 64);
    uint64_t bits = next_random(driver);
    for (size_t i = (size_t)head; i < len; i++) {
        if (i % 8 == 0) bits = next_random(driver);
        payload[i] = (unsigned char)(33 + (bits >> ((i % 8) * 8)) % 90);
    }
    memcpy(expected, "echo:", 5);
    for (size_t i = 0; i < len; i++) expected[5 + i] = payload[len - 1 - i];

    step("thread %d: wrapperExec %s", driver->index, usrTag);
    Pair pairs[] = {{"sid", sid}};
    pParamList params = params_build(pairs, 1);
    pDataList request = data_build("input", payload, len, DataText, DataOnce, NULL);
    pDataList response = NULL;
    int code = P.exec(usrTag, params, request, &response, NULL, 0);
    params_free(params);
    data_free(request);
    driver->counts.exec++;
    if (code != 0) {
        sfail("%s: wrapperExec returned %d: %s", usrTag, code, error_text(code));
        return;
    }
    ListCopy copy = {0};
    list_copy(response, &copy);
    char tagCopy[64];
    memcpy(tagCopy, usrTag, sizeof tagCopy);
    memset(usrTag, POISON, sizeof usrTag); /* the loader frees usrTag before wrapperExecFree */
    int freed = response != NULL ? P.execFree(usrTag, &response) : 0;
    const NodeCopy *echo = list_find(&copy, "echo"), *sidNode = list_find(&copy, "sid"),
                   *tagNode = list_find(&copy, "tag");
    if (!node_is(echo, expected, len + 5)) {
        sfail("%s: \"echo\" is not its own input reversed (%s; %zu bytes, expected %zu: cross-talk?)", tagCopy,
              echo ? "wrong bytes" : "missing", echo ? echo->len : 0, len + 5);
    } else if (!node_is(sidNode, sid, strlen(sid)) || !node_is(tagNode, tagCopy, strlen(tagCopy))) {
        sfail("%s: \"sid\"/\"tag\" are \"%s\"/\"%s\", expected \"%s\"/\"%s\"", tagCopy,
              sidNode ? (const char *)sidNode->data : "(missing)", tagNode ? (const char *)tagNode->data : "(missing)",
              sid, tagCopy);
    } else if (copy.count != 3 || copy.dropped != 0) {
        sfail("%s: %d output nodes, expected 3", tagCopy, copy.count + copy.dropped);
    }
    if (freed != 0) sfail("%s: wrapperExecFree returned %d: %s", tagCopy, freed, error_text(freed));
    list_copy_clear(&copy);
}

/* ------------------------------------------------------------------------------------------------
 * async
 */

static void async_expected(const Pending *pending, const char *usrTag, char *out, size_t size) {
    snprintf(out, size, "async:%s|%s", pending->payload, usrTag);
}

static Pending *add_pending(Driver *driver) {
    Pending *pending = &driver->pending[driver->pendingCount++];
    memset(pending, 0, sizeof *pending);
    return pending;
}

static void do_async(Driver *driver) {
    long serial = ++driver->serial;
    Tag *tag = tag_new("t%d-a%ld", driver->index, serial);
    Pending *pending = add_pending(driver);
    pending->kind = PENDING_ASYNC;
    pending->tag = tag;
    pending->timeoutMs = timeouts[pick(driver, sizeof timeouts / sizeof timeouts[0])];
    pending->effectiveMs = pending->timeoutMs > 0 ? pending->timeoutMs : defaultTimeoutMs;
    int sync = pick(driver, 10) == 0;
    pending->delayMs = sync ? 0 : (int)pick(driver, 31);
    snprintf(pending->payload, sizeof pending->payload, "a%d-%ld-%08x", driver->index, serial,
             (unsigned)next_random(driver));
    char sid[80], delay[16];
    snprintf(sid, sizeof sid, "sid-%s", tag->text);
    snprintf(delay, sizeof delay, "%d", pending->delayMs);
    Pair extra[] = {{"mode", sync ? "sync" : "thread"}, {"delay_ms", delay}, {"by", pick(driver, 2) ? "sid" : "tag"}};
    step("thread %d: wrapperExecAsync %s (timeout %d ms, delay %d ms)", driver->index, tag->text, pending->timeoutMs,
         pending->delayMs);
    int code = send_async(tag, sid, extra, 3, pending->payload, pending->timeoutMs);
    pending->sentNs = tag->enteredNs;
    driver->counts.async++;
    driver->counts.asyncSync += sync;
    if (code != 0) {
        /* Still watched: a request whose wrapperExecAsync failed must get no callback. */
        sfail("%s: wrapperExecAsync returned %d: %s", tag->text, code, error_text(code));
    }
}

/* Checks an async request that ended GRACE_MS ago (or whose call failed). */
static void check_async(Driver *driver, const Pending *pending, const Tag *seen) {
    const char *name = seen->text;
    Counts *counts = &driver->counts;
    if (seen->asyncCode != 0) {
        if (seen->callbacks > 0) {
            sfail("%s: %d callback(s) although wrapperExecAsync returned %d", name, seen->callbacks, seen->asyncCode);
        }
        return;
    }
    if (seen->callbacks != 1) {
        sfail("%s: %d callbacks (first ret %d, last ret %d), expected exactly one final one", name, seen->callbacks,
              seen->firstRet, seen->lastRet);
    }
    if (seen->wrongPointer > 0) sfail("%s: a callback's usrTag was not the pointer given", name);
    double after = (double)(seen->firstNs - seen->enteredNs) / 1e6;
    if (seen->firstRet == 0) {
        counts->asyncOk++;
        char expected[160];
        async_expected(pending, name, expected, sizeof expected);
        const NodeCopy *node = list_find(&seen->output, "result");
        if (!node_is(node, expected, strlen(expected))) {
            sfail("%s: result \"%.*s\", expected its own \"%s\" (cross-talk?)", name, node ? (int)node->len : 9,
                  node ? (const char *)node->data : "(missing)", expected);
        } else if (seen->output.count != 1 || (node->status != DataOnce && node->status != DataEnd)) {
            sfail("%s: %d node(s), \"result\" status %d: expected one final node", name, seen->output.count,
                  node->status);
        }
        /* A result that reaches the loader long after the deadline means the timeout did not fire. */
        if (pending->timeoutMs > 0 && after > pending->timeoutMs) {
            counts->asyncOkAfterDeadline++;
            double late = after - pending->timeoutMs;
            if (late > counts->worstOkAfterDeadlineMs) counts->worstOkAfterDeadlineMs = late;
            if (late > lateLimitMs) {
                sfail("%s: its result started %.1f ms after entry, %.1f ms past its %d ms timeout (limit %d ms)",
                      name, after, late, pending->timeoutMs, lateLimitMs);
            }
        }
    } else if (seen->firstRet == TIMEOUT_RET) {
        counts->asyncTimeout++;
        double late = after - pending->effectiveMs;
        if (late > counts->worstLateMs) {
            counts->worstLateMs = late;
            snprintf(counts->worstLateTag, sizeof counts->worstLateTag, "%s", name);
        }
        if (after < pending->effectiveMs) {
            sfail("%s: 22012 after %.2f ms, before its %d ms timeout", name, after, pending->effectiveMs);
        } else if (late > lateLimitMs) {
            sfail("%s: 22012 %.1f ms late (timeout %d ms; limit %d ms)", name, late, pending->effectiveMs,
                  lateLimitMs);
        }
        if (pending->timeoutMs == 0 || pending->timeoutMs >= 1000) {
            sfail("%s: timed out (%d ms) although wrapper.py answers after %d ms: its result was lost", name,
                  pending->effectiveMs, pending->delayMs);
        }
    } else {
        sfail("%s: callback ret %d (%s), expected 0 or 22012", name, seen->firstRet, error_text(seen->firstRet));
    }
}

/* ------------------------------------------------------------------------------------------------
 * pull sessions
 */

/* The session's own chunk `write` and its results. */
static void chunk_text(char *out, size_t size, const char *payload, int write) {
    snprintf(out, size, "%s-w%d", payload, write);
}

static DataStatus chunk_status(int write, int writes) {
    return write == writes - 1 ? DataEnd : write == 0 ? DataBegin : DataContinue;
}

static const char *session_by(Driver *driver) {
    static const char *const by[] = {"tag", "sid", "handle"};
    return by[pick(driver, 3)];
}

typedef struct {
    char results[16][96];
    int count;
    int sawEnd;
    int endAt; /* index of the node that had DataEnd */
} Collected;

/* One wrapperRead; appends what came. Returns the read's code (-1: bad output, reported). */
static int pull_read(Driver *driver, const char *name, const void *handle, Collected *collected) {
    pDataList output = NULL;
    int code = P.read(handle, &output);
    driver->counts.pullReads++;
    if (code != 0) {
        sfail("%s: wrapperRead returned %d: %s", name, code, error_text(code));
        return code;
    }
    ListCopy copy = {0};
    list_copy(output, &copy);
    char duplicate[64];
    int result = 0;
    if (list_has_duplicate_key(&copy, duplicate, sizeof duplicate)) {
        sfail("%s: a wrapperRead list has key \"%s\" twice (%d nodes)", name, duplicate, copy.count);
        result = -1;
    }
    for (int i = 0; i < copy.count; i++) {
        if (collected->count == 16) {
            sfail("%s: more results than it was sent", name);
            result = -1;
            break;
        }
        snprintf(collected->results[collected->count], sizeof collected->results[0], "%.*s", (int)copy.nodes[i].len,
                 (const char *)copy.nodes[i].data);
        if (copy.nodes[i].status == DataEnd || copy.nodes[i].status == DataOnce) {
            if (!collected->sawEnd) collected->endAt = collected->count;
            collected->sawEnd = 1;
        }
        collected->count++;
        driver->counts.pullResults++;
    }
    list_copy_clear(&copy);
    return result;
}

static void do_pull(Driver *driver) {
    long serial = ++driver->serial;
    Tag *tag = tag_new("t%d-l%ld", driver->index, serial);
    char sid[80], payload[48];
    snprintf(sid, sizeof sid, "sid-%s", tag->text);
    snprintf(payload, sizeof payload, "l%d-%ld-%04x", driver->index, serial, (unsigned)(next_random(driver) & 0xffff));
    int writes = 1 + (int)pick(driver, 5);
    Pair extra[] = {{"by", session_by(driver)}};
    int code;
    step("thread %d: wrapperCreate (pull) %s", driver->index, tag->text);
    driver->counts.pull++;
    if (open_session(tag, 0, sid, extra, 1, &code) == NULL) {
        sfail("%s: wrapperCreate (pull) returned %d: %s", tag->text, code, error_text(code));
        tag_retire(tag);
        return;
    }
    Collected collected = {.endAt = -1};
    int broken = 0;
    for (int w = 0; w < writes && !broken; w++) {
        char chunk[96];
        chunk_text(chunk, sizeof chunk, payload, w);
        step("thread %d: wrapperWrite %s #%d", driver->index, tag->text, w);
        code = write_text(tag->handle, chunk, chunk_status(w, writes));
        if (code != 0) {
            sfail("%s: wrapperWrite #%d returned %d: %s", tag->text, w, code, error_text(code));
            broken = 1;
        } else if (pick(driver, 2) == 0) {
            broken = pull_read(driver, tag->text, tag->handle, &collected) != 0;
        }
    }
    /* Everything was delivered inside the writes: each read returns at least one node until DataEnd. */
    for (int reads = 0; !broken && !collected.sawEnd && reads < 2 * writes + 4; reads++) {
        step("thread %d: wrapperRead %s", driver->index, tag->text);
        broken = pull_read(driver, tag->text, tag->handle, &collected) != 0;
    }
    if (!broken) {
        int expectedCount = 2 * writes;
        if (collected.count != expectedCount || !collected.sawEnd || collected.endAt != expectedCount - 1) {
            sfail("%s: reads returned %d result(s) (DataEnd at %d), expected %d ending with DataEnd", tag->text,
                  collected.count, collected.endAt, expectedCount);
        } else {
            for (int i = 0; i < expectedCount; i++) {
                char chunk[96], expected[104];
                chunk_text(chunk, sizeof chunk, payload, i / 2);
                snprintf(expected, sizeof expected, "%s#%c", chunk, i % 2 ? 'b' : 'a');
                if (strcmp(collected.results[i], expected) != 0) {
                    sfail("%s: read result %d is \"%s\", expected \"%s\" (order or cross-talk)", tag->text, i,
                          collected.results[i], expected);
                    break;
                }
            }
        }
        /* After DataEnd a read has nothing more. */
        Collected after = {.endAt = -1};
        if (pull_read(driver, tag->text, tag->handle, &after) == 0 && after.count > 0) {
            sfail("%s: a read after DataEnd returned %d more node(s) (\"%s\")", tag->text, after.count,
                  after.results[0]);
        }
    }
    step("thread %d: wrapperDestroy %s", driver->index, tag->text);
    code = P.destroy(tag->handle);
    if (code != 0) sfail("%s: wrapperDestroy returned %d: %s", tag->text, code, error_text(code));
    tag_close(tag);
    Tag seen = snapshot(tag);
    if (seen.callbacks > 0) sfail("%s: %d loader callback(s) for a pull session", tag->text, seen.callbacks);
    tag_retire(tag); /* a later callback with its usrTag now counts as unknown */
}

/* ------------------------------------------------------------------------------------------------
 * push sessions
 */

static int tag_finished(void *tag) { return ((Tag *)tag)->finished; }

static void do_push(Driver *driver) {
    long serial = ++driver->serial;
    Tag *tag = tag_new("t%d-p%ld", driver->index, serial);
    Pending *pending = add_pending(driver);
    pending->kind = PENDING_PUSH;
    pending->tag = tag;
    pending->writes = 1 + (int)pick(driver, 4);
    pending->results = 1 + (int)pick(driver, 4); /* at most 16 results: what a ListCopy keeps */
    pending->raced = pick(driver, 2);
    snprintf(pending->payload, sizeof pending->payload, "p%d-%ld-%04x", driver->index, serial,
             (unsigned)(next_random(driver) & 0xffff));
    char sid[80], results[8], gap[8];
    snprintf(sid, sizeof sid, "sid-%s", tag->text);
    snprintf(results, sizeof results, "%d", pending->results);
    snprintf(gap, sizeof gap, "%d", pending->raced ? 1 + (int)pick(driver, 4) : (int)pick(driver, 2));
    Pair extra[] = {{"push", "1"}, {"results", results}, {"gap_ms", gap}, {"by", session_by(driver)}};
    int code;
    step("thread %d: wrapperCreate (push) %s", driver->index, tag->text);
    pending->sentNs = now_ns();
    driver->counts.push++;
    if (open_session(tag, 1, sid, extra, 4, &code) == NULL) {
        sfail("%s: wrapperCreate (push) returned %d: %s", tag->text, code, error_text(code));
        driver->pendingCount--;
        tag_close(tag);
        tag_retire(tag);
        return;
    }
    for (int w = 0; w < pending->writes; w++) {
        char chunk[96];
        chunk_text(chunk, sizeof chunk, pending->payload, w);
        step("thread %d: wrapperWrite %s #%d", driver->index, tag->text, w);
        code = write_text(tag->handle, chunk, chunk_status(w, pending->writes));
        if (code != 0) sfail("%s: wrapperWrite #%d returned %d: %s", tag->text, w, code, error_text(code));
    }
    if (pending->raced) {
        driver->counts.pushRaced++;
        sleep_ms((int)pick(driver, 8)); /* results keep coming, 1-4 ms apart */
    } else {
        step("thread %d: waiting for DataEnd of %s", driver->index, tag->text);
        if (!tracker_wait(tag_finished, tag, 5000)) {
            sfail("%s: no DataEnd within 5 s (%d of %d results came)", tag->text, snapshot(tag).callbacks,
                  pending->writes * pending->results);
        }
    }
    step("thread %d: wrapperDestroy %s (results %s)", driver->index, tag->text,
         pending->raced ? "still coming" : "all in");
    code = P.destroy(tag->handle);
    tag_close(tag); /* from here on, a callback for this session is a failure */
    if (code != 0) sfail("%s: wrapperDestroy returned %d: %s", tag->text, code, error_text(code));
}

/* Checks a push session destroyed GRACE_MS ago. */
static void check_push(Driver *driver, const Pending *pending, const Tag *seen) {
    const char *name = seen->text;
    int expectedCount = pending->writes * pending->results;
    driver->counts.pushCallbacks += seen->callbacks;
    if (seen->afterClose > 0) {
        sfail("%s: %d callback(s) started after wrapperDestroy returned", name, seen->afterClose);
    }
    if (seen->wrongPointer > 0) sfail("%s: a callback's usrTag was not the pointer given at create", name);
    if (seen->afterFinal > 0) sfail("%s: %d callback(s) after its DataEnd result", name, seen->afterFinal);
    if (seen->lastRet != 0 || seen->firstRet != 0) {
        sfail("%s: a callback carried ret %d", name, seen->lastRet ? seen->lastRet : seen->firstRet);
    }
    /* What came must be an in-order prefix of the session's own results (all of them once DataEnd came). */
    const ListCopy *output = &seen->output;
    if (output->count + output->dropped > expectedCount) {
        sfail("%s: %d results, but it was sent only %d", name, output->count + output->dropped, expectedCount);
        return;
    }
    for (int i = 0; i < output->count; i++) {
        char chunk[96], expected[104];
        chunk_text(chunk, sizeof chunk, pending->payload, i / pending->results);
        snprintf(expected, sizeof expected, "%s#%d", chunk, i % pending->results);
        const NodeCopy *node = &output->nodes[i];
        if (strcmp(node->key, "result") != 0 || !node_is(node, expected, strlen(expected))) {
            sfail("%s: result %d is %s=\"%.*s\", expected result=\"%s\" (order or cross-talk)", name, i, node->key,
                  (int)node->len, (const char *)node->data, expected);
            return;
        }
        int last = i == expectedCount - 1;
        if ((node->status == DataEnd) != last) {
            sfail("%s: result %d of %d has status %d", name, i + 1, expectedCount, node->status);
            return;
        }
    }
    if (!pending->raced && output->count != expectedCount) {
        sfail("%s: %d of %d results before DataEnd", name, output->count, expectedCount);
    }
    if (pending->raced && output->count < expectedCount) driver->counts.pushCut++;
}

/* ------------------------------------------------------------------------------------------------
 * the driver threads
 */

/* Checks and retires what ended GRACE_MS ago; with `drain`, also reports what never ended. */
static void reap(Driver *driver, int drain) {
    int64_t now = now_ns();
    int kept = 0;
    for (int i = 0; i < driver->pendingCount; i++) {
        Pending *pending = &driver->pending[i];
        Tag seen = snapshot(pending->tag);
        int ended = pending->kind == PENDING_PUSH ? seen.closedNs != 0
                                                  : seen.asyncCode != 0 || seen.finished;
        int64_t endedNs = pending->kind == PENDING_PUSH ? seen.closedNs
                          : seen.asyncCode != 0         ? seen.returnedNs
                                                        : seen.finalNs;
        if (!ended) {
            if (drain) {
                sfail("%s: no final callback %.0f ms after wrapperExecAsync (timeout %d ms, wrapper.py answers "
                      "after %d ms)", seen.text, (double)(now - pending->sentNs) / 1e6, pending->effectiveMs,
                      pending->delayMs);
                continue; /* never retired: a late callback then still finds it */
            }
            driver->pending[kept++] = *pending;
            continue;
        }
        if ((now - endedNs) / 1000000 < GRACE_MS || seen.hooksRunning > 0) {
            driver->pending[kept++] = *pending;
            continue;
        }
        if (pending->kind == PENDING_ASYNC) {
            check_async(driver, pending, &seen);
        } else {
            check_push(driver, pending, &seen);
        }
        if (tag_retire(pending->tag) != 0) driver->pending[kept++] = *pending; /* a callback is running: later */
    }
    driver->pendingCount = kept;
}

/* The end of a thread's run: what stays pending into wrapperFini. */
static void final_batch(Driver *driver) {
    char delay[16];
    snprintf(delay, sizeof delay, "%d", FINAL_DELAY_MS);
    for (int i = 0; i < FINAL_ASYNC; i++) {
        Tag *tag = tag_new("t%d-final-%d", driver->index, i);
        snprintf(driver->finalPayload[i], sizeof driver->finalPayload[i], "final-%d-%d", driver->index, i);
        char sid[80];
        snprintf(sid, sizeof sid, "sid-%s", tag->text);
        Pair extra[] = {{"mode", "thread"}, {"delay_ms", delay}, {"by", "tag"}};
        step("thread %d: wrapperExecAsync %s (answered after %d ms, timeout 0)", driver->index, tag->text,
             FINAL_DELAY_MS);
        int code = send_async(tag, sid, extra, 3, driver->finalPayload[i], 0);
        if (code != 0) sfail("%s: wrapperExecAsync returned %d: %s", tag->text, code, error_text(code));
        driver->final[driver->finalCount++] = tag;
    }
    int code;
    Tag *pull = tag_new("t%d-open-pull", driver->index);
    char sid[80];
    snprintf(sid, sizeof sid, "sid-%s", pull->text);
    Pair pullExtra[] = {{"track", "1"}};
    step("thread %d: an open pull session for wrapperFini", driver->index);
    if (open_session(pull, 0, sid, pullExtra, 1, &code) == NULL) {
        sfail("%s: wrapperCreate returned %d: %s", pull->text, code, error_text(code));
    } else {
        driver->openPull = pull;
        if ((code = write_text(pull->handle, "unread", DataBegin)) != 0) {
            sfail("%s: wrapperWrite returned %d: %s", pull->text, code, error_text(code));
        }
    }
    Tag *push = tag_new("t%d-open-push", driver->index);
    snprintf(sid, sizeof sid, "sid-%s", push->text);
    Pair pushExtra[] = {{"track", "1"}, {"push", "1"}, {"results", "200"}, {"gap_ms", "10"}};
    step("thread %d: an open push session, still delivering, for wrapperFini", driver->index);
    if (open_session(push, 1, sid, pushExtra, 4, &code) == NULL) {
        sfail("%s: wrapperCreate returned %d: %s", push->text, code, error_text(code));
    } else {
        driver->openPush = push;
        if ((code = write_text(push->handle, "streaming", DataBegin)) != 0) {
            sfail("%s: wrapperWrite returned %d: %s", push->text, code, error_text(code));
        }
    }
}

static void *driver_main(void *argument) {
    Driver *driver = argument;
    while (!atomic_load(&stopping)) {
        reap(driver, 0);
        unsigned choice = pick(driver, 100);
        atomic_fetch_add_explicit(&operations, 1, memory_order_relaxed);
        if (choice < 30) {
            do_exec(driver);
        } else if (driver->pendingCount >= MAX_PENDING - 1) {
            sleep_ms(1); /* wait for checks to free slots */
        } else if (choice < 65) {
            do_async(driver);
        } else if (choice < 82) {
            do_pull(driver);
        } else {
            do_push(driver);
        }
    }
    /* Let what is in flight end (delays are at most 30 ms, timeouts at most 1 s), check it. */
    step("thread %d: draining %d pending request(s) and session(s)", driver->index, driver->pendingCount);
    int64_t started = now_ns();
    while (driver->pendingCount > 0 && ms_since(started) < 5000) {
        reap(driver, 0);
        if (driver->pendingCount > 0) sleep_ms(10);
    }
    reap(driver, 1);
    final_batch(driver);
    tracker_lock();
    driver->finished = 1;
    tracker_unlock();
    return NULL;
}

/* ------------------------------------------------------------------------------------------------
 * the scenario
 */

static void add_counts(Counts *into, const Counts *from) {
    into->exec += from->exec;
    into->async += from->async;
    into->asyncOk += from->asyncOk;
    into->asyncTimeout += from->asyncTimeout;
    into->asyncShutdown += from->asyncShutdown;
    into->asyncSync += from->asyncSync;
    into->asyncOkAfterDeadline += from->asyncOkAfterDeadline;
    into->pull += from->pull;
    into->pullReads += from->pullReads;
    into->pullResults += from->pullResults;
    into->push += from->push;
    into->pushRaced += from->pushRaced;
    into->pushCallbacks += from->pushCallbacks;
    into->pushCut += from->pushCut;
    if (from->worstLateMs > into->worstLateMs) {
        into->worstLateMs = from->worstLateMs;
        memcpy(into->worstLateTag, from->worstLateTag, sizeof into->worstLateTag);
    }
    if (from->worstOkAfterDeadlineMs > into->worstOkAfterDeadlineMs) {
        into->worstOkAfterDeadlineMs = from->worstOkAfterDeadlineMs;
    }
}

/* The integer after "\"key\": " in the plugin's state text; returns whether it was there. */
static int state_int(const char *state, const char *key, long *value) {
    char pattern[64];
    snprintf(pattern, sizeof pattern, "\"%s\": ", key);
    const char *at = state != NULL ? strstr(state, pattern) : NULL;
    return at != NULL && sscanf(at + strlen(pattern), "%ld", value) == 1;
}

/* Final-batch requests without a final callback yet. */
static int final_unfinished(Driver *drivers, int threads) {
    int count = 0;
    tracker_lock();
    for (int i = 0; i < threads; i++) {
        for (int j = 0; j < drivers[i].finalCount; j++) {
            count += drivers[i].final[j]->asyncCode == 0 && !drivers[i].final[j]->finished;
        }
    }
    tracker_unlock();
    return count;
}

/* Sleeps until `deadline` (now_ns clock) unless the run already failed badly. */
static void sleep_until(int64_t deadline) {
    while (now_ns() < deadline) {
        int64_t left = (deadline - now_ns()) / 1000000;
        sleep_ms(left > 200 ? 200 : left > 0 ? (int)left : 1);
    }
}

void scenario_stress(void) {
    int seconds = config_int("stress.seconds", 60), threads = config_int("stress.threads", 8);
    int rssLimitMiB = config_int("stress.rss_mib", 20);
    lateLimitMs = config_int("stress.late_ms", 100);
    defaultTimeoutMs = config_int("async.timeout_ms", 60000);
    if (seconds < 1) seconds = 1;
    if (threads < 1 || threads > MAX_THREADS) threads = threads < 1 ? 1 : MAX_THREADS;
    uint64_t seed = config_value("stress.seed") ? strtoull(config_value("stress.seed"), NULL, 0)
                                                : (uint64_t)now_ns() ^ ((uint64_t)getpid() << 32);
    if (defaultTimeoutMs <= FINAL_DELAY_MS + 5000) {
        fail("async.timeout_ms=%d: the stress needs it well over %d ms (the last batch waits on it)",
             defaultTimeoutMs, FINAL_DELAY_MS + 5000);
        return;
    }
    char rssLimit[32] = "off (reported only)";
    if (rssLimitMiB > 0) snprintf(rssLimit, sizeof rssLimit, "%d MiB", rssLimitMiB);
    note("%d threads for %d s; seed 0x%" PRIx64 "; async.timeout_ms=%d; late limit %d ms; rss growth limit %s",
         threads, seconds, seed, defaultTimeoutMs, lateLimitMs, rssLimit);
    if (init_plugin() != 0) return;

    static Driver drivers[MAX_THREADS];
    int64_t started = now_ns();
    for (int i = 0; i < threads; i++) {
        drivers[i].index = i;
        drivers[i].rng = (seed + 0x9E3779B97F4A7C15ULL * (uint64_t)(i + 1)) | 1;
        if (pthread_create(&drivers[i].thread, NULL, driver_main, &drivers[i]) != 0) {
            fail("cannot start driver thread %d", i);
            atomic_store(&stopping, 1);
            threads = i;
            break;
        }
    }
    int64_t runNs = (int64_t)seconds * 1000000000LL;
    int64_t warmNs = runNs / 10 < 2000000000LL ? 2000000000LL : runNs / 10;
    if (warmNs > runNs / 2) warmNs = runNs / 2;
    step("stress: warming up (%.1f s)", (double)warmNs / 1e9);
    sleep_until(started + warmNs);
    long rssWarm = rss_kib(), operationsWarm = atomic_load(&operations);
    note("rss after the %.1f s warm-up: %ld KiB", (double)warmNs / 1e9, rssWarm);
    step("stress: running (%d s)", seconds);
    sleep_until(started + runNs);
    atomic_store(&stopping, 1);
    double ranSeconds = (double)(now_ns() - started) / 1e9;
    for (int i = 0; i < threads; i++) {
        char what[64];
        snprintf(what, sizeof what, "driver thread %d (draining, then the last batch)", i);
        step("stress: joining %s", what);
        if (join_within(drivers[i].thread, 30000, what) != 0) return;
    }
    long rssEnd = rss_kib(), operationsAfterWarm = atomic_load(&operations) - operationsWarm;

    Counts total = {0};
    for (int i = 0; i < threads; i++) add_counts(&total, &drivers[i].counts);

    /* Every request of the run ended at least GRACE_MS ago: the plugin must hold nothing of them. Its
       state (wrapperDebugInfo(NULL)) shows only the last batch pending, one timer each, and the
       sessions left open. (Skipped if a last-batch result came while the state was read.) */
    int openSessions = 0;
    for (int i = 0; i < threads; i++) openSessions += (drivers[i].openPull != NULL) + (drivers[i].openPush != NULL);
    int unfinishedBefore = final_unfinished(drivers, threads);
    step("stress: wrapperDebugInfo(NULL) before wrapperFini");
    const char *state = P.debugInfo(NULL);
    long statePending = -1, stateTimers = -1, stateSessions = -1;
    if (!state_int(state, "async_pending", &statePending) || !state_int(state, "timers", &stateTimers) ||
        !state_int(state, "sessions_open", &stateSessions)) {
        note("plugin state not checked (no async_pending/timers/sessions_open in \"%s\")", state ? state : "(NULL)");
    } else if (final_unfinished(drivers, threads) == unfinishedBefore) {
        note("plugin state before wrapperFini: %s", state);
        if (statePending != unfinishedBefore || stateTimers != unfinishedBefore) {
            fail("after the run the plugin holds %ld async request(s) and %ld timer(s); only the %d of the last "
                 "batch are pending (requests or timers leaked)", statePending, stateTimers, unfinishedBefore);
        }
        if (stateSessions != openSessions) {
            fail("after the run the plugin has %ld session(s) open; the driver left %d open", stateSessions,
                 openSessions);
        }
    }

    /* wrapperFini with the last batch pending and sessions open. */
    int64_t lastSent = now_ns();
    int callbacksBefore = tracker_total();
    step("stress: wrapperFini with %d async requests pending and %d sessions open", threads * FINAL_ASYNC,
         threads * 2);
    int64_t finiStarted = now_ns();
    int code = P.fini();
    int64_t finiReturned = now_ns();
    double finiMs = (double)(finiReturned - finiStarted) / 1e6;
    for (int i = 0; i < threads; i++) {
        for (int j = 0; j < drivers[i].finalCount; j++) tag_close(drivers[i].final[j]);
        if (drivers[i].openPull) tag_close(drivers[i].openPull);
        if (drivers[i].openPush) tag_close(drivers[i].openPush);
    }
    int callbacksAtFini = tracker_total();
    if (code != 0) fail("wrapperFini returned %d: %s", code, error_text(code));
    if (finiMs > 10000) fail("wrapperFini took %.0f ms (limit 10 s)", finiMs);
    int finalOk = 0, finalMissing = 0;
    for (int i = 0; i < threads; i++) {
        Driver *driver = &drivers[i];
        for (int j = 0; j < driver->finalCount; j++) {
            Tag seen = snapshot(driver->final[j]);
            if (seen.asyncCode != 0) continue; /* reported when sent */
            if (seen.callbacks == 0) {
                finalMissing++;
                continue;
            }
            if (seen.callbacks > 1) sfail("%s: %d callbacks by the time wrapperFini returned", seen.text, seen.callbacks);
            if (seen.firstRet == SHUT_DOWN_RET) {
                total.asyncShutdown++;
            } else if (seen.firstRet == 0) {
                char expected[160];
                snprintf(expected, sizeof expected, "async:%s|%s", driver->finalPayload[j], seen.text);
                const NodeCopy *node = list_find(&seen.output, "result");
                if (!node_is(node, expected, strlen(expected))) sfail("%s: a result not its own", seen.text);
                finalOk++;
                total.asyncOk++;
            } else {
                sfail("%s: wrapperFini ended it with ret %d (%s), expected 22018", seen.text, seen.firstRet,
                      error_text(seen.firstRet));
            }
        }
        total.async += driver->finalCount;
    }
    if (finalMissing > 0) {
        fail("%d of %d pending async requests had no final callback when wrapperFini returned", finalMissing,
             threads * FINAL_ASYNC);
    }
    /* Listen 500 ms after wrapperFini, and past the moment wrapper.py's 2 s answers fire. */
    int64_t listenUntil = finiReturned + 500000000LL;
    if (listenUntil < lastSent + (FINAL_DELAY_MS + 500) * 1000000LL) listenUntil = lastSent + (FINAL_DELAY_MS + 500) * 1000000LL;
    step("stress: listening %.0f ms after wrapperFini returned", (double)(listenUntil - finiReturned) / 1e6);
    sleep_until(listenUntil);
    int late = tracker_total() - callbacksAtFini;
    if (late > 0) {
        fail("%d callback(s) came after wrapperFini returned (last %.0f ms after it)", late,
             (double)(tracker_last_ns() - finiReturned) / 1e6);
    }
    int destroyed = record_count("destroy ");
    if (destroyed != openSessions) {
        fail("wrapper.py's wrapperDestroy ran for %d of the %d sessions open at wrapperFini", destroyed, openSessions);
    }
    char line[400];
    if (record_find("fini ", line, sizeof line)) note("wrapper.py at wrapperFini: %s", line + 5);
    if (tracker_unknown() > 0) {
        fail("%d callback(s) for requests or sessions that had already ended (unknown usrTag)", tracker_unknown());
    }
    if (atomic_load(&suppressed) > 0) fail("%d more failure(s) not printed", atomic_load(&suppressed));

    note("exec: %ld", total.exec);
    note("async: %ld sent (%ld answered inside the call): %ld ok, %ld timeout, %ld shutdown; "
         "%ld ok after their deadline (worst %.1f ms past it)", total.async, total.asyncSync, total.asyncOk,
         total.asyncTimeout, total.asyncShutdown, total.asyncOkAfterDeadline, total.worstOkAfterDeadlineMs);
    note("worst timeout lateness %.1f ms (%s; limit %d ms)", total.worstLateMs,
         total.worstLateTag[0] ? total.worstLateTag : "no timeouts", lateLimitMs);
    note("pull: %ld sessions, %ld reads, %ld results", total.pull, total.pullReads, total.pullResults);
    note("push: %ld sessions (%ld destroyed while results were coming, %ld of them cut short), %ld callbacks",
         total.push, total.pushRaced, total.pushCut, total.pushCallbacks);
    note("wrapperFini: %.1f ms, %d callbacks during it; %d final-batch request(s) had their result first", finiMs,
         callbacksAtFini - callbacksBefore, finalOk);
    long growth = rssWarm >= 0 && rssEnd >= 0 ? rssEnd - rssWarm : 0;
    note("rss %ld KiB after warm-up, %ld KiB at the end (%+ld KiB; %+.0f bytes per operation over %ld operations)",
         rssWarm, rssEnd, growth, operationsAfterWarm > 0 ? (double)growth * 1024 / (double)operationsAfterWarm : 0.0,
         operationsAfterWarm);
    printf("stress: %ld exec, %ld async (%ld ok, %ld timeout, %ld shutdown), %ld pull, %ld push sessions in %.1f s; "
           "rss %ld -> %ld KiB\n", total.exec, total.async, total.asyncOk, total.asyncTimeout, total.asyncShutdown,
           total.pull, total.push, ranSeconds, rssWarm, rssEnd);
    if (rssLimitMiB > 0 && growth > (long)rssLimitMiB * 1024) {
        fail("RSS grew by %ld KiB between the warm-up and the end (limit %d MiB)", growth, rssLimitMiB);
    }
    if (total.exec == 0 || total.async == 0 || total.pull == 0 || total.push == 0) {
        fail("some operation never ran (too short a run?)");
    }
}
