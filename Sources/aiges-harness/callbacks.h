/*
 * A loader-style wrapperCallback: results are matched to requests by the usrTag *string*,
 * copied inside the callback, and any result after a request's final one is refused (-1).
 */
#ifndef AIGES_HARNESS_CALLBACKS_H
#define AIGES_HARNESS_CALLBACKS_H

#include "plugin.h"

#define MAX_KEYS 8

/* What arrived for one request or push session. */
typedef struct {
    char tag[96];
    const char *tagPointer; /* the pointer handed to the plugin; callbacks must pass it back */
    int results;            /* callbacks accepted */
    int finished;           /* a DataEnd/DataOnce node or ret != 0 was seen */
    int lastRet;
    int late;               /* callbacks refused because the request had finished */
    int wrongPointer;       /* callbacks whose usrTag pointer was not the one given */
    int nodes;
    char keys[MAX_KEYS][64]; /* output data concatenated per key */
    unsigned char *data[MAX_KEYS];
    size_t len[MAX_KEYS];
    int keyCount;
} Pending;

/* Prepares the recorder for `count` requests; `nested` makes each callback wait for a wrapperExec
   run on another thread (with `plugin`) before returning. */
void callbacks_reset(Plugin *plugin, int count, int nested);
/* Registers request `index` under `tag` (copied); returns the stable pointer to give the plugin. */
const char *callbacks_register(int index, const char *tag);
/* The loader callback. */
int callbacks_receive(const void *usrTag, pDataList respData, int ret);
/* Forgets request `index` (its call failed, no callback will come). */
void callbacks_abandon(int index);
/* Waits until every registered request finished or waitMs passed; returns how many are unfinished. */
int callbacks_wait(int waitMs);
/* Record `index` (valid until the next reset). */
Pending *callbacks_get(int index);
/* Callbacks whose usrTag matched no registered request. */
int callbacks_unknown(void);
/* Frees what the records hold. */
void callbacks_clear(void);

#endif
