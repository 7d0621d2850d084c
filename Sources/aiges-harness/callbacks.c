#include "callbacks.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t changed = PTHREAD_COND_INITIALIZER;
static Pending *records;
static int recordCount, unknown, nestedExec;
static Plugin *target;

void callbacks_reset(Plugin *plugin, int count, int nested) {
    callbacks_clear();
    pthread_mutex_lock(&lock);
    records = calloc((size_t)count, sizeof *records);
    if (records == NULL) exit(4);
    recordCount = count;
    unknown = 0;
    nestedExec = nested;
    target = plugin;
    pthread_mutex_unlock(&lock);
}

const char *callbacks_register(int index, const char *tag) {
    pthread_mutex_lock(&lock);
    Pending *record = &records[index];
    memset(record, 0, sizeof *record);
    strncpy(record->tag, tag, sizeof record->tag - 1);
    record->tagPointer = record->tag;
    pthread_mutex_unlock(&lock);
    return record->tag;
}

static void *nested_exec(void *unused) {
    (void)unused;
    Pair sid = {"sid", "nested"};
    NodeSpec spec = {.key = "nested", .bytes = (unsigned char *)"nested", .len = 6, .status = DataOnce};
    pParamList params = params_build(&sid, 1);
    pDataList request = data_build(&spec, 1, NULL);
    pDataList response = NULL;
    long code = target->exec("nested", params, request, &response, NULL, 0);
    params_free(params);
    data_free(request);
    if (response != NULL) target->execFree("nested", &response);
    return (void *)code;
}

static void append(Pending *record, pDataList node) {
    int slot = 0;
    while (slot < record->keyCount && strcmp(record->keys[slot], node->key ? node->key : "") != 0) slot++;
    if (slot == record->keyCount) {
        if (record->keyCount == MAX_KEYS) return;
        strncpy(record->keys[slot], node->key ? node->key : "", sizeof record->keys[slot] - 1);
        record->keyCount++;
    }
    if (node->len == 0) return;
    unsigned char *grown = realloc(record->data[slot], record->len[slot] + node->len);
    if (grown == NULL) exit(4);
    memcpy(grown + record->len[slot], node->data, node->len);
    record->data[slot] = grown;
    record->len[slot] += node->len;
}

int callbacks_receive(const void *usrTag, pDataList respData, int ret) {
    if (nestedExec) {
        /* Blocks until another thread's wrapperExec is done: deadlocks if the plugin holds the GIL here. */
        pthread_t thread;
        void *code = NULL;
        if (pthread_create(&thread, NULL, nested_exec, NULL) == 0) pthread_join(thread, &code);
    }
    pthread_mutex_lock(&lock);
    Pending *record = NULL;
    for (int i = 0; usrTag != NULL && i < recordCount; i++) {
        if (records[i].tagPointer != NULL && strcmp(records[i].tag, (const char *)usrTag) == 0) record = &records[i];
    }
    int result = 0;
    if (record == NULL) {
        unknown++;
        result = -1;
    } else if (record->finished) {
        record->late++;
        result = -1;
    } else {
        if (usrTag != record->tagPointer) record->wrongPointer++;
        record->results++;
        record->lastRet = ret;
        for (pDataList node = respData; node != NULL; node = node->next) {
            record->nodes++;
            append(record, node);
            if (node->status == DataEnd || node->status == DataOnce) record->finished = 1;
        }
        if (ret != 0) record->finished = 1;
    }
    pthread_cond_broadcast(&changed);
    pthread_mutex_unlock(&lock);
    return result;
}

void callbacks_abandon(int index) {
    pthread_mutex_lock(&lock);
    records[index].tagPointer = NULL;
    pthread_mutex_unlock(&lock);
}

int callbacks_wait(int waitMs) {
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += waitMs / 1000;
    deadline.tv_nsec += (long)(waitMs % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) deadline.tv_sec++, deadline.tv_nsec -= 1000000000L;
    pthread_mutex_lock(&lock);
    int open;
    for (;;) {
        open = 0;
        for (int i = 0; i < recordCount; i++) open += records[i].tagPointer != NULL && !records[i].finished;
        if (open == 0 || pthread_cond_timedwait(&changed, &lock, &deadline) == ETIMEDOUT) break;
    }
    pthread_mutex_unlock(&lock);
    return open;
}

Pending *callbacks_get(int index) { return &records[index]; }

int callbacks_unknown(void) {
    pthread_mutex_lock(&lock);
    int count = unknown;
    pthread_mutex_unlock(&lock);
    return count;
}

void callbacks_clear(void) {
    pthread_mutex_lock(&lock);
    for (int i = 0; i < recordCount; i++) {
        for (int k = 0; k < records[i].keyCount; k++) free(records[i].data[k]);
    }
    free(records);
    records = NULL;
    recordCount = 0;
    pthread_mutex_unlock(&lock);
}
