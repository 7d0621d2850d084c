/*
 * aiges-faults: an adversarial driver for libwrapper.so.
 *
 * Each scenario loads the plugin exactly as the AIGES loader does (dlopen RTLD_NOW, dlsym of the
 * fifteen symbols), builds every input list the loader's way (NULL-key head node, fresh malloc
 * memory) and poisons and frees it right after each call returns. Every wait is bounded, and a
 * watchdog turns a hang into a FAIL line, so a broken plugin makes a scenario fail, never hang.
 *
 * Files: main.c (command line, watchdog, crash report, scenario table), plugin.c (loading),
 * lists.c (loader-style lists), tracker.c (the loader callback and what it saw), common.c (helpers
 * shared by scenarios: init, requests, sessions, the record file), scenarios_*.c (the scenarios).
 */
#ifndef AIGES_FAULTS_H
#define AIGES_FAULTS_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "aiges/wrapper.h"
#include "aiges_loader.h" /* Plugin, aiges_plugin_load */

/* ------------------------------------------------------------------------------------------------
 * plugin.c: the loaded libwrapper.so
 */


/* The plugin every scenario drives. */
extern Plugin P;


/* wrapperError(code), never NULL (for messages). */
const char *error_text(int code);

/* ------------------------------------------------------------------------------------------------
 * lists.c: lists built and freed the loader's way
 */

/* The poison byte written over every input list before it is freed. */
#define POISON 0xAB

typedef struct {
    const char *key;
    const char *value;
} Pair;

/* A ParamList: NULL-key head node, then the pairs (strings copied into fresh memory). */
pParamList params_build(const Pair *pairs, int count);
/* Poisons and frees a list from params_build (NULL is fine). */
void params_free(pParamList list);

/* A DataList: NULL-key head node, then one node with a copy of bytes; desc (may be NULL) is owned by the list. */
pDataList data_build(const char *key, const void *bytes, size_t len, DataType type, DataStatus status, pDescList desc);
/* A one-node text list with status `status`. */
pDataList data_text(const char *key, const char *text, DataStatus status);
/* Poisons and frees a list from data_build (NULL is fine). */
void data_free(pDataList list);
/* Poisons and frees `count` nodes given as an array (each once, next pointers not followed): for
   cyclic lists, which data_free/params_free would walk forever. A data node's desc is freed with
   params_free (set it to NULL first if it is cyclic). */
void data_free_nodes(pDataList *nodes, int count);
void params_free_nodes(pParamList *nodes, int count);

/* What the driver keeps of an output list (copied before the plugin may free it). */
#define COPY_NODES 16
typedef struct {
    char key[64];
    unsigned char *data; /* malloc'd, NUL-terminated for convenience */
    size_t len;
    int type;
    int status;
} NodeCopy;

typedef struct {
    int count;     /* nodes copied (non-NULL-key nodes beyond COPY_NODES are counted in `dropped`) */
    int dropped;
    int nullKeys;  /* nodes with a NULL key */
    NodeCopy nodes[COPY_NODES];
} ListCopy;

/* Copies every node of `list` into `copy` (appending to what it holds). */
void list_copy(pDataList list, ListCopy *copy);
/* Frees what list_copy allocated and empties `copy`. */
void list_copy_clear(ListCopy *copy);
/* The first node with `key`, or NULL. */
const NodeCopy *list_find(const ListCopy *copy, const char *key);
/* Whether two nodes of `copy` share a key; names it in `duplicate`. */
int list_has_duplicate_key(const ListCopy *copy, char *duplicate, size_t size);
/* Whether some node has status DataEnd or DataOnce. */
int list_has_final(const ListCopy *copy);

/* ------------------------------------------------------------------------------------------------
 * tracker.c: the loader callback and what arrived through it
 */

typedef struct Tag Tag;

/* Scenario code run inside the loader callback for a tag, after the callback has been recorded
 * and with no driver lock held. `call` counts the callbacks for this tag (1 for the first). */
typedef void (*TagHook)(Tag *tag, int call, pDataList respData, int ret);

/* One usrTag handed to the plugin: an async request or a session. Fields below `--- recorded`
 * change under the tracker lock; read them through tracker_lock/unlock or after waits. */
struct Tag {
    char text[64];       /* the usrTag string; `text` itself is the pointer given to the plugin */
    const void *handle;  /* sessions: the plugin's handle */
    TagHook hook;        /* may be NULL */
    void *context;       /* for the hook */
    int64_t enteredNs;   /* async: CLOCK_MONOTONIC when wrapperExecAsync was entered */
    int64_t returnedNs;  /* async: when it returned */
    int asyncCode;       /* async: what wrapperExecAsync returned */
    /* --- recorded */
    int callbacks;       /* callbacks for this tag */
    int accepted;        /* callbacks accepted (before the final one) */
    int afterFinal;      /* callbacks after a final result (the loader returns -1 to these) */
    int afterClose;      /* callbacks that started after tag_close (e.g. after wrapperDestroy returned) */
    int wrongPointer;    /* callbacks whose usrTag pointer was not `text` */
    int finished;        /* a final result (DataEnd/DataOnce node or ret != 0) arrived */
    int firstRet, lastRet;
    int64_t firstNs;     /* when the first callback started */
    int64_t finalNs;     /* when the final one started */
    int64_t closedNs;    /* tag_close time, 0 if open */
    int hooksRunning;    /* hooks in progress */
    int hooksDone;       /* hooks that returned */
    ListCopy output;     /* every node delivered, in order */
    /* --- tracker internals */
    Tag *chain;          /* next tag in the same lookup bucket */
    Tag *nextRetired;    /* next in the queue of retired tags */
    int64_t retiredNs;   /* when tag_retire took it out of the lookup */
};

/* A new tag named by the format (thread-safe). Looked up by its string: the latest tag with a name wins.
   It may be the memory of a tag retired more than a second ago (see tag_retire). */
Tag *tag_new(const char *format, ...) __attribute__((format(printf, 1, 2)));
/* Takes a tag out of the lookup, for long runs that would otherwise keep every tag: its string is
   overwritten, so a later callback with its pointer counts as unknown (tracker_unknown), and after a
   quarantine of a second its memory is reused by tag_new (never freed: the plugin may still hold the
   pointer). Returns 0, or -1 (nothing done) while a callback for it is running. */
int tag_retire(Tag *tag);
/* The loader callback: matches the usrTag string, records the call, runs the tag's hook. */
int tracker_callback(const void *usrTag, pDataList respData, int ret);
/* Marks `tag` closed now: any callback that starts later counts in afterClose. */
void tag_close(Tag *tag);

void tracker_lock(void);
void tracker_unlock(void);
/* Wakes tracker_wait waiters (after changing state a predicate reads). */
void tracker_notify(void);
/* Waits until predicate(argument) is true (checked under the tracker lock) or timeoutMs passed;
   returns whether it became true. */
int tracker_wait(int (*predicate)(void *), void *argument, int timeoutMs);
/* Callbacks seen in total, for any tag, and for no known tag. */
int tracker_total(void);
int tracker_unknown(void);
/* When the latest callback started (0: none yet). */
int64_t tracker_last_ns(void);

/* Predicates for tracker_wait over an array of tags. */
typedef struct {
    Tag **tags;
    int count;
} TagSet;
int all_finished(void *tagSet);   /* every tag has a final result */
int all_called(void *tagSet);     /* every tag has had a callback */
int all_hooks_done(void *tagSet); /* every tag's hooks have returned (and at least one ran) */

/* ------------------------------------------------------------------------------------------------
 * common.c: run state, reporting and helpers shared by scenarios
 */

#define MAX_CONFIG 64

typedef struct {
    const char *scenario;
    Pair config[MAX_CONFIG]; /* -c pairs plus the driver's defaults */
    int configCount;
    char tmpdir[256];        /* a fresh directory for this run */
    char record[300];        /* the record file wrapper.py writes (config key "record") */
} Run;

extern Run R;

/* CLOCK_MONOTONIC in ns, and milliseconds since `start`. */
int64_t now_ns(void);
double ms_since(int64_t start);
void sleep_ms(int ms);

/* Prints an informational line (thread-safe). */
void note(const char *format, ...) __attribute__((format(printf, 1, 2)));
/* Records a failure: printed at once; the first one is the scenario's reason. */
void fail(const char *format, ...) __attribute__((format(printf, 1, 2)));
/* Whether any failure was recorded, and the first reason. */
int failures(void);
const char *first_failure(void);
/* What the driver is doing now, shown if it hangs or crashes. */
void step(const char *format, ...) __attribute__((format(printf, 1, 2)));
const char *current_step(void);
/* The calling thread's latest step ("" if it set none): where a crash on this thread happened. */
const char *thread_step(void);
/* Marks that threads are stuck inside the plugin: the run ends with _exit, without wrapperFini. */
void abandon(void);
int abandoned(void);

/* The value of config key `key` in R, or NULL. */
const char *config_value(const char *key);
/* The value of config key `key` as an int, or `fallback` when absent or empty. */
int config_int(const char *key, int fallback);
/* The process's resident set size in KiB (/proc/self/statm), -1 if unknown. */
long rss_kib(void);
/* wrapperInit with R's config; fails the scenario (and returns the code) when not 0. */
int init_plugin(void);
/* wrapperFini; fails the scenario when not 0. */
int fini_plugin(void);

/* wrapperExec of one text node (params sid, mode=echo) and wrapperExecFree; the fixtures answer
   with node "echo" = "echo:" + text. Returns 0, the call's code, or -1 when the output was wrong
   (why is written to `why`). */
int exec_echo(const char *usrTag, const char *text, char *why, size_t size);

/* wrapperExecAsync of one text node with params sid plus `extra`; records entry and return times
   and the code in the tag. Returns the code. */
int send_async(Tag *tag, const char *sid, const Pair *extra, int extraCount, const char *text, int timeoutMs);

/* wrapperCreate with params sid plus `extra`; push mode (tracker_callback) when push, else pull.
   Stores the handle in tag->handle; returns it (NULL: failed, *code set). */
const void *open_session(Tag *tag, int push, const char *sid, const Pair *extra, int extraCount, int *code);
/* wrapperWrite of one text node. */
int write_text(const void *handle, const char *text, DataStatus status);

/* Lines of the record file that start with `prefix` (0 if it does not exist). */
int record_count(const char *prefix);
/* Copies the first record line starting with `prefix` into `line`; returns whether one exists. */
int record_find(const char *prefix, char *line, size_t size);
/* The line number (1-based) of the first record line starting with `prefix`, 0 if none: for
   checking the order in which wrapper.py did things. */
int record_line(const char *prefix);
/* Polls the record file (every 2 ms) until a line starts with `prefix`; returns whether one came
   within timeoutMs. */
int wait_record(const char *prefix, int timeoutMs);

/* A thread that must finish within a bound; joins with a timeout. Returns 0 if joined, else
   abandons the run and returns -1. */
int join_within(pthread_t thread, int timeoutMs, const char *what);

/* ------------------------------------------------------------------------------------------------
 * scenarios: each returns after recording failures with fail(); main prints ok/FAIL.
 */

typedef struct {
    const char *name;
    void (*run)(void);
    const char *defaults; /* extra config defaults "k=v;k=v" (a -c of the same key wins), or NULL */
    const char *summary;
    int (*watchdogSeconds)(void); /* the watchdog bound when --timeout is not given (NULL: 45 s); reads R */
} Scenario;

/* scenarios_session.c */
void scenario_push_destroy_in_callback(void);
void scenario_push_destroy_in_callback_thread(void);
void scenario_push_debuginfo_in_callback(void);
void scenario_blocked_callback(void);
void scenario_bad_calls_in_callback(void);
void scenario_pull_read_unique_keys(void);
void scenario_lend_pull(void);
void scenario_read_many(void);

/* scenarios_async.c */
void scenario_async_fail_after_deliver(void);
void scenario_async_fail_after_deliver_thread(void);
void scenario_async_deliver_then_ok(void);
void scenario_async_callback_calls_plugin(void);
void scenario_async_timeout_busy_fallback(void);
void scenario_async_timeout_blocking_callbacks(void);
void scenario_async_default_timeout(void);
void scenario_async_duplicate_sid(void);
void scenario_timer_leak(void);
void scenario_runner_starve(void);
void scenario_fallback_backlog_memory(void);

/* scenarios_lifecycle.c */
void scenario_fini_ends_everything(void);
void scenario_fini_from_callback(void);
void scenario_fini_from_callback_push(void);
void scenario_thread_exit(void);
void scenario_fini_race(void);
void scenario_fini_after_held(void);
void scenario_fini_waits_fallback(void);

/* scenarios_stress.c */
void scenario_stress(void);
int stress_watchdog_seconds(void);

/* scenarios_lists.c */
void scenario_long_lists(void);

/* scenarios_batch.c (fixture batching) */
void scenario_batch_errors(void);
void scenario_batch_mixed(void);
void scenario_batch_free_independent(void);
void scenario_batch_timeout_queued(void);
void scenario_batch_fini_in_flight(void);
void scenario_batch_lone_after_timeout(void);
void scenario_batch_hook_reenters(void);

#endif
