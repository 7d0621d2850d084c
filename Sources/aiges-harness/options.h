/*
 * Command-line options shared by the harness's modes.
 */
#ifndef AIGES_HARNESS_OPTIONS_H
#define AIGES_HARNESS_OPTIONS_H

#include "plugin.h"

#define MAX_PAIRS 256
#define MAX_NODES 64

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
} Options;

/* Parses argv; prints usage and exits 2 on a bad command line. */
void options_parse(Options *options, int argc, char **argv);

/* Mode entry points; each returns the process exit code. */
int run_exec(const Options *options, Plugin *plugin);
int run_probe(const Options *options, Plugin *plugin);

/* wrapperInit with the configured pairs; prints the error text and returns non-zero on failure. */
int harness_init(const Options *options, Plugin *plugin);

/* Compares output nodes with the inputs of the same key (plus suffix); prints why and returns -1 on mismatch. */
int check_echo(const Options *options, pDataList output, const char *suffix);

#endif
