/*
 * aiges-harness: loads libwrapper.so exactly as the AIGES loader does and drives it.
 * The operators' smoke test before shipping a plugin + wrapper.py.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "options.h"

static void usage(FILE *out) {
    fprintf(out,
            "usage: aiges-harness [MODE] [options]\n"
            "\n"
            "modes:\n"
            "  exec     (default) one-shot requests through wrapperExec / wrapperExecFree; the summary has\n"
            "           throughput and latency percentiles (p50/p90/p99 of wrapperExec + wrapperExecFree)\n"
            "  session  sessions: wrapperCreate, one wrapperWrite per -i chunk, wrapperRead (or callbacks\n"
            "           with --push) until a DataEnd result, wrapperDebugInfo, wrapperDestroy\n"
            "  async    one-shot requests through wrapperExecAsync; waits for and checks every callback\n"
            "  probe    calls the ABI the wrong way on purpose (NULL and foreign pointers, calls out of order,\n"
            "           unknown handles, cyclic lists, calls after wrapperFini) and checks each gets an error\n"
            "           code and text; works with any wrapper.py: the checks that need a wrapper.py echoing\n"
            "           its input (examples/echo) are skipped with a note for one that does not; -p and -i\n"
            "           give the request its checks of served calls use (default: one text node \"probe\")\n"
            "  bench    latency, throughput and RSS per workload of scripts/bench/wrapper.py, zero-copy vs\n"
            "           copy mode vs the Python floor, then worker processes (config workers) against\n"
            "           in-process (-n sets the RSS call count, default 100000)\n"
            "\n"
            "options:\n"
            "  --so PATH             libwrapper.so to load (default: beside the harness, else ./libwrapper.so)\n"
            "  -c, --config K=V      config entry for wrapperInit, e.g. -c wrapper.file=examples/echo/wrapper.py\n"
            "  -p, --param K=V       request param (sid defaults to harness-<thread>-<call>)\n"
            "  -i, --input SPEC      request node KEY[:TYPE]=VALUE; VALUE is @FILE, gen:SIZE (pattern bytes,\n"
            "                        SIZE may end in K or M) or literal text; TYPE is text|audio|image|video|per|N\n"
            "  -d, --desc K.N=V      desc entry N=V on input node K\n"
            "  -n, --repeat N        requests per thread (default 1)\n"
            "  -t, --threads N       caller threads, 1 to 256 (default 1)\n"
            "  -o, --out-dir DIR     write each output node's data to DIR/KEY (thread 0, latest request)\n"
            "  -u, --unique          append #THREAD-CALL to every input so each request differs\n"
            "  -e, --check-echo      every output node must equal the input node with the same key\n"
            "  -q, --quiet           print only failures and the summary\n"
            "      --stats           print the plugin's snapshot, wrapperDebugInfo(NULL), as \"stats: JSON\"\n"
            "                        after the run, before wrapperFini\n"
            "      --no-init         skip wrapperInit (shows how calls before init fail)\n"
            "      --hooks           install meter and trace hooks (wrapperSetCtrl) that print each call\n"
            "      --churn           exec: run every request on a new thread that exits right after it\n"
            "      --read-delay-ms MS  exec: wait MS after wrapperExec returns before reading its output\n"
            "      --debug-calls N   session: N more wrapperDebugInfo calls per session (and N with NULL), RSS shown\n"
            "  -r, --res ID[:PATCH]=VALUE  before the requests, wrapperLoadRes(node, ID) of a DataPer node whose\n"
            "                        data is VALUE (as for -i: @FILE, gen:SIZE or text) and whose desc has\n"
            "                        patch_id=PATCH if given; wrapperUnloadRes(ID) after them\n"
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
            "Numbers are whole decimal numbers; MS and counts are from 0 (-n, -t, -s from 1) to 2147483647.\n"
            "exit status: 0 ok, 1 a call failed, 2 bad command line, 3 the plugin cannot be loaded\n");
}

/* A bad command line: one line on stderr, exit status 2. */
__attribute__((noreturn, format(printf, 1, 2))) static void fail(const char *format, ...) {
    va_list arguments;
    va_start(arguments, format);
    fputs("aiges-harness: ", stderr);
    vfprintf(stderr, format, arguments);
    fputc('\n', stderr);
    va_end(arguments);
    exit(2);
}

/* A whole decimal number from min to max: digits only (a leading '-' only where min < 0), no blanks. */
static long long whole_number(const char *option, const char *text, long long min, long long max) {
    const char *digits = text[0] == '-' && min < 0 ? text + 1 : text;
    int valid = *digits != '\0';
    for (const char *c = digits; valid && *c != '\0'; c++) valid = *c >= '0' && *c <= '9';
    long long value = 0;
    if (valid) {
        errno = 0;
        value = strtoll(text, NULL, 10);
        valid = errno == 0;
    }
    if (!valid || value < min || value > max) {
        fail("%s: \"%s\" is not a whole number from %lld to %lld", option, text, min, max);
    }
    return value;
}

static int split_pair(char *text, Pair *pair) {
    char *equals = strchr(text, '=');
    if (equals == NULL || equals == text) return -1;
    *equals = '\0';
    pair->key = text;
    pair->value = equals + 1;
    return 0;
}

static DataType parse_type(const char *option, const char *name) {
    static const char *names[] = {"text", "audio", "image", "video", "per"};
    for (int i = 0; i < 5; i++) {
        if (strcmp(name, names[i]) == 0) return (DataType)i;
    }
    const char *digits = name;
    int valid = *digits != '\0';
    for (const char *c = digits; valid && *c != '\0'; c++) valid = *c >= '0' && *c <= '9';
    if (!valid) fail("%s: unknown TYPE \"%s\" (text, audio, image, video, per or a number)", option, name);
    return (DataType)whole_number(option, name, 0, INT_MAX);
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
    if (failed && errno == 0) errno = EIO;
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

/* gen:SIZE: digits, optionally ending in K or M, below 4 GiB (a node's len is 32 bits). */
static size_t parse_size(const char *option, const char *text) {
    const char *c = text;
    unsigned long long value = 0;
    int valid = *c >= '0' && *c <= '9';
    for (; valid && *c >= '0' && *c <= '9'; c++) {
        value = value * 10 + (unsigned long long)(*c - '0');
        if (value > 0xFFFFFFFFull) valid = 0;
    }
    if (valid && (*c == 'K' || *c == 'k')) value <<= 10, c++;
    else if (valid && (*c == 'M' || *c == 'm')) value <<= 20, c++;
    if (!valid || *c != '\0' || value > 0xFFFFFFFFull) {
        fail("%s: \"gen:%s\": SIZE is not a whole number of bytes, optionally ending in K or M, below 4 GiB", option,
             text);
    }
    return (size_t)value;
}

/* A node's VALUE, as -i and -r take it: @FILE (its bytes), gen:SIZE (pattern bytes) or literal text. */
static void parse_value(const char *option, char *value, unsigned char **bytes, size_t *len) {
    if (value[0] == '@') {
        errno = 0;
        if (read_file(value + 1, bytes, len) != 0) fail("%s: cannot read \"%s\": %s", option, value + 1, strerror(errno));
    } else if (strncmp(value, "gen:", 4) == 0) {
        *len = parse_size(option, value + 4);
        if ((*bytes = pattern(*len)) == NULL) fail("%s: out of memory for gen:%s", option, value + 4);
    } else {
        *bytes = (unsigned char *)value;
        *len = strlen(value);
    }
}

static void parse_input(const char *option, char *text, NodeSpec *spec) {
    Pair pair;
    char *whole = strdup(text);
    if (split_pair(text, &pair) != 0) fail("%s: \"%s\" is not KEY[:TYPE]=VALUE", option, whole);
    memset(spec, 0, sizeof *spec);
    spec->status = DataOnce;
    char *colon = strchr(pair.key, ':');
    if (colon != NULL) {
        *colon = '\0';
        spec->type = parse_type(option, colon + 1);
    }
    if (pair.key[0] == '\0') fail("%s: \"%s\" has an empty KEY", option, whole);
    spec->key = pair.key;
    parse_value(option, pair.value, &spec->bytes, &spec->len);
    free(whole);
}

static void parse_resource(const char *option, char *text, Resource *resource) {
    Pair pair;
    char *whole = strdup(text);
    if (split_pair(text, &pair) != 0) fail("%s: \"%s\" is not ID[:PATCH]=VALUE", option, whole);
    char *colon = strchr(pair.key, ':');
    if (colon != NULL) *colon = '\0';
    memset(resource, 0, sizeof *resource);
    resource->id = (unsigned int)whole_number(option, pair.key, 0, UINT_MAX);
    resource->patch = colon != NULL ? colon + 1 : NULL;
    parse_value(option, pair.value, &resource->bytes, &resource->len);
    free(whole);
}

static void add_desc(Options *options, const char *option, char *text) {
    Pair pair;
    char *whole = strdup(text);
    char *dot;
    if (split_pair(text, &pair) != 0 || (dot = strchr(pair.key, '.')) == NULL || dot == pair.key || dot[1] == '\0') {
        fail("%s: \"%s\" is not KEY.NAME=VALUE", option, whole);
    }
    *dot = '\0';
    for (int i = 0; i < options->inputCount; i++) {
        NodeSpec *spec = &options->inputs[i];
        if (strcmp(spec->key, pair.key) == 0) {
            spec->desc = realloc(spec->desc, sizeof(Pair) * (spec->descCount + 1));
            if (spec->desc == NULL) fail("out of memory");
            spec->desc[spec->descCount++] = (Pair){dot + 1, pair.value};
            free(whole);
            return;
        }
    }
    fail("%s: \"%s\" names no input \"%s\" (give its -i first)", option, whole, pair.key);
}

static void add_pair(const char *option, char *text, Pair *pairs, int *count, int capacity) {
    if (*count == capacity) fail("%s: more than %d of them", option, capacity);
    char *whole = strdup(text);
    if (split_pair(text, &pairs[*count]) != 0) fail("%s: \"%s\" is not KEY=VALUE", option, whole);
    (*count)++;
    free(whole);
}

static int is_mode(const char *text) {
    static const char *const modes[] = {"exec", "session", "async", "probe", "bench"};
    for (size_t m = 0; m < sizeof modes / sizeof modes[0]; m++) {
        if (strcmp(text, modes[m]) == 0) return 1;
    }
    return 0;
}

void options_parse(Options *options, int argc, char **argv) {
    memset(options, 0, sizeof *options);
    options->mode = "exec";
    options->repeat = 1;
    options->threads = 1;
    options->pollMs = 50;
    options->waitMs = 10000;
    int modeGiven = argc > 1 && argv[1][0] != '-';
    if (modeGiven) {
        if (!is_mode(argv[1])) {
            fail("unknown mode \"%s\" (exec, session, async, probe or bench; --help lists the options)", argv[1]);
        }
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
        {"debug-calls", required_argument, 0, 11}, {"stats", no_argument, 0, 12},
        {0, 0, 0, 0},
    };
    opterr = 0; /* getopt's own messages name argv[0]; ours are one line each */
    int option, longIndex = -1;
    while ((option = getopt_long(argc, argv, ":c:p:i:d:n:t:o:ueqhs:r:", longOptions, &longIndex)) != -1) {
        char name[64]; /* the option as typed: "-n" or "--repeat" */
        if (longIndex >= 0) snprintf(name, sizeof name, "--%s", longOptions[longIndex].name);
        else snprintf(name, sizeof name, "-%c", option);
        longIndex = -1;
        switch (option) {
        case 'S': options->library = optarg; break;
        case 'c': add_pair(name, optarg, options->config, &options->configCount, MAX_PAIRS); break;
        case 'p': add_pair(name, optarg, options->params, &options->paramCount, MAX_PAIRS); break;
        case 'i':
            if (options->inputCount == MAX_NODES) fail("%s: more than %d inputs", name, MAX_NODES);
            parse_input(name, optarg, &options->inputs[options->inputCount++]);
            break;
        case 'd': add_desc(options, name, optarg); break;
        case 'n': options->repeat = (int)whole_number(name, optarg, 1, INT_MAX); break;
        case 't': options->threads = (int)whole_number(name, optarg, 1, 256); break;
        case 'o': options->outDir = optarg; break;
        case 'u': options->unique = 1; break;
        case 'e': options->checkEcho = 1; break;
        case 'q': options->quiet = 1; break;
        case 'N': options->noInit = 1; break;
        case 'h': usage(stdout); exit(0);
        case 's': options->sessions = (int)whole_number(name, optarg, 1, INT_MAX); break;
        case 'P': options->push = 1; break;
        case 1: options->pollMs = (int)whole_number(name, optarg, 0, INT_MAX); break;
        case 2: options->waitMs = (int)whole_number(name, optarg, 0, INT_MAX); break;
        case 3: options->timeoutMs = (int)whole_number(name, optarg, 0, INT_MAX); break;
        case 4: options->lingerMs = (int)whole_number(name, optarg, 0, INT_MAX); break;
        case 5: options->expectRet = (int)whole_number(name, optarg, INT_MIN, INT_MAX); break;
        case 6: options->nestedExec = 1; break;
        case 7: options->hooks = 1; break;
        case 'r':
            if (options->resourceCount == 16) fail("%s: more than 16 resources", name);
            parse_resource(name, optarg, &options->resources[options->resourceCount++]);
            break;
        case 9: options->churn = 1; break;
        case 10: options->readDelayMs = (int)whole_number(name, optarg, 0, INT_MAX); break;
        case 11: options->debugCalls = (int)whole_number(name, optarg, 0, INT_MAX); break;
        case 8:
            if (options->persCount == 16) fail("%s: more than 16 ids", name);
            options->persIds[options->persCount++] = (unsigned int)whole_number(name, optarg, 0, UINT_MAX);
            break;
        case 12: options->stats = 1; break;
        case ':': {
            const char *token = argv[optind - 1];
            if (strncmp(token, "--", 2) == 0) fail("%s needs a value (--help lists the options)", token);
            fail("-%c needs a value (--help lists the options)", optopt);
            break;
        }
        default: {
            const char *token = argv[optind - 1];
            if (strncmp(token, "--", 2) == 0) {
                if (strchr(token, '=') != NULL) fail("%s: unknown option, or one that takes no value", token);
                fail("unknown option %s (--help lists the options)", token);
            }
            fail("unknown option -%c (--help lists the options)", optopt ? optopt : '?');
        }
        }
    }
    if (optind < argc && !modeGiven && is_mode(argv[optind])) options->mode = argv[optind++]; /* after options */
    if (optind < argc) {
        fail("unexpected argument \"%s\" (--help lists the modes and options)", argv[optind]);
    }
    if ((long long)options->threads * options->repeat > INT_MAX) {
        fail("-t %d × -n %d is more than %d requests", options->threads, options->repeat, INT_MAX);
    }
}

void sleep_ms(int ms) {
    struct timespec delay = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&delay, &delay) != 0 && errno == EINTR) {
    }
}

void print_stats(const Options *options, Plugin *plugin) {
    if (!options->stats) return;
    const char *json = plugin->debugInfo(NULL);
    printf("stats: %s\n", json != NULL ? json : "(null)");
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

long now_ns(void) {
    struct timespec time;
    clock_gettime(CLOCK_MONOTONIC, &time);
    return time.tv_sec * 1000000000L + time.tv_nsec;
}

int compare_long(const void *a, const void *b) {
    long x = *(const long *)a, y = *(const long *)b;
    return (x > y) - (x < y);
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
        const Resource *resource = &options->resources[i];
        Pair patch = {"patch_id", resource->patch};
        NodeSpec spec = {.key = "res", .bytes = resource->bytes, .len = resource->len, .type = DataPer,
                         .status = DataEnd, .desc = resource->patch ? &patch : NULL,
                         .descCount = resource->patch ? 1 : 0};
        pDataList data = data_build(&spec, 1, NULL);
        int code = plugin->loadRes(data, resource->id);
        data_free(data);
        printf("wrapperLoadRes(%u%s%s) returned %d%s%s\n", resource->id, resource->patch ? ", patch_id=" : "",
               resource->patch ? resource->patch : "", code, code ? ": " : "", code ? plugin->error(code) : "");
        if (code != 0) return 1;
    }
    return 0;
}

int unload_resources(const Options *options, Plugin *plugin) {
    int failures = 0;
    for (int i = 0; i < options->resourceCount; i++) {
        unsigned int id = options->resources[i].id;
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
    const char *library = options.library ? options.library : aiges_default_library();
    if (aiges_plugin_load(&plugin, library, "harness") != 0) return 3;
    if (strcmp(options.mode, "exec") == 0) return run_exec(&options, &plugin);
    if (strcmp(options.mode, "probe") == 0) return run_probe(&options, &plugin);
    if (strcmp(options.mode, "session") == 0) return run_session(&options, &plugin);
    if (strcmp(options.mode, "async") == 0) return run_async(&options, &plugin);
    return run_bench(&options, &plugin); /* options_parse accepts only the five modes */
}
