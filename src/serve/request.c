/* Parsing of `tuna serve` requests (see request.h). */
#include "serve/request.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

void tuna_serve_default_limits(tuna_serve_limits *l) {
    memset(l, 0, sizeof *l);
    l->max_body = 32u << 20;
    l->max_image_pixels = 16ll << 20;
    l->max_image_side = 8192;
    l->max_messages = 1024;
    l->max_n = TUNA_SERVE_MAX_CHOICES;
    l->max_steps = 200;
    l->max_prompt_chars = 16384;
    l->max_generated_side = 2048;
}

tuna_status tuna_serve_fail(tuna_serve_error *e, int status, const char *type, const char *code, const char *param,
                            const char *fmt, ...) {
    tuna_status s = status == 413 ? TUNA_ERR_LIMIT : TUNA_ERR_INVALID;
    if (!e) return s;
    e->status = status;
    e->type = type;
    e->code = code;
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->error.message, sizeof e->error.message, fmt, ap);
    va_end(ap);
    e->error.code = s;
    return s;
}

char *tuna_serve_error_json(const tuna_serve_error *e) {
    cJSON *root = cJSON_CreateObject(), *o = cJSON_CreateObject();
    if (!root || !o) {
        cJSON_Delete(root);
        cJSON_Delete(o);
        return NULL;
    }
    cJSON_AddItemToObject(root, "error", o);
    cJSON_AddStringToObject(o, "message", e->error.message[0] ? e->error.message : "error");
    cJSON_AddStringToObject(o, "type", e->type ? e->type : "invalid_request_error");
    if (e->param[0]) cJSON_AddStringToObject(o, "param", e->param);
    else cJSON_AddNullToObject(o, "param");
    if (e->code) cJSON_AddStringToObject(o, "code", e->code);
    else cJSON_AddNullToObject(o, "code");
    char *text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return text;
}

static tuna_status bad(tuna_serve_error *e, const char *param, const char *fmt, const char *what) {
    return tuna_serve_fail(e, 400, "invalid_request_error", NULL, param, fmt, what);
}

static tuna_status oom(tuna_serve_error *e) {
    return tuna_serve_fail(e, 500, "server_error", NULL, NULL, "out of memory");
}

/* ---- base64 ------------------------------------------------------------------ */

static int b64_value(unsigned char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+' || c == '-') return 62; /* '-' and '_': the URL-safe alphabet too */
    if (c == '/' || c == '_') return 63;
    return -1;
}

tuna_status tuna_serve_base64_decode(const char *text, size_t len, size_t max, uint8_t **out, size_t *out_size,
                                     tuna_serve_error *e) {
    *out = NULL;
    *out_size = 0;
    while (len > 0 && text[len - 1] == '=') len--;
    if (len % 4 == 1) return bad(e, NULL, "%s", "base64 data has a bad length");
    size_t n = len / 4 * 3 + (len % 4 ? len % 4 - 1 : 0);
    if (n > max) return tuna_serve_fail(e, 413, "invalid_request_error", "payload_too_large", NULL,
                                        "base64 data of %zu bytes is larger than the limit of %zu", n, max);
    uint8_t *b = malloc(n ? n : 1);
    if (!b) return oom(e);
    size_t j = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64_value((unsigned char)text[i]);
        if (v < 0) {
            free(b);
            return bad(e, NULL, "%s", "base64 data has a character outside the alphabet");
        }
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (j < n) b[j++] = (uint8_t)(acc >> bits);
        }
    }
    *out = b;
    *out_size = j;
    return TUNA_OK;
}

char *tuna_serve_base64_encode(const uint8_t *bytes, size_t n) {
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    if (n > (SIZE_MAX - 4) / 4 * 3) return NULL;
    char *s = malloc((n + 2) / 3 * 4 + 1);
    if (!s) return NULL;
    size_t j = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)bytes[i] << 16 | (i + 1 < n ? (uint32_t)bytes[i + 1] << 8 : 0) |
                     (i + 2 < n ? bytes[i + 2] : 0);
        s[j++] = abc[v >> 18 & 63];
        s[j++] = abc[v >> 12 & 63];
        s[j++] = i + 1 < n ? abc[v >> 6 & 63] : '=';
        s[j++] = i + 2 < n ? abc[v & 63] : '=';
    }
    s[j] = '\0';
    return s;
}

/* ---- image URLs ---------------------------------------------------------------- */

static tuna_status read_limited_file(const char *path, size_t max, tuna_serve_blob *out, tuna_serve_error *e) {
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        if (fd >= 0) close(fd);
        return bad(e, "messages", "image_url file %s cannot be read", path);
    }
    if ((uint64_t)st.st_size > max) {
        close(fd);
        return tuna_serve_fail(e, 413, "invalid_request_error", "payload_too_large", "messages",
                               "image file of %lld bytes is larger than the limit", (long long)st.st_size);
    }
    uint8_t *b = malloc((size_t)st.st_size + 1);
    if (!b) {
        close(fd);
        return oom(e);
    }
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t r = read(fd, b + got, (size_t)st.st_size - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(fd);
    out->bytes = b;
    out->size = got;
    return TUNA_OK;
}

tuna_status tuna_serve_image_from_url(const char *url, const tuna_serve_limits *limits, tuna_serve_blob *out,
                                      tuna_serve_error *e) {
    memset(out, 0, sizeof *out);
    if (strncasecmp(url, "data:", 5) == 0) {
        const char *comma = strchr(url, ',');
        if (!comma) return bad(e, "messages", "%s", "a data: URI without a comma");
        size_t head = (size_t)(comma - url);
        int png = head >= 14 && strncasecmp(url + 5, "image/png", 9) == 0;
        int jpeg = strncasecmp(url + 5, "image/jpeg", 10) == 0 || strncasecmp(url + 5, "image/jpg", 9) == 0;
        if (!png && !jpeg) return bad(e, "messages", "%s", "image data: URIs must be image/png or image/jpeg");
        if (head < 7 || strncasecmp(comma - 7, ";base64", 7) != 0)
            return bad(e, "messages", "%s", "image data: URIs must be base64 (;base64,)");
        tuna_status s = tuna_serve_base64_decode(comma + 1, strlen(comma + 1), limits->max_body, &out->bytes,
                                                 &out->size, e);
        if (s == TUNA_OK && out->size == 0) {
            free(out->bytes);
            out->bytes = NULL;
            return bad(e, "messages", "%s", "an empty image");
        }
        return s;
    }
    if (strncasecmp(url, "file://", 7) == 0) {
        if (!limits->files_dir)
            return bad(e, "messages", "%s",
                       "file:// image URLs are refused (start the server with --allow-files DIR to allow a directory)");
        char real[PATH_MAX], dir[PATH_MAX];
        if (!realpath(url + 7, real) || !realpath(limits->files_dir, dir))
            return bad(e, "messages", "image_url %s does not exist", url);
        size_t dl = strlen(dir);
        if (strncmp(real, dir, dl) != 0 || (real[dl] != '/' && dl > 1))
            return tuna_serve_fail(e, 403, "permission_error", NULL, "messages",
                                   "image_url %s is outside the allowed directory", url);
        return read_limited_file(real, limits->max_body, out, e);
    }
    return bad(e, "messages", "%s",
               "remote image URLs are not fetched: send the image as a base64 data: URI (data:image/png;base64,...)");
}

/* ---- Python-style JSON ------------------------------------------------------------ */

typedef struct {
    char *s;
    size_t len, cap;
    int failed;
} sbuf;

static void sb_put(sbuf *b, const char *text, size_t n) {
    if (b->failed) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *s = realloc(b->s, cap);
        if (!s) {
            b->failed = 1;
            return;
        }
        b->s = s;
        b->cap = cap;
    }
    memcpy(b->s + b->len, text, n);
    b->len += n;
    b->s[b->len] = '\0';
}

static void sb_str(sbuf *b, const char *text) { sb_put(b, text, strlen(text)); }

static void dump_string(sbuf *b, const char *s) {
    sb_put(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char esc[8];
        switch (*p) {
        case '"': sb_put(b, "\\\"", 2); break;
        case '\\': sb_put(b, "\\\\", 2); break;
        case '\n': sb_put(b, "\\n", 2); break;
        case '\r': sb_put(b, "\\r", 2); break;
        case '\t': sb_put(b, "\\t", 2); break;
        case '\b': sb_put(b, "\\b", 2); break;
        case '\f': sb_put(b, "\\f", 2); break;
        default:
            if (*p < 0x20) {
                snprintf(esc, sizeof esc, "\\u%04x", *p);
                sb_str(b, esc);
            } else sb_put(b, (const char *)p, 1);
        }
    }
    sb_put(b, "\"", 1);
}

static void dump(sbuf *b, const cJSON *j, int depth) {
    if (depth > 200) {
        sb_str(b, "null");
        return;
    }
    if (cJSON_IsObject(j) || cJSON_IsArray(j)) {
        int obj = cJSON_IsObject(j);
        sb_put(b, obj ? "{" : "[", 1);
        const cJSON *c;
        int first = 1;
        cJSON_ArrayForEach(c, j) {
            if (!first) sb_put(b, ", ", 2);
            first = 0;
            if (obj) {
                dump_string(b, c->string ? c->string : "");
                sb_put(b, ": ", 2);
            }
            dump(b, c, depth + 1);
        }
        sb_put(b, obj ? "}" : "]", 1);
    } else if (cJSON_IsString(j)) {
        dump_string(b, j->valuestring);
    } else if (cJSON_IsNumber(j)) {
        char num[64];
        double v = j->valuedouble;
        if (!isfinite(v)) snprintf(num, sizeof num, "null");
        else if (v == floor(v) && fabs(v) < 1e15) snprintf(num, sizeof num, "%lld", (long long)v);
        else snprintf(num, sizeof num, "%.17g", v);
        sb_str(b, num);
    } else if (cJSON_IsTrue(j)) sb_str(b, "true");
    else if (cJSON_IsFalse(j)) sb_str(b, "false");
    else sb_str(b, "null");
}

char *tuna_serve_json_dumps(const cJSON *j) {
    sbuf b = {0};
    dump(&b, j, 0);
    if (b.failed) {
        free(b.s);
        return NULL;
    }
    return b.s;
}

/* ---- chat ------------------------------------------------------------------------- */

static char *dup_str(const char *s) {
    size_t n = strlen(s);
    char *d = malloc(n + 1);
    if (d) memcpy(d, s, n + 1);
    return d;
}

void tuna_serve_chat_request_free(tuna_serve_chat_request *r) {
    for (int i = 0; i < r->message_count; i++) {
        tuna_serve_message *m = &r->messages[i];
        free(m->text);
        for (int k = 0; k < m->tool_call_count; k++) {
            free(m->tool_calls[k].id);
            free(m->tool_calls[k].name);
            free(m->tool_calls[k].arguments);
        }
        free(m->tool_calls);
    }
    free(r->messages);
    for (int i = 0; i < r->image_count; i++) free(r->images[i].bytes);
    cJSON_Delete(r->tools);
    cJSON_Delete(r->schema);
    for (int i = 0; i < r->stop_count; i++) free(r->stop[i]);
    free(r->model);
    memset(r, 0, sizeof *r);
}

const cJSON *tuna_serve_tool_function(const tuna_serve_chat_request *r, int i) {
    return cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(r->tools, i), "function");
}

const char *tuna_serve_tool_name(const tuna_serve_chat_request *r, int i) {
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(tuna_serve_tool_function(r, i), "name");
    return cJSON_IsString(name) ? name->valuestring : NULL;
}

/* The text parts of a message joined by "\n"; image parts go to the request's image list. */
static tuna_status parse_content(const cJSON *content, tuna_serve_chat_request *r, tuna_serve_message *m,
                                 const tuna_serve_limits *limits, tuna_serve_error *e) {
    if (!content || cJSON_IsNull(content)) {
        m->text = dup_str("");
        return m->text ? TUNA_OK : oom(e);
    }
    if (cJSON_IsString(content)) {
        m->text = dup_str(content->valuestring);
        return m->text ? TUNA_OK : oom(e);
    }
    if (!cJSON_IsArray(content)) return bad(e, "messages", "%s", "message content must be a string or an array of parts");
    sbuf b = {0};
    sb_put(&b, "", 0);
    m->first_image = r->image_count;
    const cJSON *part;
    int texts = 0;
    cJSON_ArrayForEach(part, content) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(part, "type");
        if (!cJSON_IsString(type)) {
            free(b.s);
            return bad(e, "messages", "%s", "a content part has no \"type\"");
        }
        if (strcmp(type->valuestring, "text") == 0) {
            const cJSON *text = cJSON_GetObjectItemCaseSensitive(part, "text");
            if (!cJSON_IsString(text)) {
                free(b.s);
                return bad(e, "messages", "%s", "a text part has no \"text\" string");
            }
            if (texts++) sb_put(&b, "\n", 1);
            sb_str(&b, text->valuestring);
        } else if (strcmp(type->valuestring, "image_url") == 0) {
            const cJSON *iu = cJSON_GetObjectItemCaseSensitive(part, "image_url");
            const cJSON *url = cJSON_IsString(iu) ? iu : cJSON_GetObjectItemCaseSensitive(iu, "url");
            if (!cJSON_IsString(url)) {
                free(b.s);
                return bad(e, "messages", "%s", "an image_url part has no url");
            }
            if (m->role != TUNA_SERVE_USER) {
                free(b.s);
                return bad(e, "messages", "%s", "only user messages may hold images");
            }
            if (r->image_count >= TUNA_SERVE_MAX_IMAGES) {
                free(b.s);
                return tuna_serve_fail(e, 400, "invalid_request_error", NULL, "messages",
                                       "at most %d images per request", TUNA_SERVE_MAX_IMAGES);
            }
            tuna_status s = tuna_serve_image_from_url(url->valuestring, limits, &r->images[r->image_count], e);
            if (s != TUNA_OK) {
                free(b.s);
                return s;
            }
            r->image_count++;
            m->image_count++;
        } else {
            free(b.s);
            return bad(e, "messages", "content part type \"%s\" is not supported (text, image_url)", type->valuestring);
        }
    }
    if (b.failed) {
        free(b.s);
        return oom(e);
    }
    m->text = b.s;
    return TUNA_OK;
}

static tuna_status parse_tool_calls(const cJSON *calls, tuna_serve_message *m, tuna_serve_error *e) {
    if (!calls || cJSON_IsNull(calls)) return TUNA_OK;
    if (!cJSON_IsArray(calls)) return bad(e, "messages", "%s", "tool_calls must be an array");
    int n = cJSON_GetArraySize(calls);
    if (n > TUNA_SERVE_MAX_TOOLS) return bad(e, "messages", "%s", "too many tool_calls in a message");
    m->tool_calls = calloc((size_t)(n ? n : 1), sizeof *m->tool_calls);
    if (!m->tool_calls) return oom(e);
    const cJSON *c;
    cJSON_ArrayForEach(c, calls) {
        const cJSON *fn = cJSON_GetObjectItemCaseSensitive(c, "function");
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(fn, "name");
        const cJSON *args = cJSON_GetObjectItemCaseSensitive(fn, "arguments");
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(c, "id");
        if (!cJSON_IsString(name)) return bad(e, "messages", "%s", "a tool call has no function name");
        tuna_serve_tool_call *t = &m->tool_calls[m->tool_call_count++];
        t->name = dup_str(name->valuestring);
        t->id = dup_str(cJSON_IsString(id) ? id->valuestring : "");
        if (cJSON_IsString(args)) t->arguments = dup_str(args->valuestring);
        else if (args) t->arguments = cJSON_PrintUnformatted(args);
        else t->arguments = dup_str("{}");
        if (!t->name || !t->id || !t->arguments) return oom(e);
    }
    return TUNA_OK;
}

static tuna_status parse_messages(const cJSON *msgs, tuna_serve_chat_request *r, const tuna_serve_limits *limits,
                                  tuna_serve_error *e) {
    if (!cJSON_IsArray(msgs) || cJSON_GetArraySize(msgs) == 0)
        return bad(e, "messages", "%s", "messages must be a non-empty array");
    int n = cJSON_GetArraySize(msgs);
    if (n > limits->max_messages)
        return tuna_serve_fail(e, 400, "invalid_request_error", NULL, "messages", "at most %d messages",
                               limits->max_messages);
    r->messages = calloc((size_t)n, sizeof *r->messages);
    if (!r->messages) return oom(e);
    const cJSON *m;
    cJSON_ArrayForEach(m, msgs) {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        if (!cJSON_IsString(role)) return bad(e, "messages", "%s", "a message has no role");
        tuna_serve_message *out = &r->messages[r->message_count++];
        const char *rn = role->valuestring;
        if (strcmp(rn, "system") == 0 || strcmp(rn, "developer") == 0) out->role = TUNA_SERVE_SYSTEM;
        else if (strcmp(rn, "user") == 0) out->role = TUNA_SERVE_USER;
        else if (strcmp(rn, "assistant") == 0) out->role = TUNA_SERVE_ASSISTANT;
        else if (strcmp(rn, "tool") == 0) out->role = TUNA_SERVE_TOOL;
        else return bad(e, "messages", "role \"%s\" is not one of system, developer, user, assistant, tool", rn);
        TUNA_TRY(parse_content(cJSON_GetObjectItemCaseSensitive(m, "content"), r, out, limits, e));
        if (out->role == TUNA_SERVE_ASSISTANT)
            TUNA_TRY(parse_tool_calls(cJSON_GetObjectItemCaseSensitive(m, "tool_calls"), out, e));
    }
    return TUNA_OK;
}

static tuna_status parse_tools(const cJSON *root, tuna_serve_chat_request *r, tuna_serve_error *e) {
    const cJSON *tools = cJSON_GetObjectItemCaseSensitive(root, "tools");
    const cJSON *choice = cJSON_GetObjectItemCaseSensitive(root, "tool_choice");
    if (tools && !cJSON_IsNull(tools)) {
        if (!cJSON_IsArray(tools)) return bad(e, "tools", "%s", "tools must be an array");
        r->tool_count = cJSON_GetArraySize(tools);
        if (r->tool_count > TUNA_SERVE_MAX_TOOLS)
            return tuna_serve_fail(e, 400, "invalid_request_error", NULL, "tools", "at most %d tools",
                                   TUNA_SERVE_MAX_TOOLS);
        r->tools = cJSON_Duplicate(tools, 1);
        if (!r->tools) return oom(e);
        for (int i = 0; i < r->tool_count; i++) {
            const cJSON *t = cJSON_GetArrayItem(r->tools, i);
            const cJSON *type = cJSON_GetObjectItemCaseSensitive(t, "type");
            if (!cJSON_IsString(type) || strcmp(type->valuestring, "function") != 0)
                return bad(e, "tools", "%s", "every tool must be {\"type\": \"function\", \"function\": {...}}");
            const char *name = tuna_serve_tool_name(r, i);
            size_t nl = name ? strlen(name) : 0;
            if (nl == 0 || nl > 64 || strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") != nl)
                return bad(e, "tools", "%s", "every tool function needs a name of 1 to 64 letters, digits, _ or -");
            const cJSON *params = cJSON_GetObjectItemCaseSensitive(tuna_serve_tool_function(r, i), "parameters");
            if (params && !cJSON_IsObject(params)) return bad(e, "tools", "%s", "tool parameters must be a JSON schema object");
        }
    }
    r->tool_choice = r->tool_count ? TUNA_TOOLS_AUTO : TUNA_TOOLS_NONE;
    if (!choice || cJSON_IsNull(choice)) return TUNA_OK;
    if (cJSON_IsString(choice)) {
        const char *c = choice->valuestring;
        if (strcmp(c, "none") == 0) r->tool_choice = TUNA_TOOLS_NONE;
        else if (strcmp(c, "auto") == 0) r->tool_choice = r->tool_count ? TUNA_TOOLS_AUTO : TUNA_TOOLS_NONE;
        else if (strcmp(c, "required") == 0) {
            if (!r->tool_count) return bad(e, "tool_choice", "%s", "tool_choice \"required\" without tools");
            r->tool_choice = TUNA_TOOLS_REQUIRED;
        } else return bad(e, "tool_choice", "tool_choice \"%s\" is not none, auto or required", c);
        return TUNA_OK;
    }
    const cJSON *fn = cJSON_GetObjectItemCaseSensitive(choice, "function");
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(fn, "name");
    if (!cJSON_IsString(name)) return bad(e, "tool_choice", "%s", "tool_choice must name a function");
    for (int i = 0; i < r->tool_count; i++)
        if (strcmp(tuna_serve_tool_name(r, i), name->valuestring) == 0) {
            r->tool_choice = TUNA_TOOLS_NAMED;
            r->named_tool = i;
            return TUNA_OK;
        }
    return bad(e, "tool_choice", "tool_choice names \"%s\", which is not among the tools", name->valuestring);
}

static tuna_status parse_format(const cJSON *root, tuna_serve_chat_request *r, tuna_serve_error *e) {
    const cJSON *rf = cJSON_GetObjectItemCaseSensitive(root, "response_format");
    r->format = TUNA_FORMAT_TEXT;
    if (!rf || cJSON_IsNull(rf)) return TUNA_OK;
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(rf, "type");
    if (!cJSON_IsString(type)) return bad(e, "response_format", "%s", "response_format needs a type");
    if (strcmp(type->valuestring, "text") == 0) return TUNA_OK;
    if (strcmp(type->valuestring, "json_object") == 0) {
        r->format = TUNA_FORMAT_JSON_OBJECT;
        return TUNA_OK;
    }
    if (strcmp(type->valuestring, "json_schema") != 0)
        return bad(e, "response_format", "response_format type \"%s\" is not text, json_object or json_schema",
                   type->valuestring);
    const cJSON *js = cJSON_GetObjectItemCaseSensitive(rf, "json_schema");
    const cJSON *schema = cJSON_GetObjectItemCaseSensitive(js, "schema");
    if (!cJSON_IsObject(schema)) return bad(e, "response_format", "%s", "json_schema needs a \"schema\" object");
    r->format = TUNA_FORMAT_JSON_SCHEMA;
    r->schema = cJSON_Duplicate(schema, 1);
    return r->schema ? TUNA_OK : oom(e);
}

static tuna_status get_number(const cJSON *root, const char *key, double lo, double hi, double *out, int *present,
                              tuna_serve_error *e) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (present) *present = 0;
    if (!v || cJSON_IsNull(v)) return TUNA_OK;
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= lo && v->valuedouble <= hi))
        return tuna_serve_fail(e, 400, "invalid_request_error", NULL, key, "%s must be a number in [%g, %g]", key, lo,
                               hi);
    *out = v->valuedouble;
    if (present) *present = 1;
    return TUNA_OK;
}

static tuna_status get_int(const cJSON *root, const char *key, long long lo, long long hi, long long *out,
                           int *present, tuna_serve_error *e) {
    double d = 0;
    int has = 0;
    TUNA_TRY(get_number(root, key, (double)lo, (double)hi, &d, &has, e));
    if (has && d != floor(d))
        return tuna_serve_fail(e, 400, "invalid_request_error", NULL, key, "%s must be an integer", key);
    if (has) *out = (long long)d;
    if (present) *present = has;
    return TUNA_OK;
}

static tuna_status get_bool(const cJSON *root, const char *key, int *out, tuna_serve_error *e) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!v || cJSON_IsNull(v)) return TUNA_OK;
    if (!cJSON_IsBool(v)) return tuna_serve_fail(e, 400, "invalid_request_error", NULL, key, "%s must be a boolean", key);
    *out = cJSON_IsTrue(v);
    return TUNA_OK;
}

static tuna_status parse_stop(const cJSON *root, tuna_serve_chat_request *r, tuna_serve_error *e) {
    const cJSON *stop = cJSON_GetObjectItemCaseSensitive(root, "stop");
    if (!stop || cJSON_IsNull(stop)) return TUNA_OK;
    if (cJSON_IsString(stop)) {
        if (!stop->valuestring[0]) return TUNA_OK;
        r->stop[r->stop_count] = dup_str(stop->valuestring);
        return r->stop[r->stop_count++] ? TUNA_OK : oom(e);
    }
    if (!cJSON_IsArray(stop) || cJSON_GetArraySize(stop) > TUNA_SERVE_MAX_STOP)
        return tuna_serve_fail(e, 400, "invalid_request_error", NULL, "stop", "stop must be a string or up to %d strings",
                               TUNA_SERVE_MAX_STOP);
    const cJSON *s;
    cJSON_ArrayForEach(s, stop) {
        if (!cJSON_IsString(s)) return bad(e, "stop", "%s", "stop must be a string or an array of strings");
        if (!s->valuestring[0] || strlen(s->valuestring) > 256) continue;
        r->stop[r->stop_count] = dup_str(s->valuestring);
        if (!r->stop[r->stop_count++]) return oom(e);
    }
    return TUNA_OK;
}

static tuna_status parse_json_body(const char *body, size_t size, cJSON **root, tuna_serve_error *e) {
    *root = cJSON_ParseWithLength(body, size);
    if (!*root) return bad(e, NULL, "%s", "the body is not valid JSON");
    if (!cJSON_IsObject(*root)) {
        cJSON_Delete(*root);
        *root = NULL;
        return bad(e, NULL, "%s", "the body must be a JSON object");
    }
    return TUNA_OK;
}

static tuna_status parse_chat_fields(const cJSON *root, const tuna_serve_limits *limits, tuna_serve_chat_request *r,
                                     tuna_serve_error *e) {
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (cJSON_IsString(model)) {
        r->model = dup_str(model->valuestring);
        if (!r->model) return oom(e);
    }
    TUNA_TRY(parse_messages(cJSON_GetObjectItemCaseSensitive(root, "messages"), r, limits, e));
    TUNA_TRY(parse_tools(root, r, e));
    TUNA_TRY(parse_format(root, r, e));
    TUNA_TRY(parse_stop(root, r, e));
    TUNA_TRY(get_bool(root, "stream", &r->stream, e));
    TUNA_TRY(get_bool(root, "ignore_eos", &r->ignore_eos, e));
    const cJSON *so = cJSON_GetObjectItemCaseSensitive(root, "stream_options");
    if (so && !cJSON_IsNull(so)) TUNA_TRY(get_bool(so, "include_usage", &r->include_usage, e));
    long long v = -1;
    int has = 0;
    TUNA_TRY(get_int(root, "max_tokens", 1, INT_MAX, &v, &has, e));
    long long v2 = -1;
    int has2 = 0;
    TUNA_TRY(get_int(root, "max_completion_tokens", 1, INT_MAX, &v2, &has2, e));
    r->max_tokens = has2 ? (int)v2 : has ? (int)v : -1;
    double d = 1.0;
    TUNA_TRY(get_number(root, "temperature", 0, 2, &d, NULL, e));
    r->temperature = (float)d;
    d = 1.0;
    TUNA_TRY(get_number(root, "top_p", 0, 1, &d, NULL, e));
    if (d <= 0) return bad(e, "top_p", "%s", "top_p must be above 0");
    r->top_p = (float)d;
    v = 0;
    TUNA_TRY(get_int(root, "top_k", 0, 1 << 30, &v, NULL, e));
    r->top_k = (int)v;
    const cJSON *seed = cJSON_GetObjectItemCaseSensitive(root, "seed");
    if (seed && !cJSON_IsNull(seed)) {
        if (!cJSON_IsNumber(seed) || seed->valuedouble != floor(seed->valuedouble) || fabs(seed->valuedouble) > 9e18)
            return bad(e, "seed", "%s", "seed must be an integer");
        r->has_seed = 1;
        r->seed = (uint64_t)(int64_t)seed->valuedouble;
    }
    v = 1;
    TUNA_TRY(get_int(root, "n", 1, limits->max_n, &v, NULL, e));
    r->n = (int)v;
    if (r->n > 1 && (r->tool_choice == TUNA_TOOLS_REQUIRED || r->tool_choice == TUNA_TOOLS_NAMED))
        return bad(e, "n", "%s", "n > 1 with a forced tool call is not supported");
    if (r->tool_choice >= TUNA_TOOLS_REQUIRED && r->format != TUNA_FORMAT_TEXT)
        return bad(e, "response_format", "%s", "a forced tool call and a JSON response_format exclude each other");
    return TUNA_OK;
}

tuna_status tuna_serve_parse_chat(const char *body, size_t size, const tuna_serve_limits *limits,
                                  tuna_serve_chat_request *r, tuna_serve_error *e) {
    memset(r, 0, sizeof *r);
    if (size > limits->max_body)
        return tuna_serve_fail(e, 413, "invalid_request_error", "payload_too_large", NULL,
                               "the body is larger than %zu bytes", limits->max_body);
    cJSON *root;
    TUNA_TRY(parse_json_body(body, size, &root, e));
    tuna_status s = parse_chat_fields(root, limits, r, e);
    cJSON_Delete(root);
    if (s != TUNA_OK) tuna_serve_chat_request_free(r);
    return s;
}

/* ---- images -------------------------------------------------------------------- */

void tuna_serve_image_request_free(tuna_serve_image_request *r) {
    free(r->prompt);
    free(r->negative);
    free(r->image.bytes);
    memset(r, 0, sizeof *r);
}

tuna_status tuna_serve_parse_size(const char *text, int max_side, int *width, int *height, tuna_serve_error *e) {
    *width = *height = 0;
    if (strcmp(text, "auto") == 0) return TUNA_OK;
    char *end;
    errno = 0;
    long w = strtol(text, &end, 10);
    if (end == text || (*end != 'x' && *end != 'X') || errno) return bad(e, "size", "size \"%s\" is not WxH", text);
    const char *h_text = end + 1;
    long h = strtol(h_text, &end, 10);
    if (end == h_text || *end || errno) return bad(e, "size", "size \"%s\" is not WxH", text);
    if (w < 1 || h < 1 || w > max_side || h > max_side)
        return tuna_serve_fail(e, 400, "invalid_request_error", NULL, "size", "size %ldx%ld: each side must be in [1, %d]",
                               w, h, max_side);
    *width = (int)w;
    *height = (int)h;
    return TUNA_OK;
}

static tuna_status set_prompt(tuna_serve_image_request *r, const char *prompt, const tuna_serve_limits *limits,
                              char **dst, const char *param, tuna_serve_error *e) {
    if (strlen(prompt) > (size_t)limits->max_prompt_chars)
        return tuna_serve_fail(e, 400, "invalid_request_error", NULL, param, "%s is longer than %d bytes", param,
                               limits->max_prompt_chars);
    (void)r;
    free(*dst);
    *dst = dup_str(prompt);
    return *dst ? TUNA_OK : oom(e);
}

/* The fields shared by generations and edits, from text values. */
static tuna_status image_field(tuna_serve_image_request *r, const char *key, const char *value,
                               const tuna_serve_limits *limits, tuna_serve_error *e) {
    char *end;
    if (strcmp(key, "prompt") == 0) return set_prompt(r, value, limits, &r->prompt, "prompt", e);
    if (strcmp(key, "negative_prompt") == 0) return set_prompt(r, value, limits, &r->negative, "negative_prompt", e);
    if (strcmp(key, "size") == 0) return tuna_serve_parse_size(value, limits->max_generated_side, &r->width, &r->height, e);
    if (strcmp(key, "response_format") == 0) {
        if (strcmp(value, "b64_json") == 0) r->url = 0;
        else if (strcmp(value, "url") == 0) r->url = 1;
        else return bad(e, "response_format", "response_format \"%s\" is not b64_json or url", value);
        return TUNA_OK;
    }
    if (strcmp(key, "n") == 0 || strcmp(key, "steps") == 0 || strcmp(key, "seed") == 0) {
        errno = 0;
        long long v = strtoll(value, &end, 10);
        if (end == value || *end || errno) return bad(e, key, "%s must be an integer", key);
        if (strcmp(key, "seed") == 0) {
            r->has_seed = 1;
            r->seed = (uint64_t)v;
            return TUNA_OK;
        }
        long long hi = strcmp(key, "n") == 0 ? limits->max_n : limits->max_steps;
        if (v < 1 || v > hi)
            return tuna_serve_fail(e, 400, "invalid_request_error", NULL, key, "%s must be in [1, %lld]", key, hi);
        if (strcmp(key, "n") == 0) r->n = (int)v;
        else r->steps = (int)v;
        return TUNA_OK;
    }
    if (strcmp(key, "guidance_scale") == 0) {
        errno = 0;
        double v = strtod(value, &end);
        if (end == value || *end || errno || !(v >= 0 && v <= 100))
            return bad(e, key, "%s must be a number in [0, 100]", key);
        r->guidance = (float)v;
        return TUNA_OK;
    }
    return TUNA_OK; /* model, quality, style, user, ...: accepted and ignored */
}

static tuna_status parse_generation_fields(const cJSON *root, const tuna_serve_limits *limits,
                                           tuna_serve_image_request *r, tuna_serve_error *e) {
    const cJSON *item;
    cJSON_ArrayForEach(item, root) {
        if (!item->string) continue;
        char num[64];
        const char *value = NULL;
        int text_field = strcmp(item->string, "prompt") == 0 || strcmp(item->string, "negative_prompt") == 0 ||
                         strcmp(item->string, "size") == 0 || strcmp(item->string, "response_format") == 0;
        if (cJSON_IsString(item)) value = item->valuestring;
        else if (cJSON_IsNumber(item) && !text_field) {
            if (!isfinite(item->valuedouble) || fabs(item->valuedouble) > 9e18)
                return bad(e, item->string, "%s is out of range", item->string);
            if (item->valuedouble == floor(item->valuedouble))
                snprintf(num, sizeof num, "%lld", (long long)item->valuedouble);
            else snprintf(num, sizeof num, "%.9g", item->valuedouble);
            value = num;
        } else if (cJSON_IsNull(item)) continue;
        else if (text_field || strcmp(item->string, "n") == 0)
            return bad(e, item->string, "%s has the wrong type", item->string);
        else continue;
        TUNA_TRY(image_field(r, item->string, value, limits, e));
    }
    if (!r->prompt) return bad(e, "prompt", "%s", "prompt is required");
    return TUNA_OK;
}

static void image_defaults(tuna_serve_image_request *r) {
    memset(r, 0, sizeof *r);
    r->n = 1;
    r->guidance = -1.0f;
}

tuna_status tuna_serve_parse_image_generation(const char *body, size_t size, const tuna_serve_limits *limits,
                                              tuna_serve_image_request *r, tuna_serve_error *e) {
    image_defaults(r);
    if (size > limits->max_body)
        return tuna_serve_fail(e, 413, "invalid_request_error", "payload_too_large", NULL,
                               "the body is larger than %zu bytes", limits->max_body);
    cJSON *root;
    TUNA_TRY(parse_json_body(body, size, &root, e));
    tuna_status s = parse_generation_fields(root, limits, r, e);
    cJSON_Delete(root);
    if (s != TUNA_OK) tuna_serve_image_request_free(r);
    return s;
}

/* ---- multipart --------------------------------------------------------------------- */

static const char *find_bytes(const char *hay, size_t n, const char *needle, size_t m) {
    if (m == 0 || m > n) return NULL;
    return memmem(hay, n, needle, m);
}

/* A parameter of a header value: name="value" or name=value (copied, bounded). */
static int header_param(const char *value, size_t n, const char *name, char *out, size_t cap) {
    size_t nl = strlen(name);
    for (size_t i = 0; i + nl + 1 <= n; i++) {
        if ((i == 0 || value[i - 1] == ' ' || value[i - 1] == ';' || value[i - 1] == '\t') &&
            strncasecmp(value + i, name, nl) == 0 && value[i + nl] == '=') {
            size_t p = i + nl + 1, k = 0;
            int quoted = p < n && value[p] == '"';
            if (quoted) p++;
            while (p < n && (quoted ? value[p] != '"' : value[p] != ';' && value[p] != ' ' && value[p] != '\r')) {
                if (k + 1 >= cap) return -1;
                out[k++] = value[p++];
            }
            out[k] = '\0';
            return 1;
        }
    }
    return 0;
}

tuna_status tuna_serve_parse_multipart(const char *body, size_t size, const char *content_type, int max_parts,
                                       tuna_serve_part **parts_out, int *count, tuna_serve_error *e) {
    *parts_out = NULL;
    *count = 0;
    if (!content_type || strncasecmp(content_type, "multipart/form-data", 19) != 0)
        return bad(e, NULL, "%s", "the body must be multipart/form-data");
    char boundary[80], delim[90];
    if (header_param(content_type, strlen(content_type), "boundary", boundary, sizeof boundary) != 1 || !boundary[0])
        return bad(e, NULL, "%s", "multipart/form-data without a usable boundary (1 to 70 characters)");
    int dl = snprintf(delim, sizeof delim, "--%s", boundary);
    tuna_serve_part *parts = calloc((size_t)max_parts, sizeof *parts);
    if (!parts) return oom(e);
    const char *p = find_bytes(body, size, delim, (size_t)dl);
    const char *end = body + size;
    int n = 0;
    tuna_status s = p ? TUNA_OK : bad(e, NULL, "%s", "the multipart body has no boundary line");
    while (s == TUNA_OK) {
        p += dl;
        if (end - p >= 2 && p[0] == '-' && p[1] == '-') break; /* the closing delimiter */
        if (end - p < 2 || p[0] != '\r' || p[1] != '\n') {
            s = bad(e, NULL, "%s", "a multipart boundary is not followed by CRLF");
            break;
        }
        p += 2;
        const char *hdr_end = find_bytes(p, (size_t)(end - p), "\r\n\r\n", 4);
        if (!hdr_end) {
            s = bad(e, NULL, "%s", "a multipart part has no end of headers");
            break;
        }
        if (n == max_parts) {
            s = bad(e, NULL, "%s", "too many multipart parts");
            break;
        }
        tuna_serve_part *part = &parts[n];
        int has_name = 0;
        for (const char *line = p; line < hdr_end;) {
            const char *eol = find_bytes(line, (size_t)(hdr_end + 2 - line), "\r\n", 2);
            if (!eol) eol = hdr_end;
            size_t len = (size_t)(eol - line);
            if (len >= 20 && strncasecmp(line, "Content-Disposition:", 20) == 0) {
                int r1 = header_param(line, len, "name", part->name, sizeof part->name);
                int r2 = header_param(line, len, "filename", part->filename, sizeof part->filename);
                if (r1 < 0 || r2 < 0) {
                    s = bad(e, NULL, "%s", "a multipart field name is too long");
                    break;
                }
                has_name = r1 == 1;
            } else if (len >= 13 && strncasecmp(line, "Content-Type:", 13) == 0) {
                size_t k = 13;
                while (k < len && line[k] == ' ') k++;
                size_t m = len - k < sizeof part->content_type - 1 ? len - k : sizeof part->content_type - 1;
                memcpy(part->content_type, line + k, m);
                part->content_type[m] = '\0';
            }
            line = eol + 2;
        }
        if (s != TUNA_OK) break;
        if (!has_name) {
            s = bad(e, NULL, "%s", "a multipart part has no form-data name");
            break;
        }
        const char *data = hdr_end + 4;
        char crlf_delim[96];
        int cl = snprintf(crlf_delim, sizeof crlf_delim, "\r\n%s", delim);
        const char *next = find_bytes(data, (size_t)(end - data), crlf_delim, (size_t)cl);
        if (!next) {
            s = bad(e, NULL, "%s", "a multipart part is not closed by the boundary");
            break;
        }
        part->data = data;
        part->size = (size_t)(next - data);
        n++;
        p = next + 2;
    }
    if (s != TUNA_OK) {
        free(parts);
        return s;
    }
    *parts_out = parts;
    *count = n;
    return TUNA_OK;
}

tuna_status tuna_serve_parse_image_edit(const char *body, size_t size, const char *content_type,
                                        const tuna_serve_limits *limits, tuna_serve_image_request *r,
                                        tuna_serve_error *e) {
    image_defaults(r);
    if (size > limits->max_body)
        return tuna_serve_fail(e, 413, "invalid_request_error", "payload_too_large", NULL,
                               "the body is larger than %zu bytes", limits->max_body);
    tuna_serve_part *parts;
    int n;
    TUNA_TRY(tuna_serve_parse_multipart(body, size, content_type, 32, &parts, &n, e));
    tuna_status s = TUNA_OK;
    for (int i = 0; i < n && s == TUNA_OK; i++) {
        const tuna_serve_part *p = &parts[i];
        if (strcmp(p->name, "image") == 0 || strcmp(p->name, "image[]") == 0) {
            if (r->image.bytes) {
                s = bad(e, "image", "%s", "editing takes one image");
                break;
            }
            if (p->size == 0) {
                s = bad(e, "image", "%s", "the image is empty");
                break;
            }
            r->image.bytes = malloc(p->size);
            if (!r->image.bytes) {
                s = oom(e);
                break;
            }
            memcpy(r->image.bytes, p->data, p->size);
            r->image.size = p->size;
        } else if (strcmp(p->name, "mask") == 0) {
            s = bad(e, "mask", "%s", "masks are not supported: Tuna-2 edits the whole image from the instruction");
        } else {
            if (p->size > (size_t)limits->max_prompt_chars) {
                s = tuna_serve_fail(e, 400, "invalid_request_error", NULL, NULL, "field %s is too long", p->name);
                break;
            }
            char *value = malloc(p->size + 1);
            if (!value) {
                s = oom(e);
                break;
            }
            memcpy(value, p->data, p->size);
            value[p->size] = '\0';
            if (strlen(value) != p->size) s = bad(e, p->name, "field %s holds a NUL byte", p->name);
            else s = image_field(r, p->name, value, limits, e);
            free(value);
        }
    }
    free(parts);
    if (s == TUNA_OK && !r->image.bytes) s = bad(e, "image", "%s", "image is required");
    if (s == TUNA_OK && !r->prompt) s = bad(e, "prompt", "%s", "prompt is required");
    if (s != TUNA_OK) tuna_serve_image_request_free(r);
    return s;
}
