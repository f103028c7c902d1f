/* Small helpers over cJSON for the shapes Switchboard reads and writes.
 *
 * All getters return NULL / the default when the member is missing or of another type; they
 * never allocate. sb_json_print() returns a malloc'd compact string the caller frees. */
#ifndef SB_JSON_H
#define SB_JSON_H

#include <cjson/cJSON.h>
#include <stddef.h>

#define SB_JSON_MAX_DEPTH 64 /* deeper documents are refused by sb_json_parse */

/* Parses len bytes (not NUL-terminated needed). Returns NULL on invalid JSON, on a document
 * nested deeper than SB_JSON_MAX_DEPTH, or on trailing garbage. Caller frees with cJSON_Delete. */
cJSON *sb_json_parse(const char *buf, size_t len);

/* A member name that some object in item (item itself or one nested in it, at any depth)
 * holds twice, or NULL when every object's names are distinct. Such a document reads
 * differently to different readers: cJSON finds the first of the two members, JavaScript's
 * and Python's JSON parsers keep the last. Names are compared as cJSON holds them (as C
 * strings). The name returned points into item. Never fails: an object of many members is
 * checked through a sorted copy of its names, and pairwise when that copy cannot be
 * allocated. */
const char *sb_json_duplicate_key(const cJSON *item);

/* 1 when a string of the JSON text buf[0..len) (one sb_json_parse accepted) holds U+0000,
 * written as the escape \u0000 or as a raw NUL byte, else 0. cJSON keeps strings as C strings
 * and would cut such a string short at the NUL, silently, so input holding one is refused
 * rather than altered. On 1, member (cap bytes, NUL-terminated, cut to fit) receives the name
 * of the member the string belongs to as written in the text (the name itself when it is the
 * name that holds the NUL; the enclosing member's name for an array element; "" at the top
 * level). Never fails, never allocates. */
int sb_json_nul_member(const char *buf, size_t len, char *member, size_t cap);

const char *sb_json_str(const cJSON *obj, const char *name);   /* string member or NULL */
/* Number member into *out; returns 0, or SB_EINVAL if missing / not a finite number. */
int sb_json_num(const cJSON *obj, const char *name, double *out);
/* Object/array member or NULL. */
cJSON *sb_json_obj(const cJSON *obj, const char *name);
/* Sets (replacing) member name on obj; takes ownership of item. Returns 0 or SB_ENOMEM. */
int sb_json_set(cJSON *obj, const char *name, cJSON *item);
int sb_json_set_str(cJSON *obj, const char *name, const char *value);
int sb_json_set_num(cJSON *obj, const char *name, double value);
/* Compact text (written by jsonw.h: cJSON_PrintUnformatted's bytes, except that every number
 * reads back exactly); malloc'd, caller frees; NULL on allocation failure or nesting deeper
 * than SB_JW_MAX_DEPTH. */
char *sb_json_print(const cJSON *item);

#endif
