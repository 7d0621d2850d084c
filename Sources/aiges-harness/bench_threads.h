/*
 * bench rows for many loader threads (bench_threads.c): dynamic batching (config batch.*) and tiny
 * calls from several threads through the entry gate, on a quiet machine and beside a CPU-bound process.
 */
#ifndef AIGES_HARNESS_BENCH_THREADS_H
#define AIGES_HARNESS_BENCH_THREADS_H

#include "options.h"

#define BATCH_ROUNDS 3      /* unbatched and batched throughput alternate this many times */
#define CONTENTION_ROUNDS 5 /* 1 and 4 threads alternate this many times, quiet and busy */

typedef struct {
    long delayUs;                       /* batch.max_delay_us of the batched runs */
    double unbatched[BATCH_ROUNDS];     /* calls/s, 8 caller threads, batch.max_size=1 */
    double batched[BATCH_ROUNDS];       /* calls/s, 8 caller threads, batch.max_size=8 */
    double unbatchedMedian, batchedMedian;
    double meanBatch;                   /* requests per wrapperOnceExecBatch call in the batched runs */
    double loneUnbatched, loneBatched;  /* µs, median latency of one caller's calls */
} BatchFigures;

typedef struct {
    double quiet[2][CONTENTION_ROUNDS]; /* calls/s: [0] 1 thread, [1] 4 threads */
    double busy[2][CONTENTION_ROUNDS];  /* the same beside a CPU-bound process */
    double quietMedian[2], busyMedian[2];
    double p99[2][2];                   /* µs, [quiet/busy][1/4 threads], of the median rounds' runs */
    long handovers, direct;             /* the gate's counters over the 4-thread runs */
} ContentionFigures;

/* The device workload of scripts/bench/wrapper.py (one call at a time, ~5 ms whatever the batch
   size, the GIL released) from 8 caller threads, batch.max_size 1 against 8; one caller's latency. */
void measure_batching(const Options *options, Plugin *plugin, BatchFigures *figures, long *failures);
void print_batching(const BatchFigures *figures);

/* Tiny echo from 1 and 4 caller threads, rounds alternating, quiet and beside a CPU-bound process. */
void measure_contention(const Options *options, Plugin *plugin, ContentionFigures *figures, long *failures);
void print_contention(const ContentionFigures *figures);

#endif
