/* libFuzzer: config.json parsing; a parsed config must validate, serialise and
 * parse back to the same values. */
#include "model/config_json.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    tuna_config c, back;
    if (tuna_config_parse_json((const char *)data, size, &c, NULL) != TUNA_OK) return 0;
    char *json;
    if (tuna_config_to_json(&c, &json, NULL) != TUNA_OK) abort();
    if (tuna_config_parse_json(json, strlen(json), &back, NULL) != TUNA_OK) abort();
    if (memcmp(&c, &back, sizeof c) != 0) abort();
    free(json);
    return 0;
}
