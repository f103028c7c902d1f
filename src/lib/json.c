/* JSON helpers over cJSON: bounded parsing, the duplicate member name check, typed member
 * access, and printing (through the writer of jsonw.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "switchboard/error.h"
#include "switchboard/json.h"
#include "switchboard/jsonw.h"

/* cJSON has no depth limit of its own that we can set at run time, so refuse deep nesting
 * before handing it the text: count brackets outside strings. */
static int sb_json_depth_ok(const char *buf, size_t len) {
    int depth = 0, in_str = 0;
    for (size_t i = 0; i < len; i++) {
        char c = buf[i];
        if (in_str) {
            if (c == '\\') i++;
            else if (c == '"') in_str = 0;
        } else if (c == '"') {
            in_str = 1;
        } else if (c == '{' || c == '[') {
            if (++depth > SB_JSON_MAX_DEPTH) return 0;
        } else if (c == '}' || c == ']') {
            depth--;
        }
    }
    return 1;
}

cJSON *sb_json_parse(const char *buf, size_t len) {
    if (!buf || !sb_json_depth_ok(buf, len)) return NULL;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(buf, len, &end, 0);
    if (!root) return NULL;
    /* require only whitespace after the value */
    while (end && (size_t)(end - buf) < len &&
           (*end == ' ' || *end == '\n' || *end == '\r' || *end == '\t' || *end == '\0'))
        end++;
    if (!end || (size_t)(end - buf) != len) {
        cJSON_Delete(root);
        return NULL;
    }
    return root;
}

/* ---- duplicate member names -------------------------------------------------------------- */

#define SB_JSON_PAIRWISE_MAX 16 /* objects with up to this many members are checked pairwise */

static const char *sb_json_name(const cJSON *member) {
    return member->string ? member->string : "";
}

/* A name obj's own members repeat, found by comparing every pair, or NULL. */
static const char *sb_json_dup_pairwise(const cJSON *obj) {
    for (const cJSON *a = obj->child; a; a = a->next)
        for (const cJSON *b = a->next; b; b = b->next)
            if (strcmp(sb_json_name(a), sb_json_name(b)) == 0) return sb_json_name(a);
    return NULL;
}

static int sb_json_name_cmp(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* A name obj's own members repeat, or NULL: a sorted copy of the names puts equal ones side
 * by side (n log n for the large objects a 64 KiB body can hold). */
static const char *sb_json_dup_members(const cJSON *obj) {
    size_t n = 0;
    for (const cJSON *c = obj->child; c; c = c->next) n++;
    const char **names = n > SB_JSON_PAIRWISE_MAX ? malloc(n * sizeof *names) : NULL;
    if (!names) return sb_json_dup_pairwise(obj);
    size_t i = 0;
    for (const cJSON *c = obj->child; c; c = c->next) names[i++] = sb_json_name(c);
    qsort(names, n, sizeof *names, sb_json_name_cmp);
    const char *dup = NULL;
    for (i = 1; i < n && !dup; i++)
        if (strcmp(names[i - 1], names[i]) == 0) dup = names[i];
    free(names);
    return dup;
}

const char *sb_json_duplicate_key(const cJSON *item) {
    if (!item) return NULL;
    const char *dup = cJSON_IsObject(item) ? sb_json_dup_members(item) : NULL;
    for (const cJSON *c = item->child; c && !dup; c = c->next) dup = sb_json_duplicate_key(c);
    return dup;
}

/* ---- NUL inside strings ------------------------------------------------------------------ */

/* The innermost member name at each depth of a scan: a value's member is the name last seen at
 * its depth; an array inherits its member's name. */
typedef struct {
    const char *name[SB_JSON_MAX_DEPTH + 2];
    size_t len[SB_JSON_MAX_DEPTH + 2];
    int depth;
} sb_json_path_t;

/* 1 when the string whose body starts at buf[i] (just after its opening quote) holds the escape
 * \u0000 or a raw NUL byte; *end is set to the index of its closing quote (len if none). */
static int sb_json_str_has_nul(const char *buf, size_t len, size_t i, size_t *end) {
    int nul = 0;
    for (; i < len && buf[i] != '"'; i++) {
        if (buf[i] == '\0') nul = 1;
        if (buf[i] != '\\') continue;
        if (i + 5 < len && buf[i + 1] == 'u' && memcmp(buf + i + 2, "0000", 4) == 0) nul = 1;
        i++; /* the escaped character (the \uXXXX digits hold no quote or backslash) */
    }
    *end = i;
    return nul;
}

/* 1 when the next character after buf[i] that is not whitespace is a colon. */
static int sb_json_colon_follows(const char *buf, size_t len, size_t i) {
    while (++i < len && (buf[i] == ' ' || buf[i] == '\t' || buf[i] == '\n' || buf[i] == '\r')) {
    }
    return i < len && buf[i] == ':';
}

int sb_json_nul_member(const char *buf, size_t len, char *member, size_t cap) {
    sb_json_path_t p = {.depth = 0};
    for (size_t i = 0; i < len; i++) {
        char c = buf[i];
        if ((c == '{' || c == '[') && p.depth <= SB_JSON_MAX_DEPTH) {
            p.depth++;
            p.name[p.depth] = c == '[' ? p.name[p.depth - 1] : NULL;
            p.len[p.depth] = c == '[' ? p.len[p.depth - 1] : 0;
        } else if ((c == '}' || c == ']') && p.depth > 0) {
            p.depth--;
        } else if (c == '"') {
            size_t end;
            int nul = sb_json_str_has_nul(buf, len, i + 1, &end);
            if (sb_json_colon_follows(buf, len, end)) { /* a member name */
                p.name[p.depth] = buf + i + 1;
                p.len[p.depth] = end - i - 1;
            }
            if (nul) {
                snprintf(member, cap, "%.*s", (int)p.len[p.depth],
                         p.name[p.depth] ? p.name[p.depth] : "");
                return 1;
            }
            i = end;
        }
    }
    return 0;
}

/* ---- typed access ------------------------------------------------------------------------- */

const char *sb_json_str(const cJSON *obj, const char *name) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, name);
    return cJSON_IsString(it) ? it->valuestring : NULL;
}

int sb_json_num(const cJSON *obj, const char *name, double *out) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (!cJSON_IsNumber(it) || !isfinite(it->valuedouble)) return SB_EINVAL;
    *out = it->valuedouble;
    return SB_OK;
}

cJSON *sb_json_obj(const cJSON *obj, const char *name) {
    cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, name);
    return (cJSON_IsObject(it) || cJSON_IsArray(it)) ? it : NULL;
}

int sb_json_set(cJSON *obj, const char *name, cJSON *item) {
    if (!item) return SB_ENOMEM;
    if (cJSON_GetObjectItemCaseSensitive(obj, name)) {
        if (!cJSON_ReplaceItemInObjectCaseSensitive(obj, name, item)) {
            cJSON_Delete(item);
            return SB_ENOMEM;
        }
        return SB_OK;
    }
    if (!cJSON_AddItemToObject(obj, name, item)) {
        cJSON_Delete(item);
        return SB_ENOMEM;
    }
    return SB_OK;
}

int sb_json_set_str(cJSON *obj, const char *name, const char *value) {
    return sb_json_set(obj, name, cJSON_CreateString(value));
}

int sb_json_set_num(cJSON *obj, const char *name, double value) {
    return sb_json_set(obj, name, cJSON_CreateNumber(value));
}

char *sb_json_print(const cJSON *item) {
    sb_jw_t w;
    sb_jw_init(&w);
    sb_jw_value(&w, item);
    return sb_jw_take(&w, NULL);
}
