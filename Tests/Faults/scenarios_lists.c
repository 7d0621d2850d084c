/*
 * long-lists (fixture Tests/Fixtures/faults, wrapperOnceExec with param mode=count): loader lists far
 * longer than any real request, and lists that loop.
 *   - wrapperExec with a 100,000-node request (NULL-key head, then nodes "k000000".. with a few bytes
 *     each): succeeds, and wrapper.py saw all 100,000 nodes, with the keys and data in order (CRC-32)
 *   - wrapperExec with 100,000 params (plus sid and mode): all reach wrapper.py's params dict
 *   - cyclic lists, each of which must fail with 22003 within 2 s, with a wrapperError text that
 *     mentions the cycle: request data whose last node points back to an earlier node (100,000 nodes,
 *     and 3 nodes back to the head), whose node points to itself, whose head points to itself; params
 *     that loop (5 entries, and 100,000), a params node pointing to itself; a desc list that loops;
 *     and the same through wrapperExecAsync (no callback may come), wrapperCreate, wrapperWrite and
 *     wrapperLoadRes
 * Each call runs on its own thread, joined with a bound: a plugin walking a loop forever fails the
 * scenario instead of hanging it. Cyclic lists are freed node by node from an array, never by
 * following next. Afterwards a plain wrapperExec still works.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "faults.h"

#define INVALID_ARGUMENT 22003

enum { LONG = 100000 };

/* zlib's crc32(data, crc): the same as Python's zlib.crc32. */
static uint32_t crc32_update(uint32_t crc, const void *data, size_t len) {
    const unsigned char *bytes = data;
    crc = ~crc;
    while (len--) {
        crc ^= *bytes++;
        for (int bit = 0; bit < 8; bit++) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
    }
    return ~crc;
}

static void *must(void *memory) {
    if (memory == NULL) {
        fprintf(stderr, "aiges-faults: out of memory\n");
        exit(4);
    }
    return memory;
}

static char *text_copy(const char *text) { return must(strdup(text)); }

/* A loader-style data list as an array: nodes[0] is the NULL-key head, nodes[1..count-1] are
   "k%06d" = "d%d" (DataText, DataContinue; the last DataEnd), linked in order. */
typedef struct {
    pDataList *nodes;
    int count;
} DataNodes;

static DataNodes data_nodes(int entries) {
    DataNodes list = {must(calloc((size_t)entries + 1, sizeof(pDataList))), entries + 1};
    for (int i = 0; i < list.count; i++) {
        pDataList node = must(calloc(1, sizeof *node));
        if (i > 0) {
            char key[16], data[16];
            snprintf(key, sizeof key, "k%06d", i - 1);
            int len = snprintf(data, sizeof data, "d%d", i - 1);
            node->key = text_copy(key);
            node->data = text_copy(data);
            node->len = (unsigned int)len;
            node->type = DataText;
            node->status = i == list.count - 1 ? DataEnd : DataContinue;
            list.nodes[i - 1]->next = node;
        }
        list.nodes[i] = node;
    }
    return list;
}

static void data_nodes_free(DataNodes *list) {
    data_free_nodes(list->nodes, list->count);
    free(list->nodes);
    list->nodes = NULL;
}

/* A loader-style params list as an array: nodes[0] the NULL-key head, then `fixed`, then `generated`
   entries "p.%06d" = "%06d". */
typedef struct {
    pParamList *nodes;
    int count;
} ParamNodes;

static ParamNodes param_nodes(const Pair *fixed, int fixedCount, int generated) {
    ParamNodes list = {must(calloc((size_t)(1 + fixedCount + generated), sizeof(pParamList))),
                       1 + fixedCount + generated};
    for (int i = 0; i < list.count; i++) {
        pParamList node = must(calloc(1, sizeof *node));
        if (i > 0) {
            char key[16], value[16];
            if (i <= fixedCount) {
                node->key = text_copy(fixed[i - 1].key);
                node->value = text_copy(fixed[i - 1].value);
            } else {
                snprintf(key, sizeof key, "p.%06d", i - 1 - fixedCount);
                snprintf(value, sizeof value, "%06d", i - 1 - fixedCount);
                node->key = text_copy(key);
                node->value = text_copy(value);
            }
            node->vlen = (unsigned int)strlen(node->value);
            list.nodes[i - 1]->next = node;
        }
        list.nodes[i] = node;
    }
    return list;
}

static void param_nodes_free(ParamNodes *list) {
    params_free_nodes(list->nodes, list->count);
    free(list->nodes);
    list->nodes = NULL;
}

/* ------------------------------------------------------------------------------------------------
 * One plugin call on its own thread, so that a call that never returns is a failure, not a hang.
 */

typedef enum { CALL_EXEC, CALL_ASYNC, CALL_CREATE, CALL_WRITE, CALL_LOAD } CallKind;

typedef struct {
    CallKind kind;
    const char *usrTag;
    pParamList params;
    pDataList data;
    const void *handle; /* CALL_WRITE */
    Tag *tag;           /* CALL_ASYNC */
    /* results */
    int code;
    pDataList response;
    const void *created;
    double ms;
} Call;

static void *call_main(void *argument) {
    Call *call = argument;
    int64_t started = now_ns();
    switch (call->kind) {
    case CALL_EXEC:
        call->code = P.exec(call->usrTag, call->params, call->data, &call->response, NULL, 0);
        break;
    case CALL_ASYNC:
        call->code = P.execAsync(call->tag->text, call->params, call->data, tracker_callback, 0, NULL, 0);
        break;
    case CALL_CREATE:
        call->code = 0;
        call->created = P.create(call->usrTag, call->params, NULL, NULL, 0, &call->code);
        break;
    case CALL_WRITE:
        call->code = P.write(call->handle, call->data);
        break;
    case CALL_LOAD:
        call->code = P.loadRes(call->data, 77);
        break;
    }
    call->ms = ms_since(started);
    return NULL;
}

/* Runs the call on a thread joined within `limitMs`; returns -1 (run abandoned) if it did not return. */
static int run_call(Call *call, const char *what, int limitMs) {
    step("%s", what);
    pthread_t thread;
    if (pthread_create(&thread, NULL, call_main, call) != 0) {
        fail("%s: cannot start a thread", what);
        return -1;
    }
    return join_within(thread, limitMs, what);
}

/* The output of a successful wrapperExec, copied; wrapperExecFree'd. Node values are NUL-terminated. */
static int exec_output(Call *call, const char *what, ListCopy *copy) {
    if (call->code != 0) {
        fail("%s: wrapperExec returned %d: %s", what, call->code, error_text(call->code));
        return -1;
    }
    list_copy(call->response, copy);
    int freed = call->response != NULL ? P.execFree("freed-tag", &call->response) : 0;
    if (freed != 0) fail("%s: wrapperExecFree returned %d: %s", what, freed, error_text(freed));
    return 0;
}

static const char *value_of(const ListCopy *copy, const char *key) {
    const NodeCopy *node = list_find(copy, key);
    return node != NULL ? (const char *)node->data : "(missing)";
}

/* ------------------------------------------------------------------------------------------------
 * long lists that work
 */

static void long_data(void) {
    DataNodes data = data_nodes(LONG);
    Pair fixed[] = {{"sid", "long-data"}, {"mode", "count"}};
    pParamList params = params_build(fixed, 2);
    uint32_t crc = 0;
    for (int i = 1; i < data.count; i++) {
        char entry[40];
        int len = snprintf(entry, sizeof entry, "%s=%.*s;", data.nodes[i]->key, (int)data.nodes[i]->len,
                           (const char *)data.nodes[i]->data);
        crc = crc32_update(crc, entry, (size_t)len);
    }
    Call call = {.kind = CALL_EXEC, .usrTag = "long-data", .params = params, .data = data.nodes[0]};
    if (run_call(&call, "wrapperExec with 100,000 request nodes", 30000) != 0) return;
    params_free(params);
    data_nodes_free(&data);
    ListCopy copy = {0};
    if (exec_output(&call, "100,000 request nodes", &copy) != 0) return;
    char count[16], expectedCrc[16];
    snprintf(count, sizeof count, "%d", LONG);
    snprintf(expectedCrc, sizeof expectedCrc, "%08x", crc);
    if (strcmp(value_of(&copy, "count"), count) != 0 || strcmp(value_of(&copy, "keys"), count) != 0) {
        fail("100,000 request nodes: wrapper.py saw %s node(s) with %s distinct key(s), expected %d",
             value_of(&copy, "count"), value_of(&copy, "keys"), LONG);
    } else if (strcmp(value_of(&copy, "crc"), expectedCrc) != 0) {
        fail("100,000 request nodes: CRC of keys and data in order is %s in wrapper.py, %s here",
             value_of(&copy, "crc"), expectedCrc);
    } else {
        note("100,000 request nodes: wrapper.py saw all, in order (crc %s), in %.0f ms", expectedCrc, call.ms);
    }
    list_copy_clear(&copy);
}

static void long_params(void) {
    Pair fixed[] = {{"sid", "long-params"}, {"mode", "count"}};
    ParamNodes params = param_nodes(fixed, 2, LONG);
    uint32_t sum = 0;
    for (int i = 3; i < params.count; i++) {
        char entry[40];
        int len = snprintf(entry, sizeof entry, "%s=%s", params.nodes[i]->key, params.nodes[i]->value);
        sum += crc32_update(0, entry, (size_t)len);
    }
    pDataList data = data_text("input", "x", DataOnce);
    Call call = {.kind = CALL_EXEC, .usrTag = "long-params", .params = params.nodes[0], .data = data};
    if (run_call(&call, "wrapperExec with 100,000 params", 30000) != 0) return;
    param_nodes_free(&params);
    data_free(data);
    ListCopy copy = {0};
    if (exec_output(&call, "100,000 params", &copy) != 0) return;
    char count[16], expectedSum[16];
    snprintf(count, sizeof count, "%d", LONG);
    snprintf(expectedSum, sizeof expectedSum, "%08x", sum);
    if (strcmp(value_of(&copy, "params"), count) != 0) {
        fail("100,000 params: wrapper.py's params had %s of them, expected %d", value_of(&copy, "params"), LONG);
    } else if (strcmp(value_of(&copy, "pcrc"), expectedSum) != 0) {
        fail("100,000 params: CRC sum of the entries is %s in wrapper.py, %s here", value_of(&copy, "pcrc"),
             expectedSum);
    } else {
        note("100,000 params: all reached wrapper.py (crc sum %s), in %.0f ms", expectedSum, call.ms);
    }
    list_copy_clear(&copy);
}

/* ------------------------------------------------------------------------------------------------
 * cyclic lists
 */

#define PROMPT_MS 2000

/* Case-insensitive "cycl" in the text. */
static int mentions_cycle(const char *text) {
    for (const char *c = text; c != NULL && *c != '\0'; c++) {
        if (strncasecmp(c, "cycl", 4) == 0) return 1;
    }
    return 0;
}

/* Runs `call` and expects 22003 within PROMPT_MS with a text about the cycle. -1: abandoned. */
static int expect_cyclic(Call *call, const char *what) {
    char stepText[200];
    snprintf(stepText, sizeof stepText, "%s (must fail with 22003)", what);
    if (run_call(call, stepText, 10000) != 0) return -1;
    const char *text = error_text(call->code);
    if (call->code != INVALID_ARGUMENT) {
        fail("%s: returned %d (%s), expected 22003", what, call->code, text);
    } else if (!mentions_cycle(text)) {
        fail("%s: 22003, but the text does not mention the cycle: \"%s\"", what, text);
    } else if (call->ms > PROMPT_MS) {
        fail("%s: 22003 only after %.0f ms (limit %d ms)", what, call->ms, PROMPT_MS);
    } else {
        note("%s: 22003 after %.2f ms: %s", what, call->ms, text);
    }
    if (call->kind == CALL_EXEC && call->response != NULL) {
        fail("%s: wrapperExec failed but set respData", what);
    }
    if (call->kind == CALL_CREATE && call->created != NULL) {
        fail("%s: wrapperCreate returned a handle", what);
        P.destroy(call->created);
    }
    return 0;
}

/* A cyclic data list for wrapperExec: `entries` nodes, then node `from`'s next set to node `to`
   (indices into the array; 0 is the head). */
static int exec_cyclic_data(const char *what, int entries, int from, int to) {
    DataNodes data = data_nodes(entries);
    data.nodes[from]->next = data.nodes[to];
    Pair fixed[] = {{"sid", "cyclic"}, {"mode", "count"}};
    pParamList params = params_build(fixed, 2);
    Call call = {.kind = CALL_EXEC, .usrTag = "cyclic-data", .params = params, .data = data.nodes[0]};
    if (expect_cyclic(&call, what) != 0) return -1;
    params_free(params);
    data_nodes_free(&data);
    return 0;
}

static int exec_cyclic_params(const char *what, int generated, int from, int to) {
    Pair fixed[] = {{"sid", "cyclic-params"}, {"mode", "count"}, {"a", "1"}, {"b", "2"}};
    ParamNodes params = param_nodes(fixed, 4, generated);
    params.nodes[from]->next = params.nodes[to];
    pDataList data = data_text("input", "x", DataOnce);
    Call call = {.kind = CALL_EXEC, .usrTag = "cyclic-params", .params = params.nodes[0], .data = data};
    if (expect_cyclic(&call, what) != 0) return -1;
    param_nodes_free(&params);
    data_free(data);
    return 0;
}

static int exec_cyclic_desc(void) {
    Pair descPairs[] = {{"encoding", "utf8"}, {"rate", "16000"}, {"frame", "1"}};
    ParamNodes desc = param_nodes(descPairs, 3, 0);
    desc.nodes[3]->next = desc.nodes[1];
    pDataList data = data_build("input", "x", 1, DataText, DataOnce, desc.nodes[0]);
    Pair fixed[] = {{"sid", "cyclic-desc"}, {"mode", "echo"}};
    pParamList params = params_build(fixed, 2);
    Call call = {.kind = CALL_EXEC, .usrTag = "cyclic-desc", .params = params, .data = data};
    if (expect_cyclic(&call, "wrapperExec, a request node's desc list loops back") != 0) return -1;
    data->next->desc = NULL; /* freed by array below */
    data_free(data);
    param_nodes_free(&desc);
    params_free(params);
    return 0;
}

static int other_entry_points(void) {
    /* wrapperExecAsync: 22003 and never a callback. */
    DataNodes data = data_nodes(5);
    data.nodes[5]->next = data.nodes[2];
    Tag *tag = tag_new("cyclic-async");
    Pair fixed[] = {{"sid", "cyclic-async"}, {"mode", "pool"}};
    pParamList params = params_build(fixed, 2);
    Call call = {.kind = CALL_ASYNC, .params = params, .data = data.nodes[0], .tag = tag};
    if (expect_cyclic(&call, "wrapperExecAsync, request data loops back") != 0) return -1;
    params_free(params);
    data_nodes_free(&data);

    /* wrapperCreate with cyclic params: NULL and 22003. */
    Pair createPairs[] = {{"sid", "cyclic-create"}, {"deliver", "none"}};
    ParamNodes createParams = param_nodes(createPairs, 2, 3);
    createParams.nodes[5]->next = createParams.nodes[0];
    call = (Call){.kind = CALL_CREATE, .usrTag = "cyclic-create", .params = createParams.nodes[0]};
    if (expect_cyclic(&call, "wrapperCreate, params loop back to the head") != 0) return -1;
    param_nodes_free(&createParams);

    /* wrapperWrite to a good session with cyclic data: 22003; the session still works. */
    Tag *session = tag_new("cyclic-write");
    int code;
    step("wrapperCreate (pull) for the cyclic write");
    if (open_session(session, 0, session->text, NULL, 0, &code) == NULL) {
        fail("wrapperCreate returned %d: %s", code, error_text(code));
    } else {
        data = data_nodes(1);
        data.nodes[1]->next = data.nodes[1];
        call = (Call){.kind = CALL_WRITE, .handle = session->handle, .data = data.nodes[0]};
        if (expect_cyclic(&call, "wrapperWrite, a request node points to itself") != 0) return -1;
        data_nodes_free(&data);
        step("wrapperWrite after the cyclic one");
        if ((code = write_text(session->handle, "fine", DataEnd)) != 0) {
            fail("wrapperWrite after a cyclic one returned %d: %s", code, error_text(code));
        }
        if ((code = P.destroy(session->handle)) != 0) {
            fail("wrapperDestroy returned %d: %s", code, error_text(code));
        }
    }

    /* wrapperLoadRes with a cyclic resource list. */
    data = data_nodes(2);
    data.nodes[1]->type = data.nodes[2]->type = DataPer;
    data.nodes[2]->next = data.nodes[0];
    call = (Call){.kind = CALL_LOAD, .data = data.nodes[0]};
    if (expect_cyclic(&call, "wrapperLoadRes, resource data loops back to the head") != 0) return -1;
    data_nodes_free(&data);

    sleep_ms(300); /* a callback for the failed async request would come now */
    tracker_lock();
    int callbacks = tag->callbacks;
    tracker_unlock();
    if (callbacks > 0) fail("%d callback(s) for the wrapperExecAsync that returned 22003", callbacks);
    return 0;
}

void scenario_long_lists(void) {
    if (init_plugin() != 0) return;
    long_data();
    if (abandoned()) return;
    long_params();
    if (abandoned()) return;

    if (exec_cyclic_data("wrapperExec, 100,000 request nodes, the last points back to node 1,000", LONG, LONG,
                         1000) != 0) return;
    if (exec_cyclic_data("wrapperExec, 3 request nodes, the last points back to the head", 3, 3, 0) != 0) return;
    if (exec_cyclic_data("wrapperExec, 10 request nodes, node 5 points to itself", 10, 5, 5) != 0) return;
    if (exec_cyclic_data("wrapperExec, the head node points to itself", 0, 0, 0) != 0) return;
    if (exec_cyclic_data("wrapperExec, 2 request nodes, the last points to the first", 2, 2, 1) != 0) return;
    if (exec_cyclic_params("wrapperExec, 4 params, the last points back to the first", 0, 4, 1) != 0) return;
    if (exec_cyclic_params("wrapperExec, 100,004 params, the last points back to entry 10", LONG, LONG + 4, 10) != 0)
        return;
    if (exec_cyclic_params("wrapperExec, a params node points to itself", 0, 2, 2) != 0) return;
    if (exec_cyclic_params("wrapperExec, the params head points to itself", 0, 0, 0) != 0) return;
    if (exec_cyclic_desc() != 0) return;
    if (other_entry_points() != 0) return;

    char why[300];
    step("wrapperExec after the cyclic lists");
    if (exec_echo("after-cyclic", "still fine", why, sizeof why) != 0) fail("after the cyclic lists: %s", why);
    fini_plugin();
}
