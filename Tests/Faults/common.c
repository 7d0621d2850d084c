/*
 * Run state, reporting and the request/session helpers the scenarios share.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "faults.h"

Run R;

static pthread_mutex_t reportLock = PTHREAD_MUTEX_INITIALIZER;
static char firstFailure[512];
static int failureCount;
static char stepText[256] = "starting";
static __thread char threadStepText[256]; /* the calling thread's own latest step */
static volatile int abandonedRun;

int64_t now_ns(void) {
    struct timespec time;
    clock_gettime(CLOCK_MONOTONIC, &time);
    return (int64_t)time.tv_sec * 1000000000LL + time.tv_nsec;
}

double ms_since(int64_t start) { return (double)(now_ns() - start) / 1e6; }

void sleep_ms(int ms) {
    struct timespec time = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&time, &time) != 0 && errno == EINTR) {
    }
}

void note(const char *format, ...) {
    va_list arguments;
    va_start(arguments, format);
    pthread_mutex_lock(&reportLock);
    printf("  ");
    vprintf(format, arguments);
    printf("\n");
    fflush(stdout);
    pthread_mutex_unlock(&reportLock);
    va_end(arguments);
}

void fail(const char *format, ...) {
    char text[512];
    va_list arguments;
    va_start(arguments, format);
    vsnprintf(text, sizeof text, format, arguments);
    va_end(arguments);
    pthread_mutex_lock(&reportLock);
    if (failureCount++ == 0) snprintf(firstFailure, sizeof firstFailure, "%s", text);
    printf("  fail: %s\n", text);
    fflush(stdout);
    pthread_mutex_unlock(&reportLock);
}

int failures(void) {
    pthread_mutex_lock(&reportLock);
    int count = failureCount;
    pthread_mutex_unlock(&reportLock);
    return count;
}

const char *first_failure(void) { return firstFailure; }

void step(const char *format, ...) {
    va_list arguments;
    va_start(arguments, format);
    pthread_mutex_lock(&reportLock);
    vsnprintf(stepText, sizeof stepText, format, arguments);
    snprintf(threadStepText, sizeof threadStepText, "%s", stepText);
    pthread_mutex_unlock(&reportLock);
    va_end(arguments);
}

/* Read by the watchdog and the crash handler; a torn read there only garbles a message. */
const char *current_step(void) { return stepText; }
const char *thread_step(void) { return threadStepText; }

void abandon(void) { abandonedRun = 1; }
int abandoned(void) { return abandonedRun; }

const char *config_value(const char *key) {
    for (int i = 0; i < R.configCount; i++) {
        if (strcmp(R.config[i].key, key) == 0) return R.config[i].value;
    }
    return NULL;
}

int config_int(const char *key, int fallback) {
    const char *value = config_value(key);
    return value != NULL && value[0] != '\0' ? atoi(value) : fallback;
}

long rss_kib(void) {
    FILE *file = fopen("/proc/self/statm", "r");
    long size = 0, resident = 0;
    if (file == NULL) return -1;
    if (fscanf(file, "%ld %ld", &size, &resident) != 2) resident = -1;
    fclose(file);
    return resident < 0 ? -1 : resident * (sysconf(_SC_PAGESIZE) / 1024);
}

int init_plugin(void) {
    step("wrapperInit");
    pParamList config = params_build(R.config, R.configCount);
    int code = P.init(config);
    params_free(config);
    if (code != 0) fail("wrapperInit returned %d: %s", code, error_text(code));
    return code;
}

int fini_plugin(void) {
    step("wrapperFini");
    int code = P.fini();
    if (code != 0) fail("wrapperFini returned %d: %s", code, error_text(code));
    return code;
}

int exec_echo(const char *usrTag, const char *text, char *why, size_t size) {
    char tag[64];
    snprintf(tag, sizeof tag, "%s", usrTag);
    Pair pairs[] = {{"sid", tag}, {"mode", "echo"}};
    pParamList params = params_build(pairs, 2);
    pDataList request = data_text("input", text, DataOnce);
    pDataList response = NULL;
    int code = P.exec(tag, params, request, &response, NULL, 0);
    params_free(params);
    data_free(request);
    if (code != 0) {
        snprintf(why, size, "wrapperExec returned %d: %s", code, error_text(code));
        return code;
    }
    ListCopy copy = {0};
    list_copy(response, &copy);
    memset(tag, POISON, sizeof tag); /* the loader frees usrTag before wrapperExecFree */
    int freed = response != NULL ? P.execFree(tag, &response) : 0;
    char expected[256];
    snprintf(expected, sizeof expected, "echo:%s", text);
    const NodeCopy *echo = list_find(&copy, "echo");
    int result = 0;
    if (echo == NULL || echo->len != strlen(expected) || memcmp(echo->data, expected, echo->len) != 0) {
        snprintf(why, size, "wrapperExec output \"echo\" is %s%.*s%s, expected \"%s\"", echo ? "\"" : "",
                 echo ? (int)echo->len : 7, echo ? (const char *)echo->data : "missing", echo ? "\"" : "", expected);
        result = -1;
    } else if (freed != 0) {
        snprintf(why, size, "wrapperExecFree returned %d: %s", freed, error_text(freed));
        result = -1;
    }
    list_copy_clear(&copy);
    return result;
}

int send_async(Tag *tag, const char *sid, const Pair *extra, int extraCount, const char *text, int timeoutMs) {
    Pair pairs[16];
    int count = 0;
    pairs[count++] = (Pair){"sid", sid};
    for (int i = 0; i < extraCount && count < 16; i++) pairs[count++] = extra[i];
    pParamList params = params_build(pairs, count);
    pDataList request = data_text("input", text, DataOnce);
    tag->enteredNs = now_ns();
    int code = P.execAsync(tag->text, params, request, tracker_callback, timeoutMs, NULL, 0);
    tag->returnedNs = now_ns();
    tag->asyncCode = code;
    params_free(params);
    data_free(request);
    return code;
}

const void *open_session(Tag *tag, int push, const char *sid, const Pair *extra, int extraCount, int *code) {
    Pair pairs[16];
    int count = 0;
    pairs[count++] = (Pair){"sid", sid};
    for (int i = 0; i < extraCount && count < 16; i++) pairs[count++] = extra[i];
    pParamList params = params_build(pairs, count);
    *code = 0;
    const void *handle = P.create(tag->text, params, push ? tracker_callback : NULL, NULL, 0, code);
    params_free(params);
    tag->handle = handle;
    if (handle == NULL && *code == 0) *code = -1;
    return handle;
}

int write_text(const void *handle, const char *text, DataStatus status) {
    pDataList request = data_text("input", text, status);
    int code = P.write(handle, request);
    data_free(request);
    return code;
}

/* Counts the record file's lines starting with prefix; copies the first into found and stores its
   line number (1-based) in *number. */
static int scan_record(const char *prefix, char *found, size_t size, int *number) {
    FILE *file = fopen(R.record, "r");
    if (file == NULL) return 0;
    char line[1024];
    int count = 0, lineNumber = 0;
    size_t prefixLen = strlen(prefix);
    while (fgets(line, sizeof line, file) != NULL) {
        lineNumber++;
        if (strncmp(line, prefix, prefixLen) != 0) continue;
        if (count++ == 0) {
            if (found != NULL) {
                line[strcspn(line, "\n")] = '\0';
                snprintf(found, size, "%s", line);
            }
            if (number != NULL) *number = lineNumber;
        }
    }
    fclose(file);
    return count;
}

int record_count(const char *prefix) { return scan_record(prefix, NULL, 0, NULL); }

int record_find(const char *prefix, char *line, size_t size) { return scan_record(prefix, line, size, NULL) > 0; }

int record_line(const char *prefix) {
    int number = 0;
    scan_record(prefix, NULL, 0, &number);
    return number;
}

int wait_record(const char *prefix, int timeoutMs) {
    int64_t started = now_ns();
    while (record_count(prefix) == 0) {
        if (ms_since(started) >= timeoutMs) return 0;
        sleep_ms(2);
    }
    return 1;
}

int join_within(pthread_t thread, int timeoutMs, const char *what) {
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += timeoutMs / 1000;
    deadline.tv_nsec += (long)(timeoutMs % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) deadline.tv_sec++, deadline.tv_nsec -= 1000000000L;
    int error = pthread_clockjoin_np(thread, NULL, CLOCK_MONOTONIC, &deadline);
    if (error == 0) return 0;
    fail("%s did not finish within %d ms (%s)", what, timeoutMs, error == ETIMEDOUT ? "hang" : strerror(error));
    abandon();
    return -1;
}
