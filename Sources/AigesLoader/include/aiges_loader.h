/*
 * Loading libwrapper.so exactly as the AIGES loader does, for the C tools (aiges-harness,
 * aiges-faults): dlopen(path, RTLD_NOW) without RTLD_GLOBAL, then dlsym of all fifteen symbols.
 */
#ifndef AIGES_LOADER_H
#define AIGES_LOADER_H

#include "aiges/wrapper.h"

/* The fifteen entry points of a loaded libwrapper.so. */
typedef struct {
    void *library;
    int (*setCtrl)(CtrlType, void *);
    int (*init)(pConfig);
    int (*fini)(void);
    const char *(*error)(int);
    const char *(*version)(void);
    int (*loadRes)(pDataList, unsigned int);
    int (*unloadRes)(unsigned int);
    const void *(*create)(const char *, pParamList, wrapperCallback, unsigned int[], int, int *);
    int (*write)(const void *, pDataList);
    int (*read)(const void *, pDataList *);
    int (*destroy)(const void *);
    int (*exec)(const char *, pParamList, pDataList, pDataList *, unsigned int[], int);
    int (*execFree)(const char *, pDataList *);
    int (*execAsync)(const char *, pParamList, pDataList, wrapperCallback, int, unsigned int[], int);
    const char *(*debugInfo)(const void *);
} Plugin;

/* dlopen(path, RTLD_NOW) and resolve every symbol into *plugin; prints why (prefixed "who: ") and
   returns -1 on failure (a missing symbol is a failure, as for the loader). */
int aiges_plugin_load(Plugin *plugin, const char *path, const char *who);

/* libwrapper.so beside the running executable if it exists, else "./libwrapper.so" (static storage). */
const char *aiges_default_library(void);

#endif
