/*
 * The entry gate in front of the GIL (see GIL.swift): loader threads take turns at the GIL in
 * stints of many calls instead of handing it over after every call.
 *
 * One thread owns the gate. Between its calls it keeps it "parked" (it lets go of the GIL, not of
 * the gate) and takes it back without a system call when its next call comes. Threads that find the
 * gate owned queue in order and sleep on a futex; the owner hands the gate to the first of them when
 * its stint is over, or at once if it was slow to come back last time (a thread that stops calling
 * must not keep others waiting). A gate parked longer than `grace` goes to the first waiter, or to
 * whoever comes if none waits.
 *
 * Only the first waiter watches the owner; the others sleep until they are first. If the owner's
 * call has run for a gate wait (`wait_ns`) and it does not hold the GIL — it let go of it for
 * inference or I/O — every waiter leaves the queue and goes for the GIL directly, so such calls
 * still run in parallel. While its call holds the GIL (it computes, or its thread waits for a CPU
 * on a busy machine), going for the GIL could run nothing sooner, so waiters wait on instead of
 * piling onto the GIL — for up to Python's switch interval (5 ms): longer calls get the waiting
 * callers interleaved by Python's own switching, as without the gate, and a call that holds the GIL
 * while it waits for another loader thread's call cannot wait for ever. The time between looks doubles (up to `16 × wait_ns`) while calls keep
 * completing, and falls back to `wait_ns` once waiters went for the GIL: a busy owner is rarely
 * disturbed, and calls that let go of the GIL are noticed within one look (a gate wait once they
 * are what the owner makes).
 *
 * A waiter record lives on its thread's stack: once it is set PROMOTED or DIRECT it is no longer in
 * the queue and the setter touches it no more, but for one FUTEX_WAKE on its address (which writes
 * nothing).
 */
#define _GNU_SOURCE
#include "CPythonShims.h"
#include <linux/futex.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

enum {
    QUEUED = 0,    /* waiting in the queue */
    PROMOTED = 1,  /* handed the gate: the thread owns it now */
    DIRECT = 2,    /* told to go for the GIL directly (the owner is in a long call) */
    FIRST = 0x100, /* with QUEUED: first in the queue, it watches the owner */
};

typedef struct Waiter {
    struct Waiter *next, *previous;
    const void *thread; /* the waiting thread's token */
    const void *pythonState; /* its Python thread state */
    uint32_t state;     /* the futex word; changed with atomics under `lock` */
} Waiter;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
/* Under lock: */
static const void *owner;        /* the owning thread's token (the address of its `held`), or NULL */
static const void *ownerState;   /* the owning thread's Python thread state */
static int inside;               /* the owner is inside a call (else its gate is parked) */
static long long parkedAt;       /* when the owner last left a call */
static long long callStarted;    /* when the owner's call began, as far as known (see callUnknown) */
static int callUnknown;          /* the owner took the gate back without reading the clock */
static long long stintStarted;   /* when the owner got the gate */
static Waiter *head, *tail;      /* the waiters, oldest first */
static long long stint_ns = 500000, grace_ns = 10000;
static long long watch;          /* how long the first waiter sleeps between looks at a busy owner */
#define WATCH_MOST 16            /* the longest watch, in gate waits */
#define LONG_CALL_NS 5000000LL   /* CPython's default switch interval (sys.getswitchinterval()) */
/* Atomic: */
static uint64_t progress;        /* calls the owners completed (changed under lock, read without) */
static long handovers, directs;  /* for the metrics */

/* Per thread: */
static __thread int held;        /* the calling thread owns the gate and is inside a call */
static __thread long long lastLeft = -1; /* when this thread last left a call as owner */
static __thread int slowReturn;  /* this thread came back a gate wait or more after its last call */

static void futex_wait(uint32_t *word, uint32_t expected, const struct timespec *deadline) {
    /* FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC deadline; NULL waits without one. */
    syscall(SYS_futex, word, FUTEX_WAIT_BITSET | FUTEX_PRIVATE_FLAG, expected, deadline, NULL,
            FUTEX_BITSET_MATCH_ANY);
}

static void futex_wake(uint32_t *word) { syscall(SYS_futex, word, FUTEX_WAKE | FUTEX_PRIVATE_FLAG, 1, NULL, NULL, 0); }

static struct timespec timespec_of(long long ns) {
    struct timespec time = {ns / 1000000000LL, ns % 1000000000LL};
    return time;
}

/* Queue changes (lock held). A waiter that becomes first is marked; the caller wakes it. */
static void append(Waiter *waiter) {
    waiter->next = NULL;
    waiter->previous = tail;
    if (tail != NULL) tail->next = waiter;
    else head = waiter;
    tail = waiter;
    if (head == waiter) __atomic_store_n(&waiter->state, QUEUED | FIRST, __ATOMIC_RELAXED);
}

static Waiter *unlink_waiter(Waiter *waiter) {
    if (waiter->previous != NULL) waiter->previous->next = waiter->next;
    else head = waiter->next;
    if (waiter->next != NULL) waiter->next->previous = waiter->previous;
    else tail = waiter->previous;
    if (waiter->previous == NULL && head != NULL) { /* the next one is first now */
        __atomic_store_n(&head->state, QUEUED | FIRST, __ATOMIC_RELEASE);
        return head;
    }
    return NULL;
}

/* Takes the gate for the calling thread (lock held). */
static void own(long long now) {
    owner = &held;
    ownerState = aiges_py_own_thread_state();
    inside = 1;
    stintStarted = callStarted = now;
    callUnknown = 0;
}

/* Hands the gate to the first waiter (lock held). Returns the waiters to wake (up to two). */
static void pass_to_first(long long now, Waiter **promoted, Waiter **first) {
    Waiter *next = head;
    *first = unlink_waiter(next);
    owner = next->thread;
    ownerState = next->pythonState;
    inside = 1; /* it will be in a moment: nobody takes the gate meanwhile */
    stintStarted = callStarted = now;
    callUnknown = 0;
    __atomic_store_n(&next->state, PROMOTED, __ATOMIC_RELEASE);
    __atomic_fetch_add(&handovers, 1, __ATOMIC_RELAXED);
    *promoted = next;
}

static void wake(Waiter *waiter) {
    if (waiter != NULL) futex_wake(&waiter->state);
}

void aiges_gate_configure(long long stint, long long grace) {
    pthread_mutex_lock(&lock);
    stint_ns = stint;
    grace_ns = grace;
    pthread_mutex_unlock(&lock);
}

int aiges_gate_enter(long long wait_ns) {
    if (wait_ns <= 0 || held) return 0;
    Waiter *promoted = NULL, *first = NULL;
    pthread_mutex_lock(&lock);
    if (owner == &held && head == NULL) { /* parked, ours, nobody waits: the common case, no clock read */
        inside = 1;
        callUnknown = 1;
        slowReturn = 0;
        pthread_mutex_unlock(&lock);
        held = 1;
        return 1;
    }
    long long now = aiges_monotonic_ns();
    slowReturn = lastLeft < 0 || now - lastLeft >= wait_ns;
    if (owner == &held) { /* parked, still ours, and others wait: our stint may go on */
        if (now - stintStarted < stint_ns) {
            inside = 1;
            callStarted = now;
            callUnknown = 0;
            pthread_mutex_unlock(&lock);
            held = 1;
            return 1;
        }
        pass_to_first(now, &promoted, &first); /* our stint is over: the first waiter's turn */
    } else if (owner == NULL || (!inside && now - parkedAt >= grace_ns)) {
        if (head == NULL) { /* free, or parked by a thread that did not come back */
            own(now);
            pthread_mutex_unlock(&lock);
            held = 1;
            return 1;
        }
        pass_to_first(now, &promoted, &first); /* not back, and others wait: theirs first */
    }
    Waiter waiter = {.thread = &held, .pythonState = aiges_py_own_thread_state(), .state = QUEUED};
    append(&waiter);
    if (callUnknown) { /* the owner's call began before now: count its age from here (it can only be older) */
        callStarted = now;
        callUnknown = 0;
    }
    /* Parked by a thread that may be back in a moment: look again when its grace is over. */
    long long deadline = !inside && parkedAt + grace_ns < now + wait_ns ? parkedAt + grace_ns : -1;
    pthread_mutex_unlock(&lock);
    wake(promoted);
    wake(first);

    uint64_t seen = __atomic_load_n(&progress, __ATOMIC_RELAXED);
    for (;;) {
        uint32_t state = __atomic_load_n(&waiter.state, __ATOMIC_ACQUIRE);
        if (state == PROMOTED) {
            held = 1;
            return 1;
        }
        if (state == DIRECT) return 0;
        if (!(state & FIRST)) { /* not first: sleep until something changes */
            futex_wait(&waiter.state, state, NULL);
            continue;
        }
        now = aiges_monotonic_ns();
        if (deadline < 0) {
            long long every = __atomic_load_n(&watch, __ATOMIC_RELAXED); /* changed under lock */
            deadline = now + (every < wait_ns ? wait_ns : every);
        }
        if (now < deadline) {
            struct timespec until = timespec_of(deadline);
            futex_wait(&waiter.state, state, &until);
            continue;
        }
        /* First, and the watch is due: look at the owner. */
        pthread_mutex_lock(&lock);
        state = __atomic_load_n(&waiter.state, __ATOMIC_ACQUIRE);
        if (state == PROMOTED || state == DIRECT) {
            pthread_mutex_unlock(&lock);
            continue;
        }
        uint64_t current = __atomic_load_n(&progress, __ATOMIC_RELAXED);
        if (owner == NULL || (!inside && now - parkedAt >= grace_ns)) {
            first = unlink_waiter(&waiter); /* free, or parked by a thread that did not come back */
            own(now);
            pthread_mutex_unlock(&lock);
            wake(first);
            held = 1;
            return 1;
        }
        if (!inside) { /* parked: it may be back in a moment */
            deadline = parkedAt + grace_ns;
        } else if (current != seen) { /* calls complete: watch less often */
            long long every = watch < wait_ns ? 2 * wait_ns : watch < WATCH_MOST * wait_ns ? 2 * watch : watch;
            __atomic_store_n(&watch, every, __ATOMIC_RELAXED);
            deadline = now + every;
        } else if (now - callStarted < wait_ns) { /* its call is young */
            deadline = callStarted + wait_ns;
        } else if (now - callStarted < LONG_CALL_NS && aiges_py_gil_held_by(ownerState) == 1) {
            /* Its call holds the GIL (it computes, or its thread waits for a CPU): going for the GIL
               could run nothing sooner. A call that holds it longer than Python's switch interval
               gets the others interleaved by Python's own switching, as without the gate (and a call
               that waits, holding the GIL, for another loader thread's call cannot wait for ever). */
            deadline = now + wait_ns;
        } else {
            deadline = -2; /* a call a gate wait old that let go of the GIL */
        }
        seen = current;
        if (deadline != -2) {
            pthread_mutex_unlock(&lock);
            continue;
        }
        /* The owner has been in one call for a whole watch without the GIL: everyone goes for the GIL
           directly, to run meanwhile. */
        __atomic_store_n(&watch, wait_ns, __ATOMIC_RELAXED);
        Waiter *others = head;
        head = tail = NULL;
        pthread_mutex_unlock(&lock);
        while (others != NULL) {
            Waiter *next = others->next; /* read before the waiter may return */
            if (others != &waiter) {
                __atomic_store_n(&others->state, DIRECT, __ATOMIC_RELEASE);
                futex_wake(&others->state);
            }
            others = next;
        }
        __atomic_fetch_add(&directs, 1, __ATOMIC_RELAXED);
        return 0;
    }
}

/* Ends the owner's call: parks the gate, or hands it on (`now_please`, the stint is over, or this
 * thread was slow to come back last time and others wait). */
static void leave(int now_please) {
    if (!held) return;
    held = 0;
    long long now = aiges_monotonic_ns();
    lastLeft = now;
    Waiter *promoted = NULL, *first = NULL;
    pthread_mutex_lock(&lock);
    /* Only changed here, under the lock: a plain add, published atomically to the watching waiter. */
    __atomic_store_n(&progress, __atomic_load_n(&progress, __ATOMIC_RELAXED) + 1, __ATOMIC_RELAXED);
    if (owner == &held) {
        if (head != NULL && (now_please || slowReturn || now - stintStarted >= stint_ns)) {
            pass_to_first(now, &promoted, &first);
        } else if (now_please) {
            owner = NULL;
        } else {
            inside = 0;
            parkedAt = now;
        }
    }
    pthread_mutex_unlock(&lock);
    wake(promoted);
    wake(first);
}

void aiges_gate_leave(void) { leave(0); }

void aiges_gate_release(void) { leave(1); }

int aiges_gate_held(void) { return held; }

long aiges_gate_handovers(void) { return __atomic_load_n(&handovers, __ATOMIC_RELAXED); }

long aiges_gate_directs(void) { return __atomic_load_n(&directs, __ATOMIC_RELAXED); }
