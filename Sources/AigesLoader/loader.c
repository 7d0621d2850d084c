/*
 * Loading libwrapper.so exactly as the AIGES loader does (see aiges_loader.h).
 */
#include "aiges_loader.h"

#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define RESOLVE(field, name)                                                        \
    do {                                                                            \
        *(void **)(&plugin->field) = dlsym(plugin->library, name);                  \
        if (plugin->field == NULL) {                                                \
            fprintf(stderr, "%s: %s does not export %s\n", who, path, name);        \
            missing++;                                                              \
        }                                                                           \
    } while (0)

int aiges_plugin_load(Plugin *plugin, const char *path, const char *who) {
    memset(plugin, 0, sizeof *plugin);
    plugin->library = dlopen(path, RTLD_NOW); /* exactly the loader's flags: no RTLD_GLOBAL */
    if (plugin->library == NULL) {
        fprintf(stderr, "%s: cannot load %s: %s\n", who, path, dlerror());
        return -1;
    }
    int missing = 0;
    RESOLVE(setCtrl, "wrapperSetCtrl");
    RESOLVE(init, "wrapperInit");
    RESOLVE(fini, "wrapperFini");
    RESOLVE(error, "wrapperError");
    RESOLVE(version, "wrapperVersion");
    RESOLVE(loadRes, "wrapperLoadRes");
    RESOLVE(unloadRes, "wrapperUnloadRes");
    RESOLVE(create, "wrapperCreate");
    RESOLVE(write, "wrapperWrite");
    RESOLVE(read, "wrapperRead");
    RESOLVE(destroy, "wrapperDestroy");
    RESOLVE(exec, "wrapperExec");
    RESOLVE(execFree, "wrapperExecFree");
    RESOLVE(execAsync, "wrapperExecAsync");
    RESOLVE(debugInfo, "wrapperDebugInfo");
    return missing == 0 ? 0 : -1;
}

const char *aiges_default_library(void) {
    static char path[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", path, sizeof path - 32);
    if (len > 0) {
        path[len] = '\0';
        char *slash = strrchr(path, '/');
        if (slash != NULL) {
            strcpy(slash + 1, "libwrapper.so");
            if (access(path, R_OK) == 0) return path;
        }
    }
    return "./libwrapper.so";
}
