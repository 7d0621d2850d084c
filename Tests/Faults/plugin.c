/*
 * Loading libwrapper.so the way the AIGES loader does: dlopen(path, RTLD_NOW) without
 * RTLD_GLOBAL, then dlsym of all fifteen symbols (the loader refuses a plugin missing any).
 */
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include "faults.h"

Plugin P;

#define RESOLVE(field, name)                                                        \
    do {                                                                            \
        *(void **)(&P.field) = dlsym(P.library, name);                              \
        if (P.field == NULL) {                                                      \
            fprintf(stderr, "aiges-faults: %s does not export %s\n", path, name);   \
            missing++;                                                              \
        }                                                                           \
    } while (0)

int plugin_load(const char *path) {
    memset(&P, 0, sizeof P);
    P.library = dlopen(path, RTLD_NOW);
    if (P.library == NULL) {
        fprintf(stderr, "aiges-faults: cannot load %s: %s\n", path, dlerror());
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

const char *error_text(int code) {
    const char *text = P.error ? P.error(code) : NULL;
    return text != NULL ? text : "(wrapperError returned NULL)";
}
