/*
 * Command-line options shared by the harness's modes.
 */
#ifndef AIGES_HARNESS_OPTIONS_H
#define AIGES_HARNESS_OPTIONS_H

#include "plugin.h"

#define MAX_PAIRS 256
#define MAX_NODES 64

/* One -r ID[:PATCH]=VALUE: a DataPer node loaded with wrapperLoadRes(node, id) before the requests. */
typedef struct {
    unsigned int id;
    char *patch; /* desc patch_id of the node; NULL: no desc (the plugin then passes the id as text) */
    unsigned char *bytes;
    size_t len;
} Resource;

typedef struct {
    const char *mode;
    const char *library;
    Pair config[MAX_PAIRS];
    int configCount;
    Pair params[MAX_PAIRS];
    int paramCount;
    NodeSpec inputs[MAX_NODES];
    int inputCount;
    int repeat;
    int threads;
    const char *outDir;
    int quiet;
    int noInit;
    int unique;    /* append "#<thread>-<call>" to every input so each call's data differs */
    int checkEcho; /* each output node must equal the input node with the same key */
    int sessions;  /* session mode: sessions interleaved per round */
    int push;      /* session mode: results through a callback (loader asyncMode) */
    int pollMs;    /* pull sessions: read interval after the last write */
    int waitMs;    /* how long to wait for final results */
    int timeoutMs; /* async mode: the timeout passed to wrapperExecAsync */
    int lingerMs;  /* async/session: keep listening this long for late callbacks */
    int expectRet; /* async mode: the ret every callback must carry */
    int nestedExec; /* callbacks block until a wrapperExec on another thread has finished */
    int hooks;     /* install meter and trace hooks with wrapperSetCtrl before init */
    int churn;     /* exec mode: every request on a new thread that exits after it */
    int readDelayMs; /* exec mode: wait this long after wrapperExec before reading the output */
    int debugCalls;  /* session mode: extra wrapperDebugInfo calls per session before destroy */
    Resource resources[16]; /* -r ID[:PATCH]=VALUE, loaded before requests */
    int resourceCount;
    unsigned int persIds[16]; /* --pers ID, passed as psrIds */
    int persCount;
    int stats; /* --stats: print wrapperDebugInfo(NULL) before the final wrapperFini */
} Options;

/* Parses argv; on a bad command line prints one line naming the option and exits 2. */
void options_parse(Options *options, int argc, char **argv);

/* --stats: prints "stats: <wrapperDebugInfo(NULL)>"; call right before the run's last wrapperFini. */
void print_stats(const Options *options, Plugin *plugin);

/* Sleeps for ms milliseconds (any int range the options allow). */
void sleep_ms(int ms);

/* Mode entry points; each returns the process exit code. */
int run_exec(const Options *options, Plugin *plugin);
int run_probe(const Options *options, Plugin *plugin);
int run_session(const Options *options, Plugin *plugin);
int run_async(const Options *options, Plugin *plugin);
int run_bench(const Options *options, Plugin *plugin);

/* wrapperLoadRes for each -r before requests, wrapperUnloadRes after; print and return non-zero on failure. */
int load_resources(const Options *options, Plugin *plugin);
int unload_resources(const Options *options, Plugin *plugin);

/* Resident set size of this process in KiB. */
long rss_kib(void);

/* CLOCK_MONOTONIC in nanoseconds. */
long now_ns(void);

/* qsort comparator for longs, ascending (latency samples). */
int compare_long(const void *a, const void *b);

/* The request params of -p, plus ("sid", sid) unless -p gave a sid, as a loader-style list. */
pParamList request_params(const Options *options, const char *sid);

/* wrapperInit with the configured pairs; prints the error text and returns non-zero on failure. */
int harness_init(const Options *options, Plugin *plugin);

/* Compares output nodes with the inputs of the same key (plus suffix); prints why and returns -1 on mismatch. */
int check_echo(const Options *options, pDataList output, const char *suffix);

#endif
