/* fuzz_csv.c - libFuzzer target: the CSV loader (loaders/csv.c through dt_load_buffer). The
 * checks are in fuzz_load.h. */
#define FZ_LOAD_FORMAT DT_FMT_CSV
#include "fuzz_load.h"
