/* Flip accounting: what one change of the weights did to the probes' gaps. A fitness
 * that averages many gaps can rise while no answer changes ("fitness dilution"); the
 * count of probes that moved and the list of those that crossed zero say whether a
 * kept flip changed anything a person would see. */
#include <math.h>

#include "search/search_int.h"

void xp_flip_effect_measure(xp_flip_effect *e, const double *before, const double *after,
                            const size_t ends[3])
{
    e->moved = e->n_crossings = e->n_largest = 0;
    e->crossed[0] = e->crossed[1] = e->crossed[2] = 0;
    for (size_t i = 0, role = 0; i < ends[2]; i++) {
        while (i >= ends[role])
            role++;
        if (after[i] == before[i])
            continue;
        e->moved++;
        xp_probe_move mv = {(int)role, i - (role ? ends[role - 1] : 0), before[i], after[i]};
        if ((before[i] > 0) != (after[i] > 0)) {
            e->crossed[role]++;
            if (e->crossings)
                e->crossings[e->n_crossings++] = mv;
        }
        /* insertion into the few largest moves, largest first (ties: lower index) */
        double d = fabs(after[i] - before[i]);
        size_t j = e->n_largest < XP_EFFECT_LARGEST ? e->n_largest++ : XP_EFFECT_LARGEST;
        if (j == XP_EFFECT_LARGEST) {
            const xp_probe_move *l = &e->largest[XP_EFFECT_LARGEST - 1];
            if (!(d > fabs(l->after - l->before)))
                continue;
            j--;
        }
        while (j > 0 && d > fabs(e->largest[j - 1].after - e->largest[j - 1].before)) {
            e->largest[j] = e->largest[j - 1];
            j--;
        }
        e->largest[j] = mv;
    }
}
