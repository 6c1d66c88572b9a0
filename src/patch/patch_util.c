/* Small services the patch files share: JSON printing and integer checks on cJSON
 * numbers (JSON has only doubles). */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "patch/patch_internal.h"

char *xp_json_print(const cJSON *item)
{
    return item ? cJSON_PrintUnformatted(item) : NULL;
}

int xp_json_uint(const cJSON *item, uint64_t max, uint64_t *out)
{
    if (!cJSON_IsNumber(item))
        return 0;
    double d = item->valuedouble;
    /* doubles hold integers exactly up to 2^53 */
    if (!(d >= 0) || d != floor(d) || d > 9007199254740992.0 || d > (double)max)
        return 0;
    *out = (uint64_t)d;
    return 1;
}
