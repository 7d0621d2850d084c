/*
 * The loader callback. Like the real loader it finds the request by the usrTag *string*, copies
 * the output inside the callback, and refuses (-1) anything after a request's final result (a node
 * with DataEnd/DataOnce, or ret != 0). It also records timings and counts for the scenarios, and
 * runs a scenario's hook inside the callback with no driver lock held (hooks may block, sleep or
 * call back into the plugin).
 */
#include <errno.h>
#include <stdint.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "faults.h"

/* Tags by name: a chained hash table (newest first in each chain). Tags are never freed: the plugin
   may call back with a tag's pointer at any time; retired ones are reused after a quarantine. */
#define BUCKETS 4096
#define QUARANTINE_NS 1000000000LL
#define RETIRED_TEXT "(retired tag)"

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t changed;
static pthread_once_t condOnce = PTHREAD_ONCE_INIT;
static Tag *buckets[BUCKETS];
static Tag *retiredFirst, *retiredLast; /* oldest first */
static int total, unknown;
static int64_t lastNs;

/* The condition variable waits on CLOCK_MONOTONIC, so bounds are immune to clock changes. */
static void make_cond(void) {
    pthread_condattr_t attributes;
    pthread_condattr_init(&attributes);
    pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC);
    pthread_cond_init(&changed, &attributes);
    pthread_condattr_destroy(&attributes);
}

/* FNV-1a of a tag string. */
static unsigned bucket_of(const char *text) {
    uint32_t hash = 2166136261u;
    for (const unsigned char *c = (const unsigned char *)text; *c != '\0'; c++) hash = (hash ^ *c) * 16777619u;
    return hash % BUCKETS;
}

Tag *tag_new(const char *format, ...) {
    pthread_once(&condOnce, make_cond);
    pthread_mutex_lock(&lock);
    Tag *tag = NULL;
    if (retiredFirst != NULL && now_ns() - retiredFirst->retiredNs > QUARANTINE_NS) {
        tag = retiredFirst;
        retiredFirst = tag->nextRetired;
        if (retiredFirst == NULL) retiredLast = NULL;
    }
    pthread_mutex_unlock(&lock);
    if (tag == NULL) {
        tag = malloc(sizeof *tag);
        if (tag == NULL) exit(4);
    }
    memset(tag, 0, sizeof *tag);
    va_list arguments;
    va_start(arguments, format);
    vsnprintf(tag->text, sizeof tag->text, format, arguments);
    va_end(arguments);
    pthread_mutex_lock(&lock);
    unsigned bucket = bucket_of(tag->text);
    tag->chain = buckets[bucket];
    buckets[bucket] = tag;
    pthread_mutex_unlock(&lock);
    return tag;
}

int tag_retire(Tag *tag) {
    pthread_mutex_lock(&lock);
    if (tag->hooksRunning > 0) {
        pthread_mutex_unlock(&lock);
        return -1;
    }
    for (Tag **link = &buckets[bucket_of(tag->text)]; *link != NULL; link = &(*link)->chain) {
        if (*link == tag) {
            *link = tag->chain;
            break;
        }
    }
    tag->chain = NULL;
    snprintf(tag->text, sizeof tag->text, "%s", RETIRED_TEXT);
    tag->hook = NULL;
    list_copy_clear(&tag->output);
    tag->retiredNs = now_ns();
    tag->nextRetired = NULL;
    if (retiredLast != NULL) {
        retiredLast->nextRetired = tag;
    } else {
        retiredFirst = tag;
    }
    retiredLast = tag;
    pthread_mutex_unlock(&lock);
    return 0;
}

/* The tag whose string equals usrTag (the latest registered wins). Lock held. */
static Tag *find(const void *usrTag) {
    if (usrTag == NULL) return NULL;
    for (Tag *tag = buckets[bucket_of(usrTag)]; tag != NULL; tag = tag->chain) {
        if (strcmp(tag->text, (const char *)usrTag) == 0) return tag;
    }
    return NULL;
}

static int is_final(pDataList list, int ret) {
    if (ret != 0) return 1;
    for (pDataList node = list; node != NULL; node = node->next) {
        if (node->key != NULL && (node->status == DataEnd || node->status == DataOnce)) return 1;
    }
    return 0;
}

int tracker_callback(const void *usrTag, pDataList respData, int ret) {
    int64_t started = now_ns();
    pthread_once(&condOnce, make_cond);
    pthread_mutex_lock(&lock);
    total++;
    lastNs = started;
    Tag *tag = find(usrTag);
    if (tag == NULL) {
        unknown++;
        pthread_cond_broadcast(&changed);
        pthread_mutex_unlock(&lock);
        return -1;
    }
    int call = ++tag->callbacks;
    int result = 0;
    if (usrTag != (const void *)tag->text) tag->wrongPointer++;
    if (tag->closedNs != 0 && started >= tag->closedNs) tag->afterClose++;
    if (tag->finished) {
        tag->afterFinal++;
        result = -1;
    } else {
        if (tag->accepted++ == 0) {
            tag->firstNs = started;
            tag->firstRet = ret;
        }
        tag->lastRet = ret;
        list_copy(respData, &tag->output); /* the plugin frees respData after we return */
        if (is_final(respData, ret)) {
            tag->finished = 1;
            tag->finalNs = started;
        }
    }
    tag->hooksRunning++;
    pthread_cond_broadcast(&changed);
    pthread_mutex_unlock(&lock);

    if (tag->hook != NULL) tag->hook(tag, call, respData, ret);

    pthread_mutex_lock(&lock);
    tag->hooksRunning--;
    tag->hooksDone++;
    pthread_cond_broadcast(&changed);
    pthread_mutex_unlock(&lock);
    return result;
}

void tag_close(Tag *tag) {
    pthread_mutex_lock(&lock);
    tag->closedNs = now_ns();
    pthread_mutex_unlock(&lock);
}

void tracker_lock(void) { pthread_mutex_lock(&lock); }
void tracker_unlock(void) { pthread_mutex_unlock(&lock); }

void tracker_notify(void) {
    pthread_once(&condOnce, make_cond);
    pthread_mutex_lock(&lock);
    pthread_cond_broadcast(&changed);
    pthread_mutex_unlock(&lock);
}

int tracker_wait(int (*predicate)(void *), void *argument, int timeoutMs) {
    pthread_once(&condOnce, make_cond);
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += timeoutMs / 1000;
    deadline.tv_nsec += (long)(timeoutMs % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) deadline.tv_sec++, deadline.tv_nsec -= 1000000000L;
    pthread_mutex_lock(&lock);
    int satisfied;
    while (!(satisfied = predicate(argument))) {
        if (pthread_cond_timedwait(&changed, &lock, &deadline) == ETIMEDOUT) {
            satisfied = predicate(argument);
            break;
        }
    }
    pthread_mutex_unlock(&lock);
    return satisfied;
}

int tracker_total(void) {
    pthread_mutex_lock(&lock);
    int count = total;
    pthread_mutex_unlock(&lock);
    return count;
}

int tracker_unknown(void) {
    pthread_mutex_lock(&lock);
    int count = unknown;
    pthread_mutex_unlock(&lock);
    return count;
}

int64_t tracker_last_ns(void) {
    pthread_mutex_lock(&lock);
    int64_t last = lastNs;
    pthread_mutex_unlock(&lock);
    return last;
}

int all_finished(void *tagSet) {
    TagSet *set = tagSet;
    for (int i = 0; i < set->count; i++) {
        if (!set->tags[i]->finished) return 0;
    }
    return 1;
}

int all_called(void *tagSet) {
    TagSet *set = tagSet;
    for (int i = 0; i < set->count; i++) {
        if (set->tags[i]->callbacks == 0) return 0;
    }
    return 1;
}

int all_hooks_done(void *tagSet) {
    TagSet *set = tagSet;
    for (int i = 0; i < set->count; i++) {
        if (set->tags[i]->hooksDone == 0 || set->tags[i]->hooksRunning > 0) return 0;
    }
    return 1;
}
