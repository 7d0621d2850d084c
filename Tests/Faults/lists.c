/*
 * Lists as the loader builds them: a head node with a NULL key, then the entries, all in fresh
 * malloc memory; after each call they are poisoned (POISON over every byte) and freed, so a
 * plugin that reads an input after the call sees garbage (or crashes under a checker).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "faults.h"

_Static_assert(sizeof(struct ParamList) == 32, "ParamList layout");
_Static_assert(sizeof(struct DataList) == 48, "DataList layout");

static void *must_alloc(size_t size) {
    void *memory = calloc(1, size == 0 ? 1 : size);
    if (memory == NULL) {
        fprintf(stderr, "aiges-faults: out of memory\n");
        exit(4);
    }
    return memory;
}

static char *copy_string(const char *text) {
    size_t len = strlen(text);
    char *copy = must_alloc(len + 1);
    memcpy(copy, text, len + 1);
    return copy;
}

static void poison_free(void *memory, size_t len) {
    if (memory == NULL) return;
    memset(memory, POISON, len);
    free(memory);
}

pParamList params_build(const Pair *pairs, int count) {
    pParamList head = must_alloc(sizeof *head); /* the loader's NULL-key head node */
    pParamList tail = head;
    for (int i = 0; i < count; i++) {
        pParamList node = must_alloc(sizeof *node);
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
        if (list->key != NULL) poison_free(list->key, strlen(list->key));
        if (list->value != NULL) poison_free(list->value, list->vlen + 1);
        poison_free(list, sizeof *list);
        list = next;
    }
}

pDataList data_build(const char *key, const void *bytes, size_t len, DataType type, DataStatus status,
                     pDescList desc) {
    pDataList head = must_alloc(sizeof *head);
    pDataList node = must_alloc(sizeof *node);
    node->key = copy_string(key);
    node->data = must_alloc(len);
    if (len > 0) memcpy(node->data, bytes, len);
    node->len = (unsigned int)len;
    node->type = type;
    node->status = status;
    node->desc = desc;
    head->next = node;
    return head;
}

pDataList data_text(const char *key, const char *text, DataStatus status) {
    return data_build(key, text, strlen(text), DataText, status, NULL);
}

void data_free(pDataList list) {
    while (list != NULL) {
        pDataList next = list->next;
        if (list->key != NULL) poison_free(list->key, strlen(list->key));
        poison_free(list->data, list->len);
        params_free(list->desc);
        poison_free(list, sizeof *list);
        list = next;
    }
}

void data_free_nodes(pDataList *nodes, int count) {
    for (int i = 0; i < count; i++) {
        pDataList node = nodes[i];
        if (node == NULL) continue;
        if (node->key != NULL) poison_free(node->key, strlen(node->key));
        poison_free(node->data, node->len);
        params_free(node->desc);
        poison_free(node, sizeof *node);
    }
}

void params_free_nodes(pParamList *nodes, int count) {
    for (int i = 0; i < count; i++) {
        pParamList node = nodes[i];
        if (node == NULL) continue;
        if (node->key != NULL) poison_free(node->key, strlen(node->key));
        if (node->value != NULL) poison_free(node->value, node->vlen + 1);
        poison_free(node, sizeof *node);
    }
}

void list_copy(pDataList list, ListCopy *copy) {
    for (pDataList node = list; node != NULL; node = node->next) {
        if (node->key == NULL) {
            copy->nullKeys++;
            continue;
        }
        if (copy->count == COPY_NODES) {
            copy->dropped++;
            continue;
        }
        NodeCopy *into = &copy->nodes[copy->count++];
        snprintf(into->key, sizeof into->key, "%s", node->key);
        into->len = node->data != NULL ? node->len : 0;
        into->data = must_alloc(into->len + 1);
        if (into->len > 0) memcpy(into->data, node->data, into->len);
        into->type = (int)node->type;
        into->status = (int)node->status;
    }
}

void list_copy_clear(ListCopy *copy) {
    for (int i = 0; i < copy->count; i++) free(copy->nodes[i].data);
    memset(copy, 0, sizeof *copy);
}

const NodeCopy *list_find(const ListCopy *copy, const char *key) {
    for (int i = 0; i < copy->count; i++) {
        if (strcmp(copy->nodes[i].key, key) == 0) return &copy->nodes[i];
    }
    return NULL;
}

int list_has_duplicate_key(const ListCopy *copy, char *duplicate, size_t size) {
    for (int i = 0; i < copy->count; i++) {
        for (int j = i + 1; j < copy->count; j++) {
            if (strcmp(copy->nodes[i].key, copy->nodes[j].key) == 0) {
                snprintf(duplicate, size, "%s", copy->nodes[i].key);
                return 1;
            }
        }
    }
    return 0;
}

int list_has_final(const ListCopy *copy) {
    for (int i = 0; i < copy->count; i++) {
        if (copy->nodes[i].status == DataEnd || copy->nodes[i].status == DataOnce) return 1;
    }
    return 0;
}
