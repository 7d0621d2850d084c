/*
 * worker-children: a loader in miniature for Tests/PluginTests/WorkerTests.swift. Loads
 * libwrapper.so as the loader does (dlopen RTLD_NOW), calls wrapperInit with KEY=VALUE config
 * entries, and lists this process's child processes right after it (while the process still
 * lives, so a worker left behind shows); on success also after wrapperFini.
 *
 *   worker-children LIBRARY KEY=VALUE...
 *
 * Output: "init CODE TEXT", then "child PID STATE COMM" per child process (state as in
 * /proc/PID/stat: R, S, Z, ...), "children: N"; after a successful init the same after
 * "fini CODE". The test compiles it with cc.
 */
#include <dirent.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct ParamList {
    char *key;
    char *value;
    unsigned int vlen;
    struct ParamList *next;
} ParamList;

static void list_children(void) {
    int count = 0;
    DIR *proc = opendir("/proc");
    if (proc == NULL) {
        perror("/proc");
        exit(4);
    }
    for (struct dirent *entry; (entry = readdir(proc)) != NULL;) {
        if (entry->d_name[0] < '0' || entry->d_name[0] > '9') continue;
        char path[300], line[1024];
        snprintf(path, sizeof path, "/proc/%s/stat", entry->d_name);
        FILE *file = fopen(path, "r");
        if (file == NULL) continue;
        size_t length = fread(line, 1, sizeof line - 1, file);
        fclose(file);
        line[length] = '\0';
        /* pid (comm) state ppid ...: comm may hold spaces and parentheses, so split at the last ')' */
        char *open = strchr(line, '('), *close = strrchr(line, ')');
        if (open == NULL || close == NULL) continue;
        char state = 0;
        int parent = 0;
        if (sscanf(close + 1, " %c %d", &state, &parent) != 2 || parent != getpid()) continue;
        *close = '\0';
        printf("child %s %c %s\n", entry->d_name, state, open + 1);
        count++;
    }
    closedir(proc);
    printf("children: %d\n", count);
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 2) {
        fprintf(stderr, "usage: worker-children LIBRARY KEY=VALUE...\n");
        return 2;
    }
    void *library = dlopen(argv[1], RTLD_NOW);
    if (library == NULL) {
        fprintf(stderr, "%s\n", dlerror());
        return 3;
    }
    int (*init)(ParamList *) = (int (*)(ParamList *))dlsym(library, "wrapperInit");
    int (*fini)(void) = (int (*)(void))dlsym(library, "wrapperFini");
    const char *(*error)(int) = (const char *(*)(int))dlsym(library, "wrapperError");
    if (init == NULL || fini == NULL || error == NULL) {
        fprintf(stderr, "missing symbols\n");
        return 3;
    }
    ParamList *config = NULL;
    for (int i = argc - 1; i >= 2; i--) {
        char *equals = strchr(argv[i], '=');
        if (equals == NULL) {
            fprintf(stderr, "not KEY=VALUE: %s\n", argv[i]);
            return 2;
        }
        ParamList *node = calloc(1, sizeof *node);
        node->key = strndup(argv[i], (size_t)(equals - argv[i]));
        node->value = strdup(equals + 1);
        node->vlen = (unsigned int)strlen(node->value);
        node->next = config;
        config = node;
    }
    int code = init(config);
    printf("init %d %s\n", code, code != 0 ? error(code) : "ok");
    list_children();
    if (code == 0) {
        int finished = fini();
        printf("fini %d\n", finished);
        list_children();
    }
    return 0;
}
