/*
 * The Python source files the plugin runs, built into libwrapper.so so it needs no files at run
 * time. python/ holds the one copy; C23 #embed includes each file's bytes here, and clang lists
 * the embedded files in its dependency output, so editing a .py rebuilds the plugin.
 */
#include "CPythonShims.h"

/* SwiftPM compiles C as gnu11, where clang accepts #embed as an extension. */
#pragma clang diagnostic ignored "-Wc23-extensions"

/* Each array is the file's bytes followed by a NUL (suffix() applies only to a non-empty file). */
static const char embedInit[] = {
#embed "../../python/aiges_embed/__init__.py" suffix(, )
    0};

static const char embedPlugin[] = {
#embed "../../python/aiges_embed/_plugin.py" suffix(, )
    0};

const char *aiges_source_embed(void) { return embedInit; }
const char *aiges_source_plugin(void) { return embedPlugin; }
