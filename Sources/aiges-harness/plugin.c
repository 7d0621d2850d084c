#include "plugin.h"

#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The loader builds these structs directly: their layout is part of the ABI. */
_Static_assert(sizeof(struct ParamList) == 32, "ParamList layout");
_Static_assert(offsetof(struct ParamList, vlen) == 16, "ParamList.vlen offset");
_Static_assert(sizeof(struct DataList) == 48, "DataList layout");
_Static_assert(offsetof(struct DataList, len) == 16, "DataList.len offset");
_Static_assert(offsetof(struct DataList, desc) == 32, "DataList.desc offset");

#define POISON 0xDB

static void *checked_malloc(size_t size) {
    void *memory = malloc(size == 0 ? 1 : size);
    if (memory == NULL) {
        fprintf(stderr, "harness: out of memory (%zu bytes)\n", size);
        exit(4);
    }
    return memory;
}

static char *copy_string(const char *text) {
    size_t len = strlen(text);
    char *copy = checked_malloc(len + 1);
    memcpy(copy, text, len + 1);
    return copy;
}

static void poison_string(char *text) {
    if (text != NULL) {
        memset(text, POISON, strlen(text));
        free(text);
    }
}

pParamList params_build(const Pair *pairs, int count) {
    pParamList head = calloc(1, sizeof *head); /* the loader's NULL-key head node */
    if (head == NULL) exit(4);
    pParamList tail = head;
    for (int i = 0; i < count; i++) {
        pParamList node = calloc(1, sizeof *node);
        if (node == NULL) exit(4);
        node->key = copy_string(pairs[i].key);
        node->value = copy_string(pairs[i].value);
        node->vlen = (unsigned int)strlen(pairs[i].value);
        tail->next = node;
        tail = node;
    }
    return head;
}

void params_free(pParamList list) {
    while (list != NULL) {
        pParamList next = list->next;
        poison_string(list->key);
        poison_string(list->value);
        memset(list, POISON, sizeof *list);
        free(list);
        list = next;
    }
}

pDataList data_build(const NodeSpec *specs, int count, const char *suffix) {
    pDataList head = calloc(1, sizeof *head);
    if (head == NULL) exit(4);
    pDataList tail = head;
    size_t extra = suffix ? strlen(suffix) : 0;
    for (int i = 0; i < count; i++) {
        pDataList node = calloc(1, sizeof *node);
        if (node == NULL) exit(4);
        node->key = copy_string(specs[i].key);
        node->len = (unsigned int)(specs[i].len + extra);
        node->data = checked_malloc(node->len);
        if (specs[i].len > 0) memcpy(node->data, specs[i].bytes, specs[i].len);
        if (extra > 0) memcpy((char *)node->data + specs[i].len, suffix, extra);
        node->type = specs[i].type;
        node->status = specs[i].status;
        node->desc = specs[i].descCount > 0 ? params_build(specs[i].desc, specs[i].descCount) : NULL;
        tail->next = node;
        tail = node;
    }
    return head;
}

void data_free(pDataList list) {
    while (list != NULL) {
        pDataList next = list->next;
        poison_string(list->key);
        if (list->data != NULL) {
            memset(list->data, POISON, list->len);
            free(list->data);
        }
        params_free(list->desc);
        memset(list, POISON, sizeof *list);
        free(list);
        list = next;
    }
}

void print_output(pDataList list, const char *indent) {
    int index = 0;
    for (pDataList node = list; node != NULL; node = node->next, index++) {
        printf("%soutput[%d] key=%s type=%d status=%d len=%u", indent, index, node->key ? node->key : "(null)",
               (int)node->type, (int)node->status, node->len);
        for (pDescList d = node->desc; d != NULL; d = d->next) {
            printf(" desc.%s=%.*s", d->key ? d->key : "(null)", (int)d->vlen, d->value ? d->value : "");
        }
        printf(" data=\"");
        const unsigned char *bytes = node->data;
        unsigned int shown = node->len < 64 ? node->len : 64;
        for (unsigned int i = 0; bytes != NULL && i < shown; i++) {
            if (bytes[i] >= 0x20 && bytes[i] < 0x7f && bytes[i] != '"' && bytes[i] != '\\') {
                putchar(bytes[i]);
            } else {
                printf("\\x%02x", bytes[i]);
            }
        }
        printf("\"%s\n", node->len > shown ? "..." : "");
    }
}

int write_output(pDataList list, const char *dir) {
    for (pDataList node = list; node != NULL; node = node->next) {
        if (node->key == NULL || strchr(node->key, '/') != NULL || node->key[0] == '.') {
            fprintf(stderr, "harness: refusing to write output key \"%s\" as a file name\n",
                    node->key ? node->key : "(null)");
            return -1;
        }
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, node->key);
        FILE *file = fopen(path, "wb");
        if (file == NULL) {
            perror(path);
            return -1;
        }
        size_t written = node->len > 0 ? fwrite(node->data, 1, node->len, file) : 0;
        fclose(file);
        if (written != node->len) {
            fprintf(stderr, "harness: short write to %s\n", path);
            return -1;
        }
    }
    return 0;
}
