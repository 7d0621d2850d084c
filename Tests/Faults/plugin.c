/*
 * The plugin every scenario drives (loaded by main.c with aiges_plugin_load, as the loader does).
 */
#include <stdio.h>
#include <string.h>

#include "faults.h"

Plugin P;

const char *error_text(int code) {
    const char *text = P.error ? P.error(code) : NULL;
    return text != NULL ? text : "(wrapperError returned NULL)";
}
