/*
 * aiges-harness: loads libwrapper.so exactly as the AIGES loader does and drives it.
 * The operators' smoke test before shipping a plugin + wrapper.py.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "options.h"

static void usage(FILE *out) {
    fprintf(out,
            "usage: aiges-harness [MODE] [options]\n"
            "\n"
            "modes:\n"
            "  exec     (default) one-shot requests through wrapperExec / wrapperExecFree\n"
            "  session  sessions: wrapperCreate, one wrapperWrite per -i chunk, wrapperRead (or callbacks\n"
            "           with --push) until a DataEnd result, wrapperDebugInfo, wrapperDestroy\n"
            "  async    one-shot requests through wrapperExecAsync; waits for and checks every callback\n"
            "  probe    checks the plugin's handling of bad calls through the ABI (needs an echo wrapper.py)\n"
            "  bench    latency, throughput and RSS per workload of scripts/bench/wrapper.py, zero-copy vs\n"
            "           copy mode vs the Python floor (-n sets the RSS call count, default 100000)\n"
            "\n"
            "options:\n"
            "  --so PATH             libwrapper.so to load (default: beside the harness, else ./libwrapper.so)\n"
            "  -c, --config K=V      config entry for wrapperInit, e.g. -c wrapper.file=examples/echo/wrapper.py\n"
            "  -p, --param K=V       request param (sid defaults to harness-<thread>-<call>)\n"
            "  -i, --input SPEC      request node KEY[:TYPE]=VALUE; VALUE is @FILE, gen:SIZE (pattern bytes,\n"
            "                        SIZE may end in K or M) or literal text; TYPE is text|audio|image|video|per|N\n"
            "  -d, --desc K.N=V      desc entry N=V on input node K\n"
            "  -n, --repeat N        requests per thread (default 1)\n"
            "  -t, --threads N       caller threads (default 1)\n"
            "  -o, --out-dir DIR     write each output node's data to DIR/KEY (thread 0, latest request)\n"
            "  -u, --unique          append #THREAD-CALL to every input so each request differs\n"
            "  -e, --check-echo      every output node must equal the input node with the same key\n"
            "  -q, --quiet           print only failures and the summary\n"
            "      --no-init         skip wrapperInit (shows how calls before init fail)\n"
            "      --hooks           install meter and trace hooks (wrapperSetCtrl) that print each call\n"
            "      --churn           exec: run every request on a new thread that exits right after it\n"
            "      --read-delay-ms MS  exec: wait MS after wrapperExec returns before reading its output\n"
            "      --debug-calls N   session: N more wrapperDebugInfo calls per session (and N with NULL), RSS shown\n"
            "  -r, --res ID:PATCH=VALUE  wrapperLoadRes a DataPer node (desc patch_id=PATCH) before, unload after\n"
            "      --pers ID         pass ID in psrIds (repeatable)\n"
            "session and async:\n"
            "  -s, --sessions N      sessions per round, writes interleaved (default 1); -n sets rounds\n"
            "      --push            results through a callback instead of wrapperRead (loader asyncMode)\n"
            "      --poll-ms MS      read interval after the last write (default 50)\n"
            "      --wait-ms MS      how long to wait for final results (default 10000)\n"
            "      --timeout-ms MS   wrapperExecAsync timeout (default 0: none)\n"
            "      --linger-ms MS    keep listening for late callbacks (default 0)\n"
            "      --expect-ret N    the ret every async callback must carry (default 0)\n"
            "      --nested-exec     each callback waits for a wrapperExec on another thread before returning\n"
            "\n"
            "exit status: 0 ok, 1 a call failed, 2 bad command line, 3 the plugin cannot be loaded\n");
}

static int split_pair(char *text, Pair *pair) {
    char *equals = strchr(text, '=');
    if (equals == NULL || equals == text) return -1;
    *equals = '\0';
    pair->key = text;
    pair->value = equals + 1;
    return 0;
}

static int parse_type(const char *name, DataType *type) {
    static const char *names[] = {"text", "audio", "image", "video", "per"};
    for (int i = 0; i < 5; i++) {
        if (strcmp(name, names[i]) == 0) {
            *type = (DataType)i;
            return 0;
        }
    }
    char *end;
    long value = strtol(name, &end, 10);
    if (*name == '\0' || *end != '\0' || value < 0 || value > INT_MAX) return -1;
    *type = (DataType)value;
    return 0;
}

static int read_file(const char *path, unsigned char **bytes, size_t *len) {
    FILE *file = fopen(path, "rb");
    if (file == NULL) return -1;
    size_t capacity = 1 << 16, used = 0;
    unsigned char *buffer = malloc(capacity);
    size_t got;
    while (buffer != NULL && (got = fread(buffer + used, 1, capacity - used, file)) > 0) {
        used += got;
        if (used == capacity) {
            unsigned char *grown = realloc(buffer, capacity *= 2);
            if (grown == NULL) free(buffer);
            buffer = grown;
        }
    }
    int failed = ferror(file) || buffer == NULL;
    fclose(file);
    if (failed) {
        free(buffer);
        return -1;
    }
    *bytes = buffer;
    *len = used;
    return 0;
}

/* Deterministic, non-repeating-looking payload bytes for gen:SIZE. */
static unsigned char *pattern(size_t len) {
    unsigned char *bytes = malloc(len ? len : 1);
    if (bytes == NULL) return NULL;
    unsigned int state = 2463534242u;
    for (size_t i = 0; i < len; i++) {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        bytes[i] = (unsigned char)state;
    }
    return bytes;
}

static int parse_size(const char *text, size_t *size) {
    char *end;
    errno = 0;
    unsigned long long value = strtoull(text, &end, 10);
    if (end == text || errno != 0) return -1;
    if (*end == 'K' || *end == 'k') value <<= 10, end++;
    else if (*end == 'M' || *end == 'm') value <<= 20, end++;
    if (*end != '\0' || value > 0xFFFFFFFFull) return -1;
    *size = (size_t)value;
    return 0;
}

static int parse_input(char *text, NodeSpec *spec) {
    Pair pair;
    if (split_pair(text, &pair) != 0) return -1;
    memset(spec, 0, sizeof *spec);
    spec->status = DataOnce;
    char *colon = strchr(pair.key, ':');
    if (colon != NULL) {
        *colon = '\0';
        if (parse_type(colon + 1, &spec->type) != 0) return -1;
    }
    spec->key = pair.key;
    if (pair.value[0] == '@') {
        if (read_file(pair.value + 1, &spec->bytes, &spec->len) != 0) {
            fprintf(stderr, "harness: cannot read %s: %s\n", pair.value + 1, strerror(errno));
            return -1;
        }
    } else if (strncmp(pair.value, "gen:", 4) == 0) {
        if (parse_size(pair.value + 4, &spec->len) != 0 || (spec->bytes = pattern(spec->len)) == NULL) return -1;
    } else {
        spec->bytes = (unsigned char *)pair.value;
        spec->len = strlen(pair.value);
    }
    return 0;
}

static int add_desc(Options *options, char *text) {
    Pair pair;
    if (split_pair(text, &pair) != 0) return -1;
    char *dot = strchr(pair.key, '.');
    if (dot == NULL) return -1;
    *dot = '\0';
    for (int i = 0; i < options->inputCount; i++) {
        NodeSpec *spec = &options->inputs[i];
        if (strcmp(spec->key, pair.key) == 0) {
            spec->desc = realloc(spec->desc, sizeof(Pair) * (spec->descCount + 1));
            if (spec->desc == NULL) return -1;
            spec->desc[spec->descCount++] = (Pair){dot + 1, pair.value};
            return 0;
        }
    }
    fprintf(stderr, "harness: --desc names no input \"%s\" (give -i first)\n", pair.key);
    return -1;
}

static void bad_usage(const char *what, const char *value) {
    fprintf(stderr, "harness: bad %s \"%s\"\n\n", what, value);
    usage(stderr);
    exit(2);
}

void options_parse(Options *options, int argc, char **argv) {
    memset(options, 0, sizeof *options);
    options->mode = "exec";
    options->repeat = 1;
    options->threads = 1;
    options->pollMs = 50;
    options->waitMs = 10000;
    if (argc > 1 && argv[1][0] != '-') {
        options->mode = argv[1];
        argv++;
        argc--;
    }
    static const struct option longOptions[] = {
        {"so", required_argument, 0, 'S'},        {"config", required_argument, 0, 'c'},
        {"param", required_argument, 0, 'p'},     {"input", required_argument, 0, 'i'},
        {"desc", required_argument, 0, 'd'},      {"repeat", required_argument, 0, 'n'},
        {"threads", required_argument, 0, 't'},   {"out-dir", required_argument, 0, 'o'},
        {"unique", no_argument, 0, 'u'},          {"check-echo", no_argument, 0, 'e'},
        {"quiet", no_argument, 0, 'q'},           {"no-init", no_argument, 0, 'N'},
        {"help", no_argument, 0, 'h'},            {"sessions", required_argument, 0, 's'},
        {"push", no_argument, 0, 'P'},            {"poll-ms", required_argument, 0, 1},
        {"wait-ms", required_argument, 0, 2},     {"timeout-ms", required_argument, 0, 3},
        {"linger-ms", required_argument, 0, 4},   {"expect-ret", required_argument, 0, 5},
        {"nested-exec", no_argument, 0, 6},       {"hooks", no_argument, 0, 7},
        {"res", required_argument, 0, 'r'},       {"pers", required_argument, 0, 8},
        {"churn", no_argument, 0, 9},             {"read-delay-ms", required_argument, 0, 10},
        {"debug-calls", required_argument, 0, 11},
        {0, 0, 0, 0},
    };
    int option;
    while ((option = getopt_long(argc, argv, "c:p:i:d:n:t:o:ueqhs:r:", longOptions, NULL)) != -1) {
        switch (option) {
        case 'S': options->library = optarg; break;
        case 'c':
            if (options->configCount == MAX_PAIRS || split_pair(optarg, &options->config[options->configCount++]))
                bad_usage("config", optarg);
            break;
        case 'p':
            if (options->paramCount == MAX_PAIRS || split_pair(optarg, &options->params[options->paramCount++]))
                bad_usage("param", optarg);
            break;
        case 'i':
            if (options->inputCount == MAX_NODES || parse_input(optarg, &options->inputs[options->inputCount++]))
                bad_usage("input", optarg);
            break;
        case 'd':
            if (add_desc(options, optarg) != 0) bad_usage("desc", optarg);
            break;
        case 'n':
            if ((options->repeat = atoi(optarg)) < 1) bad_usage("repeat", optarg);
            break;
        case 't':
            if ((options->threads = atoi(optarg)) < 1 || options->threads > 256) bad_usage("threads", optarg);
            break;
        case 'o': options->outDir = optarg; break;
        case 'u': options->unique = 1; break;
        case 'e': options->checkEcho = 1; break;
        case 'q': options->quiet = 1; break;
        case 'N': options->noInit = 1; break;
        case 'h': usage(stdout); exit(0);
        case 's':
            if ((options->sessions = atoi(optarg)) < 1) bad_usage("sessions", optarg);
            break;
        case 'P': options->push = 1; break;
        case 1: options->pollMs = atoi(optarg); break;
        case 2: options->waitMs = atoi(optarg); break;
        case 3: options->timeoutMs = atoi(optarg); break;
        case 4: options->lingerMs = atoi(optarg); break;
        case 5: options->expectRet = atoi(optarg); break;
        case 6: options->nestedExec = 1; break;
        case 7: options->hooks = 1; break;
        case 'r':
            if (options->resourceCount == 16 || split_pair(optarg, &options->resources[options->resourceCount++]) ||
                strchr(options->resources[options->resourceCount - 1].key, ':') == NULL)
                bad_usage("res", optarg);
            break;
        case 9: options->churn = 1; break;
        case 10:
            if ((options->readDelayMs = atoi(optarg)) < 0) bad_usage("read-delay-ms", optarg);
            break;
        case 11:
            if ((options->debugCalls = atoi(optarg)) < 0) bad_usage("debug-calls", optarg);
            break;
        case 8:
            if (options->persCount == 16) bad_usage("pers", optarg);
            options->persIds[options->persCount++] = (unsigned int)strtoul(optarg, NULL, 10);
            break;
        default: usage(stderr); exit(2);
        }
    }
    if (optind < argc) bad_usage("argument", argv[optind]);
}

/* libwrapper.so beside this executable, else ./libwrapper.so. */
static const char *default_library(void) {
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

static int meter_hook(const void *usrTag, const char *key, int count) {
    printf("hook meter usrTag=%s key=%s count=%d\n", usrTag ? (const char *)usrTag : "(null)", key ? key : "(null)",
           count);
    return 0;
}

static int trace_hook(const char *usrTag, const char *key, const char *value) {
    printf("hook trace usrTag=%s key=%s value=%s\n", usrTag ? usrTag : "(null)", key ? key : "(null)",
           value ? value : "(null)");
    return 0;
}

long rss_kib(void) {
    long pages = 0, resident = 0;
    FILE *file = fopen("/proc/self/statm", "r");
    if (file == NULL) return -1;
    if (fscanf(file, "%ld %ld", &pages, &resident) != 2) resident = -1;
    fclose(file);
    return resident < 0 ? -1 : resident * (sysconf(_SC_PAGESIZE) / 1024);
}

int load_resources(const Options *options, Plugin *plugin) {
    for (int i = 0; i < options->resourceCount; i++) {
        char key[256];
        snprintf(key, sizeof key, "%s", options->resources[i].key);
        char *colon = strchr(key, ':');
        *colon = '\0';
        unsigned int id = (unsigned int)strtoul(key, NULL, 10);
        Pair patch = {"patch_id", colon + 1};
        NodeSpec spec = {.key = "res", .bytes = (unsigned char *)options->resources[i].value,
                         .len = strlen(options->resources[i].value), .type = DataPer, .status = DataEnd,
                         .desc = &patch, .descCount = 1};
        pDataList data = data_build(&spec, 1, NULL);
        int code = plugin->loadRes(data, id);
        data_free(data);
        printf("wrapperLoadRes(%u, patch_id=%s) returned %d%s%s\n", id, colon + 1, code, code ? ": " : "",
               code ? plugin->error(code) : "");
        if (code != 0) return 1;
    }
    return 0;
}

int unload_resources(const Options *options, Plugin *plugin) {
    int failures = 0;
    for (int i = 0; i < options->resourceCount; i++) {
        unsigned int id = (unsigned int)strtoul(options->resources[i].key, NULL, 10);
        int code = plugin->unloadRes(id);
        printf("wrapperUnloadRes(%u) returned %d%s%s\n", id, code, code ? ": " : "", code ? plugin->error(code) : "");
        failures += code != 0;
    }
    return failures;
}

pParamList request_params(const Options *options, const char *sid) {
    Pair params[MAX_PAIRS + 1];
    int count = 0, hasSid = 0;
    for (int i = 0; i < options->paramCount; i++) {
        params[count++] = options->params[i];
        hasSid |= strcmp(options->params[i].key, "sid") == 0;
    }
    if (!hasSid) params[count++] = (Pair){"sid", (char *)sid};
    return params_build(params, count);
}

int harness_init(const Options *options, Plugin *plugin) {
    if (options->hooks) {
        plugin->setCtrl(CTMeterCustom, (void *)meter_hook);
        plugin->setCtrl(CTTraceLog, (void *)trace_hook);
    }
    pParamList config = params_build(options->config, options->configCount);
    int code = plugin->init(config);
    params_free(config);
    if (code != 0) {
        printf("wrapperInit failed: %d: %s\n", code, plugin->error(code));
    }
    return code;
}

int check_echo(const Options *options, pDataList output, const char *suffix) {
    size_t extra = suffix ? strlen(suffix) : 0;
    for (int i = 0; i < options->inputCount; i++) {
        const NodeSpec *spec = &options->inputs[i];
        pDataList node = output;
        while (node != NULL && (node->key == NULL || strcmp(node->key, spec->key) != 0)) node = node->next;
        if (node == NULL) {
            printf("echo check: no output node \"%s\"\n", spec->key);
            return -1;
        }
        if (node->len != spec->len + extra || (spec->len > 0 && memcmp(node->data, spec->bytes, spec->len) != 0) ||
            (extra > 0 && memcmp((char *)node->data + spec->len, suffix, extra) != 0)) {
            printf("echo check: output \"%s\" (%u bytes) differs from its input (%zu bytes)\n", spec->key, node->len,
                   spec->len + extra);
            return -1;
        }
    }
    return 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    Options options;
    options_parse(&options, argc, argv);
    Plugin plugin;
    const char *library = options.library ? options.library : default_library();
    if (plugin_load(&plugin, library) != 0) return 3;
    if (strcmp(options.mode, "exec") == 0) return run_exec(&options, &plugin);
    if (strcmp(options.mode, "probe") == 0) return run_probe(&options, &plugin);
    if (strcmp(options.mode, "session") == 0) return run_session(&options, &plugin);
    if (strcmp(options.mode, "async") == 0) return run_async(&options, &plugin);
    if (strcmp(options.mode, "bench") == 0) return run_bench(&options, &plugin);
    bad_usage("mode", options.mode);
    return 2;
}
