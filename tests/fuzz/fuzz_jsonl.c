/* fuzz_jsonl.c - libFuzzer target: the JSON Lines loader (loaders/jsonl.c through dt_load_buffer).
 * The checks are in fuzz_load.h. */
#define FZ_LOAD_FORMAT DT_FMT_JSONL
#include "fuzz_load.h"
