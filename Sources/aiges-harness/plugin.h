/*
 * The harness's view of a loaded libwrapper.so and the loader-style lists it builds.
 */
#ifndef AIGES_HARNESS_PLUGIN_H
#define AIGES_HARNESS_PLUGIN_H

#include <stddef.h>

#include "aiges/wrapper.h"
#include "aiges_loader.h"

/* A key/value pair from the command line. */
typedef struct {
    char *key;
    char *value;
} Pair;

/* One request node template: bytes are copied into fresh loader-style memory per call. */
typedef struct {
    char *key;
    unsigned char *bytes;
    size_t len;
    DataType type;
    DataStatus status;
    Pair *desc;
    int descCount;
} NodeSpec;

/* A ParamList with a NULL-key head node followed by the pairs, in malloc'd memory. */
pParamList params_build(const Pair *pairs, int count);
/* Frees a list from params_build, poisoning it first. */
void params_free(pParamList list);

/* A DataList with a NULL-key head node followed by copies of the specs (suffix appended to each payload). */
pDataList data_build(const NodeSpec *specs, int count, const char *suffix);
/* Poisons every byte of a list from data_build and frees it, as the loader does after each call. */
void data_free(pDataList list);

/* Prints each output node: key, type, status, len, desc and a preview of the data. */
void print_output(pDataList list, const char *indent);

/* Writes each output node's data to dir/KEY; returns -1 on failure. */
int write_output(pDataList list, const char *dir);

#endif
