/*
 * Thread helpers the Swift side needs with GNU extensions: counts of calls into wrapper.py, a
 * monotonic clock and detached threads. (The entry gate is in gate.c.)
 */
#define _GNU_SOURCE
#include "CPythonShims.h"
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

static long calls_in_progress; /* atomic */
static __thread long calls_here;

void aiges_calls_enter(void) {
    __atomic_fetch_add(&calls_in_progress, 1, __ATOMIC_ACQ_REL);
    calls_here++;
}

void aiges_calls_leave(void) {
    calls_here--;
    __atomic_fetch_sub(&calls_in_progress, 1, __ATOMIC_ACQ_REL);
}

void aiges_counter_add(long *counter, long value) { __atomic_fetch_add(counter, value, __ATOMIC_RELAXED); }

long aiges_counter_load(const long *counter) { return __atomic_load_n(counter, __ATOMIC_RELAXED); }

long aiges_calls_elsewhere(void) { return __atomic_load_n(&calls_in_progress, __ATOMIC_ACQUIRE) - calls_here; }

long long aiges_monotonic_ns(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (long long)now.tv_sec * 1000000000LL + now.tv_nsec;
}

typedef struct {
    void (*body)(void *);
    void *context;
} Start;

static void *run(void *argument) {
    Start start = *(Start *)argument;
    free(argument);
    start.body(start.context);
    return NULL;
}

int aiges_thread_start(void (*body)(void *), void *context) {
    Start *start = malloc(sizeof *start); /* freed by the new thread */
    if (start == NULL) return -1;
    *start = (Start){body, context};
    pthread_attr_t attributes;
    pthread_attr_init(&attributes);
    pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
    pthread_t thread;
    int failed = pthread_create(&thread, &attributes, run, start);
    pthread_attr_destroy(&attributes);
    if (failed) free(start);
    return failed;
}
